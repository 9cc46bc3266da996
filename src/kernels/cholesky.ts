/**
 * Dense float64 Cholesky kernels for SparseGPT's inverse Hessian. Row-major n×n matrices; the inner loops run
 * over contiguous rows (dot products and axpys), four accumulators wide, blocked so the panel stays in cache.
 */
import { subtractProduct } from './gemm.js';

/** Column block of the blocked factorizations (rows of the panel kept in cache). */
const NB = 64;
/** Length of the inner-product tiles (NB rows × KB float64 = 128 KiB, about an L2). */
const KB = 256;

/** Σ_{k0 ≤ k < k1} a[ri + k] · a[rj + k], four accumulators. */
function dot(a: Float64Array, ri: number, rj: number, k0: number, k1: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let k = k0;
  for (; k + 3 < k1; k += 4) {
    s0 += a[ri + k] * a[rj + k];
    s1 += a[ri + k + 1] * a[rj + k + 1];
    s2 += a[ri + k + 2] * a[rj + k + 2];
    s3 += a[ri + k + 3] * a[rj + k + 3];
  }
  for (; k < k1; k++) s0 += a[ri + k] * a[rj + k];
  return s0 + s1 + (s2 + s3);
}

/** A[r, j] −= Σ_{k0 ≤ k < k1} L_rk·L_jk for j ∈ [j0, je). */
function subtractPanelRow(a: Float64Array, n: number, r: number, j0: number, je: number, k0: number, k1: number): void {
  const rr = r * n;
  for (let j = j0; j < je; j++) a[rr + j] -= dot(a, rr, j * n, k0, k1);
}

/**
 * Lower Cholesky factor in place: on success the lower triangle of `a` holds L with A = L·Lᵀ and the strict upper
 * triangle is zeroed. Only the lower triangle of `a` is read. Returns -1 on success, or the index of the first
 * pivot that is not positive (A is not positive definite; `a` is then partly overwritten).
 * Blocked Crout order: for each panel of 64 columns, first subtract the contributions of all earlier columns in
 * 256-wide tiles (the panel's rows stay in cache), then factor the panel.
 */
export function choleskyLowerInPlace(a: Float64Array, n: number): number {
  if (a.length < n * n) throw new RangeError(`cholesky: matrix has ${a.length} entries, need ${n}×${n}`);
  for (let j0 = 0; j0 < n; j0 += NB) {
    const j1 = Math.min(j0 + NB, n);
    // 1. A[i, j] −= Σ_{k<j0} L_ik·L_jk for the panel columns j ∈ [j0, j1), rows i ≥ j
    for (let k0 = 0; k0 < j0; k0 += KB) {
      const k1 = Math.min(k0 + KB, j0);
      let i = j0;
      // rows below the panel two at a time, panel columns two at a time: 2×2 dot products share their loads
      for (i = j1; i + 1 < n; i += 2) {
        const ri = i * n, ri2 = ri + n;
        let j = j0;
        for (; j + 1 < j1; j += 2) {
          const rj = j * n, rj2 = rj + n;
          let s00 = 0, s01 = 0, s10 = 0, s11 = 0;
          for (let k = k0; k < k1; k++) {
            const x0 = a[ri + k], x1 = a[ri2 + k], y0 = a[rj + k], y1 = a[rj2 + k];
            s00 += x0 * y0;
            s01 += x0 * y1;
            s10 += x1 * y0;
            s11 += x1 * y1;
          }
          a[ri + j] -= s00;
          a[ri + j + 1] -= s01;
          a[ri2 + j] -= s10;
          a[ri2 + j + 1] -= s11;
        }
        for (; j < j1; j++) {
          a[ri + j] -= dot(a, ri, j * n, k0, k1);
          a[ri2 + j] -= dot(a, ri2, j * n, k0, k1);
        }
      }
      // the panel's own rows (triangular) and an odd last row
      for (let r = j0; r < j1; r++) subtractPanelRow(a, n, r, j0, Math.min(j1, r + 1), k0, k1);
      if (i < n) subtractPanelRow(a, n, i, j0, j1, k0, k1);
    }
    // 2. factor the panel with the columns inside it
    for (let i = j0; i < n; i++) {
      const ri = i * n;
      const je = Math.min(j1, i + 1);
      for (let j = j0; j < je; j++) {
        const rj = j * n;
        const s = a[ri + j] - dot(a, ri, rj, j0, j);
        if (i === j) {
          if (!(s > 0) || !Number.isFinite(s)) return i;
          a[ri + i] = Math.sqrt(s);
        } else {
          a[ri + j] = s / a[rj + j];
        }
      }
    }
  }
  for (let i = 0; i < n; i++) a.fill(0, i * n + i + 1, (i + 1) * n);
  return -1;
}

