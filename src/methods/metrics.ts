/**
 * Wanda's importance metric A_ij = |W_ij| · sqrt(sq_j / nsamples), W [dOut × dIn] row-major.
 * One place for it: the Wanda method ranks rows by it, and OWL / DSA build their block vector z from it.
 */
export function wandaMetric(
  weight: Float32Array,
  dOut: number,
  dIn: number,
  sq: Float64Array,
  nsamples: number,
  out: Float32Array = new Float32Array(dOut * dIn),
): Float32Array {
  if (weight.length !== dOut * dIn) throw new RangeError(`weight has ${weight.length} entries, expected ${dOut}×${dIn}`);
  if (sq.length !== dIn) throw new RangeError(`sq has ${sq.length} entries, expected ${dIn}`);
  const scale = new Float32Array(dIn);
  // float32 like the reference (torch computes sqrt(scaler_row) in float32).
  for (let j = 0; j < dIn; j++) scale[j] = Math.sqrt(Math.fround(sq[j] / nsamples));
  for (let i = 0; i < dOut; i++) {
    const row = i * dIn;
    for (let j = 0; j < dIn; j++) out[row + j] = Math.abs(weight[row + j]) * scale[j];
  }
  return out;
}
