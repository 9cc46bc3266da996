/**
 * Blocked "C −= A·B" for SparseGPT's lazy batch update `W[:, later] −= Err · Hinv[blk, later]`.
 * Column tiles keep the touched rows of B in cache, a float64 accumulator row sums the k products before one
 * subtraction into C (one rounding when C is float32, like one GEMM), and zero entries of A are skipped
 * (SparseGPT's Err is zero wherever a weight was kept, so the work scales with the pruned fraction).
 */
import type { NumericArray } from './select.js';

/** Strided view of a row-major matrix: element (i, j) is `data[offset + i·ld + j]`. */
export interface MatView<T extends NumericArray = NumericArray> {
  data: T;
  offset: number;
  ld: number;
}

/** Column tile of the product: 256 float64 columns × 128 rows of B = 256 KiB, about an L2. */
const TILE = 256;

/**
 * C[m×n] −= A[m×k] · B[k×n] with float64 accumulation. `scratch` may pass reusable buffers
 * (acc: ≥ min(n, 256) float64, idx: ≥ m·k int32, cnt: ≥ m int32).
 */
export function subtractProduct(
  c: MatView,
  a: MatView,
  b: MatView,
  m: number,
  k: number,
  n: number,
  scratch: { acc?: Float64Array; idx?: Int32Array; cnt?: Int32Array } = {},
): void {
  if (m <= 0 || k <= 0 || n <= 0) return;
  const acc = scratch.acc && scratch.acc.length >= Math.min(n, TILE) ? scratch.acc : new Float64Array(Math.min(n, TILE));
  const idx = scratch.idx && scratch.idx.length >= m * k ? scratch.idx : new Int32Array(m * k);
  const cnt = scratch.cnt && scratch.cnt.length >= m ? scratch.cnt : new Int32Array(m);
  const A = a.data, B = b.data, C = c.data;
  // non-zero columns of each row of A
  for (let r = 0; r < m; r++) {
    const ar = a.offset + r * a.ld;
    let q = 0;
    for (let p = 0; p < k; p++) if (A[ar + p] !== 0) idx[r * k + q++] = p;
    cnt[r] = q;
  }
  for (let jt = 0; jt < n; jt += TILE) {
    const tw = Math.min(TILE, n - jt);
    const bt = b.offset + jt;
    for (let r = 0; r < m; r++) {
      const q = cnt[r];
      if (q === 0) continue;
      const ar = a.offset + r * a.ld;
      const ir = r * k;
      acc.fill(0, 0, tw);
      let t = 0;
      for (; t + 3 < q; t += 4) {
        const p0 = idx[ir + t], p1 = idx[ir + t + 1], p2 = idx[ir + t + 2], p3 = idx[ir + t + 3];
        const e0 = A[ar + p0], e1 = A[ar + p1], e2 = A[ar + p2], e3 = A[ar + p3];
        const b0 = bt + p0 * b.ld, b1 = bt + p1 * b.ld, b2 = bt + p2 * b.ld, b3 = bt + p3 * b.ld;
        for (let j = 0; j < tw; j++) {
          acc[j] += e0 * B[b0 + j] + e1 * B[b1 + j] + e2 * B[b2 + j] + e3 * B[b3 + j];
        }
      }
      for (; t < q; t++) {
        const p0 = idx[ir + t];
        const e0 = A[ar + p0];
        const b0 = bt + p0 * b.ld;
        for (let j = 0; j < tw; j++) acc[j] += e0 * B[b0 + j];
      }
      const cr = c.offset + r * c.ld + jt;
      for (let j = 0; j < tw; j++) C[cr + j] -= acc[j];
    }
  }
}
