/**
 * Plain-loop float64 implementations of ../shared/docs/METHODS.md, written independently of src/ (arrays of
 * numbers, full sorts, Gauss–Jordan inverse): the oracle for the method tests. Metrics are rounded to float32
 * (Math.fround) where the reference computes them in float32, so masks are comparable.
 */
import { stableOrder } from '../kernels/rng.js';

export type NaivePattern = { kind: 'unstructured' } | { kind: 'nm'; n: number; m: number };

/** Sorted ascending copy, NaN last. */
function sortedValues(v: number[]): number[] {
  return v.map((x) => (Number.isNaN(x) ? Infinity : x)).sort((a, b) => a - b);
}

/** N:M mask of one row's metric: in each group of m, the min(n, width) smallest (stable). */
function nmRowMask(metric: number[], n: number, m: number): boolean[] {
  const mask = metric.map(() => false);
  for (let g = 0; g < metric.length; g += m) {
    const group = metric.slice(g, g + m);
    for (const t of stableOrder(group).slice(0, n)) mask[g + t] = true;
  }
  return mask;
}

export function naiveMagnitude(
  w: Float32Array, dOut: number, dIn: number, s: number, pattern: NaivePattern, budget: 'reference' | 'exact',
): Float64Array {
  const out = Float64Array.from(w);
  const abs = Array.from(w, Math.abs);
  if (pattern.kind === 'nm') {
    for (let r = 0; r < dOut; r++) {
      const mask = nmRowMask(abs.slice(r * dIn, (r + 1) * dIn), pattern.n, pattern.m);
      mask.forEach((p, j) => { if (p) out[r * dIn + j] = 0; });
    }
    return out;
  }
  if (s === 0) return out;
  if (budget === 'reference') {
    const thr = sortedValues(abs)[Math.floor(abs.length * s)];
    abs.forEach((a, i) => { if (a <= thr) out[i] = 0; });
  } else {
    for (const i of stableOrder(abs).slice(0, Math.round(s * abs.length))) out[i] = 0;
  }
  return out;
}

export function naiveWanda(
  w: Float32Array, dOut: number, dIn: number, sq: Float64Array, nsamples: number, s: number,
  pattern: NaivePattern, counts: number[],
): Float64Array {
  const out = Float64Array.from(w);
  for (let r = 0; r < dOut; r++) {
    const metric: number[] = [];
    for (let j = 0; j < dIn; j++) {
      const scale = Math.fround(Math.sqrt(Math.fround(sq[j] / nsamples)));
      metric.push(Math.fround(Math.abs(w[r * dIn + j]) * scale));
    }
    if (pattern.kind === 'nm') {
      nmRowMask(metric, pattern.n, pattern.m).forEach((p, j) => { if (p) out[r * dIn + j] = 0; });
    } else if (s > 0) {
      for (const j of stableOrder(metric).slice(0, counts[r])) out[r * dIn + j] = 0;
    }
  }
  return out;
}

/** Gauss–Jordan inverse with partial pivoting. */
export function inverse(a: number[][]): number[][] {
  const n = a.length;
  const m = a.map((row, i) => [...row, ...row.map((_, j) => (i === j ? 1 : 0))]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    [m[c], m[p]] = [m[p], m[c]];
    const piv = m[c][c];
    for (let j = 0; j < 2 * n; j++) m[c][j] /= piv;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r][c];
      if (f !== 0) for (let j = 0; j < 2 * n; j++) m[r][j] -= f * m[c][j];
    }
  }
  return m.map((row) => row.slice(n));
}

/** Upper U with A = Uᵀ·U (Cholesky), or undefined if A is not positive definite. */
function upperCholesky(a: number[][]): number[][] | undefined {
  const n = a.length;
  const u = a.map((row) => row.map(() => 0));
  for (let i = 0; i < n; i++) {
    let s = a[i][i];
    for (let k = 0; k < i; k++) s -= u[k][i] * u[k][i];
    if (!(s > 0)) return undefined;
    u[i][i] = Math.sqrt(s);
    for (let j = i + 1; j < n; j++) {
      let t = a[i][j];
      for (let k = 0; k < i; k++) t -= u[k][i] * u[k][j];
      u[i][j] = t / u[i][i];
    }
  }
  return u;
}

export interface NaiveSparseGptResult {
  w: Float64Array;
  percdamp: number;
}

