/**
 * The project's one rounding module: how a sparsity becomes a number of weights to prune.
 *
 * - `reference`: the reference code's rounding, `floor(d_in · s)` weights in every row (so the realised sparsity
 *   lands below s, e.g. 59.375 % for s = 0.6 on a 64-wide row).
 * - `exact`: `round(s · numel)` weights per linear (half away from zero, `Math.round`), spread over the rows so that
 *   row counts differ by at most one, the extra weights going to the lowest row indices.
 */
import type { BudgetMode } from '../types.js';

/** Weights the reference prunes in one row of width `dIn` at sparsity `s`: `floor(dIn · s)` (Python `int()`). */
export function referenceRowCount(dIn: number, s: number): number {
  return Math.floor(dIn * s);
}

/** Weights the exact budget prunes out of `numel`: `round(s · numel)`. */
export function exactCount(s: number, numel: number): number {
  return Math.round(s * numel);
}

/**
 * Number of weights to prune in each of the `dOut` rows of a [dOut × dIn] matrix at sparsity `s`.
 * `reference`: floor(dIn·s) each; `exact`: total round(s·dOut·dIn), rows differ by ≤ 1, extras to the lowest rows.
 */
export function rowCounts(dOut: number, dIn: number, s: number, budget: BudgetMode): Int32Array {
  const out = new Int32Array(dOut);
  if (budget === 'reference') {
    out.fill(referenceRowCount(dIn, s));
    return out;
  }
  const total = Math.min(exactCount(s, dOut * dIn), dOut * dIn);
  const base = Math.floor(total / dOut);
  const extra = total - base * dOut;
  out.fill(base);
  out.fill(base + 1, 0, extra);
  return out;
}

/**
 * Split `round(s · total)` into consecutive segments proportionally (cumulative rounding): segment i of the
 * boundaries `ends` (cumulative sizes, increasing, last = total) receives round(s·ends[i]) − round(s·ends[i−1]).
 * The parts sum to exactCount(s, total) and each is within one of s·size. Used for SparseGPT's column blocks.
 */
export function splitExactCount(s: number, ends: ArrayLike<number>): Int32Array {
  const out = new Int32Array(ends.length);
  let prev = 0;
  for (let i = 0; i < ends.length; i++) {
    const cur = exactCount(s, ends[i]);
    out[i] = cur - prev;
    prev = cur;
  }
  return out;
}
