import type { Allocation, AllocationInput, Allocator } from './types.js';
import { DsaPruneError } from '../errors.js';

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
  /** Target sparsity of one linear: its per-linear override, else its block's sparsity. */
  sparsityFor(allocation: Allocation, linear: { name: string; block: number }): number;
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
    sparsityFor(allocation, linear) {
      const own = allocation.linearSparsity?.[linear.name];
      if (own !== undefined) return own;
      const s = allocation.blockSparsity[linear.block];
      if (s === undefined) {
        throw new DsaPruneError(`${allocator.name} allocated ${allocation.blockSparsity.length} blocks; ${linear.name} is in block ${linear.block}`, {
          hint: 'lm_head and other linears outside the decoder blocks need a per-linear sparsity (explicit({ lm_head: 0.5 })).',
        });
      }
      return s;
    },
  };
}
