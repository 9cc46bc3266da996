/** Plain dense-matrix loops on Float32Array weights, used by model/ (write-back, inspect, save) and the methods. */

/** The number of exact zeros in `w`. */
export function countZeros(w: Float32Array): number {
  // Branch-free on the bit patterns (+0 and -0 are the bits 0 once the sign is shifted out): a pruned row is half
  // zeros in random places, which a `w[i] === 0` branch mispredicts half the time (≈ 2.5× slower).
  const u = new Uint32Array(w.buffer, w.byteOffset, w.length);
  let nonzero = 0;
  for (let i = 0; i < u.length; i++) {
    const x = (u[i]! << 1) >>> 0;
    nonzero += (x | (-x >>> 0)) >>> 31;
  }
  return u.length - nonzero;
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
