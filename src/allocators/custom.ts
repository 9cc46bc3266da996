import type { Allocator, AllocationInput, AllocatorProperties } from './types.js';
import { allocationFromScores, budgetRaw, scoreBased, validateInput } from './scores.js';
import { DsaPruneError } from '../errors.js';

/** Options of a user allocator. */
export interface CustomOptions {
  /**
   * What `fn` returns per block: `sparsity` (default; the budget step runs on it) or `importance` (mapped like DSA:
   * `s = S + 2λ(minmax(I) − mean)`, a larger importance prunes more).
   */
  output?: 'sparsity' | 'importance';
  /** λ for `output: 'importance'` (default 0.08). */
  lambda?: number;
  /** Properties to verify with checkAllocator (dsa-prune/testing). */
  properties?: AllocatorProperties;
  /** Set false when fn never reads the block vectors z, so the pipeline can skip the dense pass (default true). */
  needsStatistics?: boolean;
  /** One line for reports (default `custom: <name>`). */
  description?: string;
}

/**
 * An allocator from a plain function of the statistics. `fn` returns one number per block (a sparsity, or an
 * importance with `output: 'importance'`). The budget step of the chosen mode runs after it, so the target holds.
 */
export function custom(name: string, fn: (input: AllocationInput) => number[], o: CustomOptions = {}): Allocator {
  if (typeof fn !== 'function') throw new DsaPruneError(`custom allocator ${name}: fn must be a function`);
  const lambda = o.lambda ?? 0.08;
  const call = (input: AllocationInput) => {
    const v = fn(input);
    if (!Array.isArray(v) || v.length !== input.blocks.length) {
      throw new DsaPruneError(`custom allocator ${name} returned ${Array.isArray(v) ? v.length : typeof v} values for ${input.blocks.length} blocks`, {
        hint: 'Return an array with one number per block.',
      });
    }
    return v.map(Number);
  };
  const params = (input: AllocationInput) => input.blocks.map((b) => b.params);
  const base = { name, describe: () => o.description ?? `custom: ${name}`, ...(o.properties ? { properties: o.properties } : {}), needsStatistics: o.needsStatistics ?? true };
  if (o.output === 'importance') {
    const fromScores = (I: number[], input: AllocationInput) => ({
      blockSparsity: allocationFromScores(I, params(input), input.sparsity, lambda, input.budget, { label: `importance of ${name}` }),
      scores: I,
    });
    return scoreBased(base, call, fromScores);
  }
  return {
    ...base,
    allocate(input) {
      validateInput(input);
      return { blockSparsity: budgetRaw(call(input), params(input), input.sparsity, input.budget) };
    },
  };
}
