/** Plain dense-matrix loops on Float32Array weights, used by model/ (write-back, inspect, save) and the methods. */

/** The number of exact zeros in `w`. */
export function countZeros(w: Float32Array): number {
  let z = 0;
  for (let i = 0; i < w.length; i++) if (w[i] === 0) z++;
  return z;
}

/** Blocked transpose of a [rows × cols] row-major matrix into dst [cols × rows]. */
export function transpose(src: Float32Array, rows: number, cols: number, dst = new Float32Array(rows * cols)): Float32Array {
  const B = 32;
  for (let i0 = 0; i0 < rows; i0 += B) {
    const i1 = Math.min(rows, i0 + B);
    for (let j0 = 0; j0 < cols; j0 += B) {
      const j1 = Math.min(cols, j0 + B);
      for (let i = i0; i < i1; i++) {
        const row = i * cols;
        for (let j = j0; j < j1; j++) dst[j * rows + i] = src[row + j];
      }
    }
  }
  return dst;
}
