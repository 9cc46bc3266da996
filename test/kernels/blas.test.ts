/**
 * The onnxruntime-backed kernels (src/model/blas.ts, src/methods/cholesky-blas.ts) against naive float64 loops
 * and against the TypeScript kernels they replace. Small panel widths (nb = 8 … 64) make small matrices take the
 * blocked path with many panels; one case runs the default width.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { blasEnabled, blasProduct, blasSubtractProduct, configureBlas, releaseBlas } from '../../src/model/blas.js';
import {
  BLAS_NB,
  choleskyLowerInPlaceAsync,
  invertLowerInPlaceAsync,
  upperCholeskyOfInverseInPlaceAsync,
} from '../../src/methods/cholesky-blas.js';
import { choleskyLowerInPlace, upperCholeskyOfInverseInPlace } from '../../src/kernels/cholesky.js';
import { inverse as naiveInverse } from '../methods/naive.js';
import { gaussian, rng } from './rng.js';

afterAll(() => releaseBlas());

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/**
 * A dampened SparseGPT-like Hessian: (2/T)·XᵀX over T tokens (T < n gives a singular XᵀX), a few input channels
 * with 30–100× larger activations, plus `percdamp`·mean(diag)·I. Condition number ≈ 1e5–1e7.
 */
function hessian(n: number, seed: number, tokens: number, percdamp = 0.01): Float64Array {
  const g = gaussian(rng(seed));
  const scale = Array.from({ length: n }, (_, j) => (j % 37 === 5 ? 30 + (j % 71) : 1));
  const x = Float64Array.from({ length: tokens * n }, (_, i) => g() * scale[i % n]);
  const h = new Float64Array(n * n);
  for (let t = 0; t < tokens; t++)
    for (let i = 0; i < n; i++) {
      const xi = x[t * n + i];
      for (let j = 0; j < n; j++) h[i * n + j] += (2 / tokens) * xi * x[t * n + j];
    }
  let tr = 0;
  for (let i = 0; i < n; i++) tr += h[i * n + i];
  for (let i = 0; i < n; i++) h[i * n + i] += (percdamp * tr) / n;
  return h;
}

/** Naive upper Cholesky of inv(H): Gauss–Jordan inverse, then Cholesky–Crout by hand, transposed. */
function naiveUpperCholOfInverse(h: Float64Array, n: number): Float64Array {
  const rows = Array.from({ length: n }, (_, i) => Array.from(h.subarray(i * n, i * n + n)));
  const hi = naiveInverse(rows);
  const L = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let j = 0; j < n; j++) {
    let s = hi[j][j];
    for (let k = 0; k < j; k++) s -= L[j][k] ** 2;
    L[j][j] = Math.sqrt(s);
    for (let i = j + 1; i < n; i++) {
      let t = hi[i][j];
      for (let k = 0; k < j; k++) t -= L[i][k] * L[j][k];
      L[i][j] = t / L[j][j];
    }
  }
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) u[i * n + j] = L[j][i];
  return u;
}

describe('onnxruntime Gemm (blasSubtractProduct / blasProduct)', () => {
  it('is on by default (DSA_PRUNE_BLAS unset) so the tests below exercise it', () => {
    expect(process.env.DSA_PRUNE_BLAS === '0' || blasEnabled()).toBe(true);
  });

  for (const dtype of ['float64', 'float32'] as const)
    for (const transB of [false, true])
      it(`${dtype}${transB ? ', Bᵀ' : ''}: C −= A·op(B) and C = A·op(B) on strided views equal a float64 triple loop`, async () => {
        const r = rng(dtype === 'float64' ? 5 : 6);
        const m = 37, k = 29, n = 53;
        const lda = k + 3, ldb = (transB ? k : n) + 2, ldc = n + 7;
        const A = Float64Array.from({ length: 3 + m * lda }, () => r() - 0.5);
        const B = Float64Array.from({ length: 1 + (transB ? n : k) * ldb }, () => r() - 0.5);
        const C0 = Float32Array.from({ length: 4 + m * ldc }, () => r() - 0.5);
        const bAt = (p: number, j: number) => (transB ? B[1 + j * ldb + p] : B[1 + p * ldb + j]);
        const sub = Float64Array.from(C0), prod = Float64Array.from(C0);
        for (let i = 0; i < m; i++)
          for (let j = 0; j < n; j++) {
            let s = 0;
            for (let p = 0; p < k; p++) s += A[3 + i * lda + p] * bAt(p, j);
            sub[4 + i * ldc + j] -= s;
            prod[4 + i * ldc + j] = s;
          }
        const views = (c: Float32Array | Float64Array) =>
          [{ data: c, offset: 4, ld: ldc }, { data: A, offset: 3, ld: lda }, { data: B, offset: 1, ld: ldb }] as const;
        const tol = dtype === 'float64' ? 1e-12 : 2e-6;
        // C in float32 (the SparseGPT weights) and in float64
        for (const C of [Float32Array.from(C0), Float64Array.from(C0)]) {
          await blasSubtractProduct(...views(C), m, k, n, { dtype, transB });
          const t = C instanceof Float32Array ? Math.max(tol, 1e-6) : tol;
          expect(maxAbsDiff(C, C instanceof Float32Array ? Float32Array.from(sub) : sub)).toBeLessThan(t);
          await blasProduct(...views(C), m, k, n, { dtype, transB });
          expect(maxAbsDiff(C, C instanceof Float32Array ? Float32Array.from(prod) : prod)).toBeLessThan(t);
          // entries outside the view are untouched
          expect(C[0]).toBe(C instanceof Float32Array ? C0[0] : Math.fround(C0[0]));
          expect(C[4 + (m - 1) * ldc + n]).toBe(C instanceof Float32Array ? C0[4 + (m - 1) * ldc + n] : C0[4 + (m - 1) * ldc + n]);
        }
      });
});

