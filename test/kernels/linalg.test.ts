import { describe, expect, it } from 'vitest';
import { choleskyLowerInPlace, invertLowerInPlace, upperCholeskyOfInverseInPlace } from '../../src/kernels/cholesky.js';
import { subtractProduct } from '../../src/kernels/gemm.js';
import { inverse as naiveInverse } from '../methods/naive.js';
import { gaussian, rng } from './rng.js';

/** Random SPD matrix XᵀX + εI, n×n, float64. */
function spd(n: number, seed: number, tokens = 2 * n): Float64Array {
  const g = gaussian(rng(seed));
  const x = Array.from({ length: tokens * n }, g);
  const h = new Float64Array(n * n);
  for (let t = 0; t < tokens; t++)
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j] += x[t * n + i] * x[t * n + j];
  for (let i = 0; i < n; i++) h[i * n + i] += 1e-3;
  return h;
}

/** Naive Gauss–Jordan inverse (independent of the kernels under test) on a flat matrix. */
function inverse(a: Float64Array, n: number): Float64Array {
  const rows = Array.from({ length: n }, (_, i) => Array.from(a.subarray(i * n, i * n + n)));
  return Float64Array.from(naiveInverse(rows).flat());
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe('Cholesky kernels (float64)', () => {
  it('L·Lᵀ reproduces A and the upper triangle is zero', () => {
    for (const n of [1, 2, 7, 33, 130, 333]) {
      const a = spd(n, n);
      const l = a.slice();
      expect(choleskyLowerInPlace(l, n)).toBe(-1);
      const back = new Float64Array(n * n);
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let k = 0; k < n; k++) s += l[i * n + k] * l[j * n + k];
          back[i * n + j] = s;
          if (j > i) expect(l[i * n + j]).toBe(0);
        }
      expect(maxAbsDiff(back, a)).toBeLessThan(1e-9 * n * n);
    }
  });

  it('reports the failing pivot of a matrix that is not positive definite', () => {
    const a = Float64Array.from([4, 2, 0, 2, 1, 0, 0, 0, 1]); // singular leading 2×2
    expect(choleskyLowerInPlace(a, 3)).toBe(1);
    expect(choleskyLowerInPlace(Float64Array.from([NaN]), 1)).toBe(0);
  });

  it.each([20, 150])('invertLowerInPlace gives L⁻¹ (n = %i)', (n) => {
    const l = spd(n, 9);
    choleskyLowerInPlace(l, n);
    const inv = l.slice();
    invertLowerInPlace(inv, n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += l[i * n + k] * inv[k * n + j];
        expect(Math.abs(s - (i === j ? 1 : 0))).toBeLessThan(1e-9);
      }
  });

  it('upperCholeskyOfInverse equals chol(inv(H)) computed the naive way', () => {
    for (const n of [1, 5, 40, 200]) {
      const h = spd(n, 100 + n);
      // naive: inverse by Gauss–Jordan, then upper factor U = Lᵀ of inv(H) = L·Lᵀ (Cholesky–Crout by hand)
      const hi = inverse(h, n);
      const L = new Float64Array(n * n);
      for (let j = 0; j < n; j++) {
        let s = hi[j * n + j];
        for (let k = 0; k < j; k++) s -= L[j * n + k] ** 2;
        L[j * n + j] = Math.sqrt(s);
        for (let i = j + 1; i < n; i++) {
          let t = hi[i * n + j];
          for (let k = 0; k < j; k++) t -= L[i * n + k] * L[j * n + k];
          L[i * n + j] = t / L[j * n + j];
        }
      }
      const expected = new Float64Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expected[i * n + j] = L[j * n + i];
      const u = h.slice();
      expect(upperCholeskyOfInverseInPlace(u, n)).toBe(-1);
      let scale = 0;
      for (const x of expected) scale = Math.max(scale, Math.abs(x));
      expect(maxAbsDiff(u, expected) / scale).toBeLessThan(1e-8);
    }
  });
});

describe('subtractProduct (C −= A·B)', () => {
  it('matches a naive triple loop on strided views, with zero rows and entries in A', () => {
    const r = rng(77);
    const m = 13, k = 9, n = 600; // n > one 256-column tile
    const ldc = n + 5, lda = 11, ldb = n + 3;
    const C = Float32Array.from({ length: 2 + m * ldc }, () => r() - 0.5);
    const A = Float64Array.from({ length: 1 + m * lda }, () => (r() < 0.4 ? 0 : r() - 0.5));
    for (let p = 0; p < k; p++) A[1 + 3 * lda + p] = 0; // a whole zero row
    const B = Float64Array.from({ length: 4 + k * ldb }, () => r() - 0.5);
    const expected = Float64Array.from(C);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += A[1 + i * lda + p] * B[4 + p * ldb + j];
        expected[2 + i * ldc + j] -= s;
      }
    subtractProduct({ data: C, offset: 2, ld: ldc }, { data: A, offset: 1, ld: lda }, { data: B, offset: 4, ld: ldb }, m, k, n);
    expect(maxAbsDiff(C, expected)).toBeLessThan(1e-6);
    // untouched padding
    expect(C[0]).toBe(Math.fround(expected[0]));
  });
});
