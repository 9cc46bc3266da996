/**
 * Blocked float64 Cholesky / triangular inverse whose big products run on onnxruntime (src/model/blas.ts) and
 * whose small diagonal blocks run in TypeScript (src/kernels/cholesky.ts). Same contracts and results (to float64
 * rounding) as the synchronous kernels; they fall back to them when the matrix is at most one block wide or the
 * onnxruntime path is off (`DSA_PRUNE_BLAS=0`).
 *
 * Cholesky (left-looking, panels of {@link BLAS_NB} columns): for each panel, one product subtracts all earlier
 * columns, `A[j0:, j0:j1] −= L[j0:, :j0] · L[j0:j1, :j0]ᵀ` (≈ n³/6 multiply-adds in total); the panel's diagonal
 * block is factored in TypeScript, inverted (TypeScript, b³/3) and the rows below it are `A21 · L11⁻ᵀ`, one more
 * product. Inverse (row blocks): `X[i, :i0] = −L_ii⁻¹ · (L[i, :i0] · X[:i0, :i0])`, the second factor split into
 * column chunks so that most of X's zero upper triangle is skipped.
 */
import { blasEnabled, blasProduct, blasSubtractProduct } from '../model/blas.js';
import { choleskyLowerInPlace, invertLowerInPlace } from '../kernels/cholesky.js';

/** Panel / row-block width of the onnxruntime-backed factorizations. */
export const BLAS_NB = 128;

function copyBlock(a: Float64Array, n: number, r0: number, c0: number, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) out.set(a.subarray((r0 + r) * n + c0, (r0 + r) * n + c0 + cols), r * cols);
  return out;
}

function writeBlock(a: Float64Array, n: number, r0: number, c0: number, rows: number, cols: number, src: Float64Array): void {
  for (let r = 0; r < rows; r++) a.set(src.subarray(r * cols, r * cols + cols), (r0 + r) * n + c0);
}

/**
 * {@link choleskyLowerInPlace} with the products on onnxruntime: lower factor in place, strict upper triangle zeroed,
 * only the lower triangle read. Resolves to -1 on success or the index of the first non-positive pivot.
 */
export async function choleskyLowerInPlaceAsync(a: Float64Array, n: number, nb = BLAS_NB): Promise<number> {
  if (a.length < n * n) throw new RangeError(`cholesky: matrix has ${a.length} entries, need ${n}×${n}`);
  if (!blasEnabled() || n <= nb) return choleskyLowerInPlace(a, n);
  for (let j0 = 0; j0 < n; j0 += nb) {
    const j1 = Math.min(j0 + nb, n);
    const b = j1 - j0;
    if (j0 > 0) {
      // A[j0:n, j0:j1] −= L[j0:n, 0:j0] · L[j0:j1, 0:j0]ᵀ (the strict upper part of the diagonal block is not read)
      await blasSubtractProduct(
        { data: a, offset: j0 * n + j0, ld: n },
        { data: a, offset: j0 * n, ld: n },
        { data: a, offset: j0 * n, ld: n },
        n - j0, j0, b,
        { dtype: 'float64', transB: true },
      );
    }
    const d = copyBlock(a, n, j0, j0, b, b);
    const fail = choleskyLowerInPlace(d, b);
    if (fail >= 0) return j0 + fail;
    writeBlock(a, n, j0, j0, b, b, d);
    if (j1 < n) {
      invertLowerInPlace(d, b);
      // L21 = A21 · L11⁻ᵀ
      const below = { data: a, offset: j1 * n + j0, ld: n };
      await blasProduct(below, below, { data: d, offset: 0, ld: b }, n - j1, b, b, { dtype: 'float64', transB: true });
    }
  }
  for (let i = 0; i < n; i++) a.fill(0, i * n + i + 1, (i + 1) * n);
  return -1;
}

/**
 * {@link invertLowerInPlace} with the products on onnxruntime: the strict upper triangle of `l` must be zero and
 * stays zero; the diagonal must be non-zero.
 */
export async function invertLowerInPlaceAsync(l: Float64Array, n: number, nb = BLAS_NB): Promise<void> {
  if (!blasEnabled() || n <= nb) return invertLowerInPlace(l, n);
  for (let i0 = 0; i0 < n; i0 += nb) {
    const i1 = Math.min(i0 + nb, n);
    const b = i1 - i0;
    const dinv = copyBlock(l, n, i0, i0, b, b);
    invertLowerInPlace(dinv, b);
    if (i0 > 0) {
      // T = L[i0:i1, 0:i0] · X[0:i0, 0:i0]; X is lower triangular, so columns [c0, c1) need only X rows ≥ c0
      const t = new Float64Array(b * i0);
      const chunks = Math.min(4, Math.ceil(i0 / nb));
      for (let q = 0; q < chunks; q++) {
        const c0 = Math.floor((q * i0) / chunks), c1 = Math.floor(((q + 1) * i0) / chunks);
        await blasProduct(
          { data: t, offset: c0, ld: i0 },
          { data: l, offset: i0 * n + c0, ld: n },
          { data: l, offset: c0 * n + c0, ld: n },
          b, i0 - c0, c1 - c0,
          { dtype: 'float64' },
        );
      }
      // X[i0:i1, 0:i0] = 0 − L_ii⁻¹ · T
      for (let r = i0; r < i1; r++) l.fill(0, r * n, r * n + i0);
      await blasSubtractProduct(
        { data: l, offset: i0 * n, ld: n },
        { data: dinv, offset: 0, ld: b },
        { data: t, offset: 0, ld: i0 },
        b, b, i0,
        { dtype: 'float64' },
      );
    }
    writeBlock(l, n, i0, i0, b, b, dinv);
  }
}

/**
 * {@link upperCholeskyOfInverseInPlace} on the onnxruntime-backed kernels: U = upper Cholesky factor of H⁻¹ in place
 * (strict lower triangle zero on success). Resolves to -1 or the failing pivot in H's own index order.
 */
export async function upperCholeskyOfInverseInPlaceAsync(h: Float64Array, n: number, nb = BLAS_NB): Promise<number> {
  const nn = n * n;
  h.subarray(0, nn).reverse();
  const fail = await choleskyLowerInPlaceAsync(h, n, nb);
  if (fail >= 0) return n - 1 - fail;
  await invertLowerInPlaceAsync(h, n, nb);
  h.subarray(0, nn).reverse();
  return -1;
}