describe('blocked Cholesky / inverse on onnxruntime (float64)', () => {
  it.each([
    [33, 8],
    [100, 16],
    [130, 64],
  ])('n = %i, panels of %i: equals the TypeScript Cholesky and reproduces A', async (n, nb) => {
    const a = hessian(n, n, 2 * n);
    const ts = a.slice();
    expect(choleskyLowerInPlace(ts, n)).toBe(-1);
    const l = a.slice();
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) l[i * n + j] = NaN; // upper triangle is not read
    expect(await choleskyLowerInPlaceAsync(l, n, nb)).toBe(-1);
    expect(maxAbsDiff(l, ts) / maxAbs(ts)).toBeLessThan(1e-12);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        if (j > i) expect(l[i * n + j]).toBe(0);
        else {
          let s = 0;
          for (let k = 0; k <= j; k++) s += l[i * n + k] * l[j * n + k];
          expect(Math.abs(s - a[i * n + j])).toBeLessThan(1e-10 * maxAbs(a));
        }
      }
  });

  it('reports the same failing pivot as the TypeScript kernel when it lies in a later panel', async () => {
    const n = 50;
    const a = hessian(n, 3, 2 * n);
    // make the leading 38×38 minor singular: row/col 37 = row/col 36 (pivot 37 becomes 0 up to rounding, or NaN)
    for (let j = 0; j < n; j++) {
      a[37 * n + j] = a[36 * n + j];
      a[j * n + 37] = a[j * n + 36];
    }
    a[37 * n + 37] = a[36 * n + 36] * (1 - 1e-3); // strictly negative pivot
    const ts = choleskyLowerInPlace(a.slice(), n);
    expect(ts).toBe(37);
    expect(await choleskyLowerInPlaceAsync(a.slice(), n, 16)).toBe(37);
    expect(await choleskyLowerInPlaceAsync(Float64Array.from([NaN]), 1, 16)).toBe(0);
  });

  it.each([
    [70, 8],
    [200, 64],
  ])('invertLowerInPlaceAsync gives L⁻¹ (n = %i, blocks of %i)', async (n, nb) => {
    const l = hessian(n, 7, 3 * n);
    choleskyLowerInPlace(l, n);
    const inv = l.slice();
    await invertLowerInPlaceAsync(inv, n, nb);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        if (j > i) expect(inv[i * n + j]).toBe(0);
        let s = 0;
        for (let k = 0; k < n; k++) s += l[i * n + k] * inv[k * n + j];
        expect(Math.abs(s - (i === j ? 1 : 0))).toBeLessThan(1e-9);
      }
  });

  it.each([
    // [n, tokens (< n: singular XᵀX, only the damping keeps H definite), panel width]
    [150, 60, 32],
    [300, 120, BLAS_NB],
  ])(
    'upperCholeskyOfInverseInPlaceAsync equals the naive float64 chol(inv(H)) on an ill-conditioned dampened Hessian (n = %i, %i tokens, nb = %i)',
    async (n, tokens, nb) => {
      const h = hessian(n, 40 + n, tokens);
      const expected = naiveUpperCholOfInverse(h, n);
      const u = h.slice();
      expect(await upperCholeskyOfInverseInPlaceAsync(u, n, nb)).toBe(-1);
      const rel = maxAbsDiff(u, expected) / maxAbs(expected);
      expect(rel).toBeLessThan(1e-8);
      // and the same numbers as the TypeScript kernel to float64 rounding
      const ts = h.slice();
      upperCholeskyOfInverseInPlace(ts, n);
      expect(maxAbsDiff(u, ts) / maxAbs(ts)).toBeLessThan(1e-10);
      for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(u[i * n + j]).toBe(0);
    },
  );

  it('with the onnxruntime path off, falls back to the TypeScript kernels bit for bit', async () => {
    const n = 90;
    const h = hessian(n, 11, 40);
    const ts = h.slice();
    upperCholeskyOfInverseInPlace(ts, n);
    configureBlas({ enabled: false });
    try {
      const u = h.slice();
      expect(await upperCholeskyOfInverseInPlaceAsync(u, n, 16)).toBe(-1);
      expect(Array.from(u)).toEqual(Array.from(ts));
    } finally {
      configureBlas({ enabled: true });
    }
  });
});
