/**
 * The exact global budget counted in parameters: from per-unit sparsities (blocks or linears of different sizes) to
 * integer numbers of pruned weights whose sum is exactly round(S · Σ n_i).
 *
 * `exactBudget` (global.ts) makes the parameter-weighted mean of the sparsities equal S in real numbers; each linear
 * then prunes round(s_i · n_i) weights (rounding.ts), and the sum of those roundings may miss round(S · W) by up to
 * half a weight per linear. `apportionCounts` fixes the integers instead (largest remainder): start from
 * floor(s_i · n_i), give the missing weights one each to the units with the largest fractional parts, keep every count
 * within [ceil(min · n_i), floor(max · n_i)]. Each count stays within one weight of s_i · n_i (when the bounds allow).
 */
import { DsaPruneError } from '../errors.js';
import { EXACT_MAX, EXACT_MIN } from './global.js';

export interface CountOptions {
  /** Bounds of every unit's sparsity (default [0, 0.99], those of the exact budget). */
  min?: number;
  max?: number;
}

/**
 * Integer pruned-weight counts c_i ∈ [ceil(min·n_i), floor(max·n_i)] with Σ c_i = round(target · Σ n_i), each as
 * close to s_i · n_i as the sum allows (largest remainder). Throws when the bounds cannot hold the total.
 */
export function apportionCounts(s: ArrayLike<number>, n: ArrayLike<number>, target: number, o: CountOptions = {}): number[] {
  const lo = o.min ?? EXACT_MIN;
  const hi = o.max ?? EXACT_MAX;
  const k = s.length;
  if (n.length !== k) throw new RangeError(`apportionCounts: ${k} sparsities but ${n.length} sizes`);
  let W = 0;
  const low: number[] = [];
  const high: number[] = [];
  for (let i = 0; i < k; i++) {
    if (!Number.isInteger(n[i]) || n[i] < 0) throw new DsaPruneError(`unit ${i} has an invalid parameter count ${n[i]}`);
    W += n[i];
    low.push(Math.ceil(lo * n[i] - 1e-9));
    high.push(Math.floor(hi * n[i] + 1e-9));
  }
  const total = Math.round(target * W);
  const c = new Array<number>(k);
  const frac: number[] = new Array(k);
  let sum = 0;
  for (let i = 0; i < k; i++) {
    const x = s[i] * n[i];
    const f = Math.min(high[i], Math.max(low[i], Math.floor(x)));
    c[i] = f;
    frac[i] = x - f;
    sum += f;
  }
  let rest = total - sum;
  // Largest fractional part first (ties: lower index); then, for float noise or clamped units, anyone with room.
  const order = Array.from({ length: k }, (_, i) => i).sort((a, b) => frac[b] - frac[a] || a - b);
  if (rest > 0) {
    for (let pass = 0; pass < 2 && rest > 0; pass++) {
      for (const i of order) {
        if (rest === 0) break;
        if (c[i] < high[i] && (pass === 1 || frac[i] > 0)) {
          c[i]++;
          frac[i] -= 1;
          rest--;
        }
      }
    }
    // Still short (many units with s_i·n_i integral): add where there is room, one weight at a time, round-robin.
    for (let guard = 0; rest > 0 && guard <= total; guard++) {
      let moved = false;
      for (const i of order) {
        if (rest === 0) break;
        if (c[i] < high[i]) {
          c[i]++;
          rest--;
          moved = true;
        }
      }
      if (!moved) break;
    }
  } else if (rest < 0) {
    const rev = order.slice().reverse();
    for (let guard = 0; rest < 0 && guard <= W; guard++) {
      let moved = false;
      for (const i of rev) {
        if (rest === 0) break;
        if (c[i] > low[i]) {
          c[i]--;
          rest++;
          moved = true;
        }
      }
      if (!moved) break;
    }
  }
  if (rest !== 0) {
    throw new DsaPruneError(`cannot prune exactly ${total} of ${W} weights with every unit within [${lo}, ${hi}]`, {
      hint: 'Choose a target sparsity inside the bounds of the exact budget.',
    });
  }
  return c;
}

/** Per-unit sparsities c_i / n_i realising exactly round(target · Σ n_i) pruned weights (units with n_i = 0: s_i). */
export function exactCountSparsities(s: ArrayLike<number>, n: ArrayLike<number>, target: number, o: CountOptions = {}): number[] {
  const c = apportionCounts(s, n, target, o);
  return c.map((x, i) => (n[i] > 0 ? x / n[i] : s[i]));
}
