import type { Allocation, AllocationInput, Allocator } from './types.js';
import { DsaPruneError } from '../errors.js';
import { resolveLinearSparsity } from './resolve.js';

/** What the wrapper needs of a pruning method (src/methods PruningMethod satisfies it). */
export interface MethodLike {
  name: string;
  needs: { sq: boolean; gram: boolean };
}

/** A uniform method made non-uniform: the pipeline asks `allocate` once, then `sparsityFor` each linear. */
export interface NonUniform<M extends MethodLike = MethodLike> {
  /** `wanda+owl`, … */
  name: string;
  method: M;
  allocator: Allocator;
  /** True when the allocator reads block vectors (a dense statistics pass is needed before pruning). */
  needsDenseStatistics: boolean;
  allocate(input: AllocationInput): Allocation;
  /**
   * Target sparsity of one linear (resolveLinearSparsity): its per-linear entry, else its block's sparsity; a linear
   * outside the blocks without an entry gets `outside` (the global target) when given, else it is a DsaPruneError.
   */
  sparsityFor(allocation: Allocation, linear: { name: string; block: number }, outside?: number): number;
}

/**
 * The one wrapper that turns any uniform method (magnitude, Wanda, SparseGPT, a user's) into a non-uniform one:
 * `nonUniform(wanda, owl())`. The method is unchanged; only the sparsity each linear is pruned to differs.
 */
export function nonUniform<M extends MethodLike>(method: M, allocator: Allocator): NonUniform<M> {
  if (!method || typeof method.name !== 'string') throw new DsaPruneError('nonUniform needs a pruning method');
  if (!allocator || typeof allocator.allocate !== 'function') throw new DsaPruneError('nonUniform needs an allocator (uniform(), owl(), dsa(), …)');
  return {
    name: `${method.name}+${allocator.name}`,
    method,
    allocator,
    needsDenseStatistics: allocator.needsStatistics !== false,
    allocate: (input) => allocator.allocate(input),
    sparsityFor: (allocation, linear, outside) => resolveLinearSparsity(allocation, linear, { outside, allocator: allocator.name }),
  };
}
