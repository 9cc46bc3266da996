/**
 * Dense float64 Cholesky kernels for SparseGPT's inverse Hessian. Row-major n×n matrices; the inner loops run
 * over contiguous rows (dot products and axpys), four accumulators wide.
 */

/**
 * Lower Cholesky factor in place: on success the lower triangle of `a` holds L with A = L·Lᵀ and the strict upper
 * triangle is zeroed. Only the lower triangle of `a` is read. Returns -1 on success, or the index of the first
 * pivot that is not positive (A is not positive definite; `a` is then partly overwritten).
 */
export function choleskyLowerInPlace(a: Float64Array, n: number): number {
  if (a.length < n * n) throw new RangeError(`cholesky: matrix has ${a.length} entries, need ${n}×${n}`);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      // s = A_ij − Σ_{k<j} L_ik · L_jk
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      let k = 0;
      for (; k + 3 < j; k += 4) {
        s0 += a[ri + k] * a[rj + k];
        s1 += a[ri + k + 1] * a[rj + k + 1];
        s2 += a[ri + k + 2] * a[rj + k + 2];
        s3 += a[ri + k + 3] * a[rj + k + 3];
      }
      for (; k < j; k++) s0 += a[ri + k] * a[rj + k];
      const s = a[ri + j] - (s0 + s1 + (s2 + s3));
      if (i === j) {
        if (!(s > 0) || !Number.isFinite(s)) return i;
        a[ri + i] = Math.sqrt(s);
      } else {
        a[ri + j] = s / a[rj + j];
      }
    }
    for (let j = i + 1; j < n; j++) a[ri + j] = 0;
  }
  return -1;
}

/**
 * Inverse of a lower-triangular matrix in place (row by row: row i of L⁻¹ is a combination of the rows above).
 * The strict upper triangle is left zero. `l` must have a non-zero diagonal.
 */
export function invertLowerInPlace(l: Float64Array, n: number, scratch: Float64Array = new Float64Array(n)): void {
  const acc = scratch;
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    acc.fill(0, 0, i);
    for (let k = 0; k < i; k++) {
      const lik = l[ri + k];
      if (lik === 0) continue;
      const rk = k * n;
      // row k of X = L⁻¹ has entries in columns 0..k
      let j = 0;
      for (; j + 3 <= k; j += 4) {
        acc[j] -= lik * l[rk + j];
        acc[j + 1] -= lik * l[rk + j + 1];
        acc[j + 2] -= lik * l[rk + j + 2];
        acc[j + 3] -= lik * l[rk + j + 3];
      }
      for (; j <= k; j++) acc[j] -= lik * l[rk + j];
    }
    const inv = 1 / l[ri + i];
    for (let j = 0; j < i; j++) l[ri + j] = acc[j] * inv;
    l[ri + i] = inv;
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
