/**
 * The exact global budget: turn raw per-block (or per-linear) sparsities into bounded ones whose parameter-weighted
 * mean is exactly the target.
 *
 * Algorithm. Find the one offset c such that
 *     Σ_i w_i · clamp(raw_i + c, min, max) = S · Σ_i w_i,
 * and return clamp(raw_i + c, min, max). The left side is continuous and non-decreasing in c, piecewise linear with
 * breakpoints at min − raw_i and max − raw_i. We sort the breakpoints, binary-search the segment where the left side
 * crosses S·W, and solve the linear equation on it: with the blocks clamped low (L) or high (H) and the free ones (U)
 * fixed on that segment, c = (S·W − min·w(L) − max·w(H) − Σ_U w_i raw_i) / w(U). O(n log n), no iteration tolerance.
 *
 * This is "clamp to [0, 0.99], shift the unclamped ones by one common offset until the weighted mean equals S, repeat
 * when the shift clamps more" of the project's METHODS.md specification, solved in closed form; unlike a literal clamp-first loop,
 * a block clamped by the first clamp comes back into range when the common shift moves it there, so the result is a
 * continuous function of the raw values (and independent of the order of the blocks).
 */
import { DsaPruneError } from '../errors.js';

/** Bounds of the exact budget (0.99: never remove a whole layer). */
export const EXACT_MIN = 0;
export const EXACT_MAX = 0.99;

export interface ExactBudgetOptions {
  /** Lower bound of every sparsity (default 0). */
  min?: number;
  /** Upper bound of every sparsity (default 0.99). */
  max?: number;
  /** What the entries are, for error messages (default `block`). */
  what?: string;
}

/** Σ w_i s_i / Σ w_i. */
export function weightedMean(s: ArrayLike<number>, w: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < s.length; i++) {
    num += w[i] * s[i];
    den += w[i];
  }
  return num / den;
}

const clamp = (x: number, lo: number, hi: number) => (x < lo ? lo : x > hi ? hi : x);

/**
 * Bounded sparsities with parameter-weighted mean exactly `target` (to float64 rounding): clamp(raw + c) with the one
 * common offset c that meets the budget. Entries with weight 0 follow the same shift but do not count.
 * Throws DsaPruneError when the target is outside [min, max], a raw value is not finite, or all weights are 0.
 */
export function exactBudget(raw: ArrayLike<number>, weights: ArrayLike<number>, target: number, o: ExactBudgetOptions = {}): number[] {
  const lo = o.min ?? EXACT_MIN;
  const hi = o.max ?? EXACT_MAX;
  const what = o.what ?? 'block';
  const n = raw.length;
  if (weights.length !== n) throw new RangeError(`exactBudget: ${n} values but ${weights.length} weights`);
  if (!(target >= lo && target <= hi)) {
    throw new DsaPruneError(`target sparsity ${target} is outside [${lo}, ${hi}] allowed by the exact budget`, {
      hint: `Choose a sparsity between ${lo} and ${hi}.`,
    });
  }
  let W = 0;
  for (let i = 0; i < n; i++) {
    const w = weights[i];
    if (!(w >= 0) || !Number.isFinite(w)) throw new DsaPruneError(`${what} ${i} has an invalid parameter count ${w}`);
    if (!Number.isFinite(raw[i])) {
      throw new DsaPruneError(`the allocation of ${what} ${i} is not a finite number (${raw[i]})`, {
        hint: 'The allocator produced a non-finite sparsity; check its inputs or parameters.',
      });
    }
    W += w;
  }
  if (!(W > 0)) throw new DsaPruneError(`no parameters to prune: every ${what} has 0 parameters`);
  const tW = target * W;

  const bp = new Float64Array(2 * n);
  let m = 0;
  for (let i = 0; i < n; i++) {
    if (weights[i] === 0) continue;
    bp[m++] = lo - raw[i];
    bp[m++] = hi - raw[i];
  }
  const points = bp.subarray(0, m).sort();
  const g = (c: number) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += weights[i] * clamp(raw[i] + c, lo, hi);
    return s - tW;
  };
  // Smallest k with g(points[k]) ≥ 0; g(points[m−1]) = (hi − target)·W ≥ 0, so k exists.
  let a = 0;
  let b = m - 1;
  while (a < b) {
    const mid = (a + b) >> 1;
    if (g(points[mid]) >= 0) b = mid;
    else a = mid + 1;
  }
  let c: number;
  if (a === 0 || g(points[a]) === 0) {
    c = points[a];
  } else {
    const left = points[a - 1];
    const right = points[a];
    const probe = 0.5 * (left + right);
    let fixed = 0;
    let freeW = 0;
    let freeSum = 0;
    for (let i = 0; i < n; i++) {
      const w = weights[i];
      if (w === 0) continue;
      const x = raw[i] + probe;
      if (x <= lo) fixed += w * lo;
      else if (x >= hi) fixed += w * hi;
      else {
        freeW += w;
        freeSum += w * raw[i];
      }
    }
    c = freeW > 0 ? (tW - fixed - freeSum) / freeW : right;
    c = clamp(c, left, right);
  }
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = clamp(raw[i] + c, lo, hi);
  return out;
}
