/** Seeded random numbers for the kernel and method tests (mulberry32 + Box–Muller). */
import { mulberry32 } from '../../src/data/text.js';
/** Seeded uniform [0, 1): the project's one mulberry32. */
export const rng: (seed: number) => () => number = mulberry32;

export function gaussian(rand: () => number): () => number {
  return () => {
    const u = 1 - rand();
    const v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

/** A random float32 matrix [rows × cols] with N(0, 1) entries, or with entries from a small set when `levels`. */
export function randomMatrix(rows: number, cols: number, seed: number, levels = 0): Float32Array {
  const r = rng(seed);
  const g = gaussian(r);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    out[i] = levels > 0 ? (Math.floor(r() * levels) - levels / 2) / 4 : g();
  }
  return out;
}

/** Indices 0..n-1 ordered by (value ascending, NaN last, index ascending): a plain stable sort. */
export function stableOrder(values: ArrayLike<number>): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  const key = (x: number) => (Number.isNaN(x) ? Infinity : x);
  return idx.sort((a, b) => key(values[a]) - key(values[b]) || a - b);
}

/** Calibration-like token ids for the synthetic-model benches and fixtures: nsamples × seqlen token ids in [0, vocab), the same on every run (xorshift32). */
export function tokenIds(n: number, vocab: number, seed = 12345): Int32Array {
  let s = seed >>> 0;
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    ids[i] = s % vocab;
  }
  return ids;
}
