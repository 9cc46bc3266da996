/**
 * The score → sparsity step shared by OWL and DSA (METHODS.md):
 *   r = minmax(scores);  s_ℓ = S + sign · 2λ (r_ℓ − mean r)
 * (DSA: sign +1, a larger importance prunes more; OWL: sign −1, more outliers prune less), followed by the budget:
 * `reference` clamps s ≤ 0 to 0.01 and does no parameter weighting; `exact` runs the global budget (budget/global.ts).
 */
import { DsaPruneError } from '../errors.js';
import type { BudgetMode } from '../types.js';
import type { Allocation, AllocationInput, Allocator } from './types.js';
import { exactBudget } from '../budget/global.js';

/** (v − min) / (max − min). */
export function minmax(v: readonly number[]): number[] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of v) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  const d = hi - lo;
  return v.map((x) => (x - lo) / d);
}

/** The reference code's mapping of a non-finite importance: NaN → 0, ±inf → −1. */
export function referenceScore(x: number): number {
  return Number.isNaN(x) ? 0 : Number.isFinite(x) ? x : -1;
}

/** The reference code's clamp: s ≤ 0 → 0.01. A sparsity ≥ 1 cannot be pruned: DsaPruneError naming the block. */
export function referenceClamp(s: readonly number[], what = 'block'): number[] {
  return s.map((x, i) => {
    if (!(x < 1)) {
      throw new DsaPruneError(`the allocation gives ${what} ${i} a sparsity of ${x} (≥ 1)`, {
        hint: 'Lower --lambda (or --beta), lower the target sparsity, or use the exact budget (clamps to 0.99).',
      });
    }
    return x <= 0 ? 0.01 : x;
  });
}

export interface FromScoresOptions {
  /** +1 (default, DSA): a larger score prunes more; −1 (OWL): a larger score prunes less. */
  sign?: 1 | -1;
  /** What a constant score vector means: an error (default, DSA) or a uniform allocation (OWL: no block stands out). */
  onConstant?: 'error' | 'uniform';
  /** Name of the scores in messages (default `importance`). */
  label?: string;
}

/**
 * Per-block sparsities from per-block scores. `params` weights the exact budget; blocks with 0 parameters are left
 * out of minmax and mean (their score may be undefined) and get S. Reference mode maps non-finite scores
 * (NaN → 0, ±inf → −1) first; exact mode refuses them (the DSA allocator reports which stage failed before this).
 */
export function allocationFromScores(
  scores: readonly number[],
  params: readonly number[],
  S: number,
  lambda: number,
  budget: BudgetMode,
  o: FromScoresOptions = {},
): number[] {
  const sign = o.sign ?? 1;
  const label = o.label ?? 'importance';
  if (scores.length !== params.length) throw new RangeError(`${scores.length} scores for ${params.length} blocks`);
  if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new DsaPruneError(`lambda must be a finite number ≥ 0, got ${lambda}`, { hint: 'The published runs use --lambda 0.08.' });
  const reference = budget === 'reference';
  const active: number[] = [];
  for (let i = 0; i < scores.length; i++) if (reference || params[i] > 0) active.push(i);
  const vals = active.map((i) => (reference ? referenceScore(scores[i]) : scores[i]));
  const bad = active.filter((_, k) => !Number.isFinite(vals[k]));
  if (bad.length) {
    throw new DsaPruneError(`the ${label} is not finite in blocks ${bad.join(',')} (${bad.map((i) => scores[i]).join(', ')})`, {
      hint: 'Use a function defined on this model (`dsa-prune search` finds one), or --budget reference for the reference mapping (NaN → 0, ±inf → −1).',
    });
  }
  const raw = new Array<number>(scores.length).fill(S);
  if (active.length > 1) {
    const lo = Math.min(...vals);
    const hi = Math.max(...vals);
    // Constant up to rounding (e.g. var(normalize(z)) = 1 ± 1e-16): the ranking would be noise.
    if (hi - lo <= 1e-12 * Math.max(Math.abs(hi), Math.abs(lo))) {
      if (o.onConstant !== 'uniform') {
        throw new DsaPruneError(`the ${label} is the same (${lo}) in every block, up to rounding: it cannot rank the blocks`, {
          hint: 'Choose an allocation function whose value differs between blocks (`dsa-prune search` only keeps such functions).',
        });
      }
    } else {
      const r = minmax(vals);
      let mean = 0;
      for (const x of r) mean += x;
      mean /= r.length;
      active.forEach((i, k) => (raw[i] = S + sign * 2 * lambda * (r[k] - mean)));
    }
  }
  return reference ? referenceClamp(raw) : exactBudget(raw, params, S);
}

/**
 * The budget step for allocators that produce sparsities directly (ATP, explicit, custom): `exact` → the global
 * budget; `reference` → the values as they are, checked to lie in [0, 1).
 */
export function budgetRaw(raw: readonly number[], params: readonly number[], S: number, budget: BudgetMode, what = 'block'): number[] {
  if (budget === 'exact') return exactBudget(raw, params, S, { what });
  return raw.map((x, i) => {
    if (!(x >= 0 && x < 1)) {
      throw new DsaPruneError(`the allocation gives ${what} ${i} a sparsity of ${x}, outside [0, 1)`, {
        hint: 'Use the exact budget (it clamps to [0, 0.99] and keeps the target), or change the allocator parameters.',
      });
    }
    return x;
  });
}

/** Check the request every allocator receives. */
export function validateInput(input: { blocks: unknown[]; sparsity: number; budget: BudgetMode }): void {
  if (!input || !Array.isArray(input.blocks)) throw new DsaPruneError('allocate() needs { blocks, sparsity, budget }');
  if (typeof input.sparsity !== 'number' || !(input.sparsity >= 0 && input.sparsity < 1)) {
    throw new DsaPruneError(`sparsity must be a number in [0, 1), got ${String(input.sparsity)}`);
  }
  if (input.budget !== 'exact' && input.budget !== 'reference') {
    throw new DsaPruneError(`budget must be 'exact' or 'reference', got ${String(input.budget)}`);
  }
}

/** A score-based allocator: allocate(input) = fromScores(scores(input), input), with the input validated first. */
export function scoreBased(
  base: Pick<Allocator, 'name' | 'describe' | 'properties' | 'needsStatistics'>,
  scores: (input: AllocationInput) => number[],
  fromScores: (scores: number[], input: AllocationInput) => Allocation,
): Allocator {
  return {
    ...base,
    scores,
    fromScores,
    allocate(input) {
      validateInput(input);
      return fromScores(scores(input), input);
    },
  };
}