/**
 * Inverse of a lower-triangular matrix in place (L·X = I solved by row blocks of 64: the contribution of the rows
 * above a block is one blocked product per 128-row tile, the rest row by row). The strict upper triangle of `l`
 * must be zero and stays zero; the diagonal must be non-zero.
 */
export function invertLowerInPlace(l: Float64Array, n: number): void {
  const acc = new Float64Array(NB * n);
  const gemmScratch = { acc: new Float64Array(256), idx: new Int32Array(NB * 128), cnt: new Int32Array(NB) };
  for (let i0 = 0; i0 < n; i0 += NB) {
    const i1 = Math.min(i0 + NB, n);
    const rows = i1 - i0;
    acc.fill(0, 0, rows * n);
    // acc[i, j] = −Σ_{k<i0} L_ik·X_kj: X rows k < i0 are final and zero right of column k
    for (let k0 = 0; k0 < i0; k0 += 128) {
      const k1 = Math.min(k0 + 128, i0);
      subtractProduct(
        { data: acc, offset: 0, ld: n },
        { data: l, offset: i0 * n + k0, ld: n },
        { data: l, offset: k0 * n, ld: n },
        rows,
        k1 - k0,
        k1,
        gemmScratch,
      );
    }
    // rows of the block in order: the rows k ∈ [i0, i) were just written as X
    for (let i = i0; i < i1; i++) {
      const ri = i * n;
      const ai = (i - i0) * n;
      for (let k = i0; k < i; k++) {
        const lik = l[ri + k];
        if (lik === 0) continue;
        const rk = k * n;
        let j = 0;
        for (; j + 3 <= k; j += 4) {
          acc[ai + j] -= lik * l[rk + j];
          acc[ai + j + 1] -= lik * l[rk + j + 1];
          acc[ai + j + 2] -= lik * l[rk + j + 2];
          acc[ai + j + 3] -= lik * l[rk + j + 3];
        }
        for (; j <= k; j++) acc[ai + j] -= lik * l[rk + j];
      }
      const inv = 1 / l[ri + i];
      for (let j = 0; j < i; j++) l[ri + j] = acc[ai + j] * inv;
      l[ri + i] = inv;
    }
  }
}

/**
 * U = upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ·U), what SparseGPT calls Hinv, computed in place in `h` (row-major,
 * symmetric positive definite, n×n) without forming H⁻¹: with P the reversal permutation, chol(P·H·P) = L' gives
 * H = R·Rᵀ with R = P·L'·P upper, so H⁻¹ = R⁻ᵀ·R⁻¹ and U = R⁻¹ = P·L'⁻¹·P. Reversing both indices of a
 * row-major n×n matrix is reversing its flat storage. Cost n³/3 instead of n³ + n³/3 for inv-then-chol.
 * Returns -1 on success or the failing pivot (in H's own index order) when H is not positive definite.
 * On success the strict lower triangle of `h` is zero.
 */
export function upperCholeskyOfInverseInPlace(h: Float64Array, n: number): number {
  const nn = n * n;
  h.subarray(0, nn).reverse();
  const fail = choleskyLowerInPlace(h, n);
  if (fail >= 0) return n - 1 - fail;
  invertLowerInPlace(h, n);
  h.subarray(0, nn).reverse();
  return -1;
}