/** SparseGPT following METHODS.md literally (blocksize 128, percdamp 0.01, ×10 retries), float64 weights. */
export function naiveSparseGpt(
  w0: Float32Array, dOut: number, dIn: number, gram: Float64Array, nsamples: number, s: number,
  pattern: NaivePattern, budget: 'reference' | 'exact',
): NaiveSparseGptResult {
  const n = dIn;
  const W: number[][] = [];
  for (let r = 0; r < dOut; r++) W.push(Array.from(w0.subarray(r * n, (r + 1) * n)));
  const H0: number[][] = [];
  for (let i = 0; i < n; i++) H0.push(Array.from(gram.subarray(i * n, (i + 1) * n), (g) => (2 / nsamples) * g));
  for (let j = 0; j < n; j++) {
    if (H0[j][j] === 0) {
      H0[j][j] = 1;
      for (let r = 0; r < dOut; r++) W[r][j] = 0;
    }
  }
  const meanDiag = H0.reduce((a, row, i) => a + row[i], 0) / n;
  let U: number[][] | undefined;
  let percdamp = 0.01;
  for (let attempt = 0; attempt < 4 && !U; attempt++, percdamp *= 10) {
    const H = H0.map((row, i) => row.map((x, j) => (i === j ? x + percdamp * meanDiag : x)));
    if (!upperCholesky(H)) continue; // H itself not positive definite: more damping
    U = upperCholesky(inverse(H));
  }
  percdamp /= 10;
  if (!U) throw new Error('naive SparseGPT: not positive definite');
  const bs = 128;
  const exactTotal = (end: number) => Math.round(s * dOut * end);
  for (let i1 = 0; i1 < n; i1 += bs) {
    const i2 = Math.min(i1 + bs, n);
    const count = i2 - i1;
    const mask: boolean[][] = W.map(() => new Array<boolean>(count).fill(false));
    if (pattern.kind === 'unstructured') {
      const tmp: number[] = [];
      for (let r = 0; r < dOut; r++)
        for (let c = 0; c < count; c++) {
          const d = Math.fround(U[i1 + c][i1 + c]);
          tmp.push(Math.fround(Math.fround(W[r][i1 + c] ** 2) / Math.fround(d * d)));
        }
      if (budget === 'reference') {
        const thr = sortedValues(tmp)[Math.floor(tmp.length * s)];
        tmp.forEach((x, t) => { if (x <= thr) mask[Math.floor(t / count)][t % count] = true; });
      } else {
        const k = exactTotal(i2) - exactTotal(i1);
        for (const t of stableOrder(tmp).slice(0, k)) mask[Math.floor(t / count)][t % count] = true;
      }
    }
    const Err: number[][] = W.map(() => new Array<number>(count).fill(0));
    const Q: number[][] = W.map(() => new Array<number>(count).fill(0));
    for (let i = 0; i < count; i++) {
      const col = i1 + i;
      if (pattern.kind === 'nm' && i % pattern.m === 0) {
        for (let r = 0; r < dOut; r++) {
          const g: number[] = [];
          for (let t = i; t < Math.min(i + pattern.m, count); t++) {
            const d = Math.fround(U[i1 + t][i1 + t]);
            g.push(Math.fround(Math.fround(W[r][i1 + t] ** 2) / Math.fround(d * d)));
          }
          for (const t of stableOrder(g).slice(0, pattern.n)) mask[r][i + t] = true;
        }
      }
      const d = U[col][col];
      for (let r = 0; r < dOut; r++) {
        const wv = W[r][col];
        const q = mask[r][i] ? 0 : wv;
        Q[r][i] = q;
        const err = (wv - q) / d;
        for (let j = col; j < i2; j++) W[r][j] -= err * U[col][j];
        Err[r][i] = err;
      }
    }
    for (let r = 0; r < dOut; r++) {
      for (let i = 0; i < count; i++) W[r][i1 + i] = Q[r][i];
      for (let j = i2; j < n; j++) {
        let acc = 0;
        for (let i = 0; i < count; i++) acc += Err[r][i] * U[i1 + i][j];
        W[r][j] -= acc;
      }
    }
  }
  return { w: Float64Array.from(W.flat()), percdamp };
}

/** Random gram XᵀX [dIn × dIn] from `tokens` rows of N(0,1) features (feature scales vary), float64. */
export function randomGram(dIn: number, tokens: number, rand: () => number, deadColumns: number[] = []): Float64Array {
  const x = new Float64Array(tokens * dIn);
  const scale = Array.from({ length: dIn }, () => 0.2 + 2 * rand());
  for (let t = 0; t < tokens; t++)
    for (let j = 0; j < dIn; j++) {
      const u = 1 - rand(), v = rand();
      x[t * dIn + j] = deadColumns.includes(j) ? 0 : scale[j] * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    }
  const g = new Float64Array(dIn * dIn);
  for (let t = 0; t < tokens; t++) {
    const o = t * dIn;
    for (let i = 0; i < dIn; i++) {
      const xi = x[o + i];
      if (xi === 0) continue;
      for (let j = 0; j < dIn; j++) g[i * dIn + j] += xi * x[o + j];
    }
  }
  return g;
}

/** Σx² per feature = diag of the gram. */
export function diagOf(g: Float64Array, n: number): Float64Array {
  return Float64Array.from({ length: n }, (_, j) => g[j * n + j]);
}
