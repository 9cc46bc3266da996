/**
 * The one resolver of per-linear sparsity: what sparsity a linear is pruned to, given an allocation. Used by the
 * pipeline (src/prune.ts), the search's fitness (src/search/fitness.ts, hence the worker threads and the distributed
 * worker, which build their fitness there) and the `nonUniform` wrapper.
 *
 * Rule, in order:
 * 1. the allocation's per-linear entry `linearSparsity[name]`, when present;
 * 2. for a linear inside the decoder blocks (block ≥ 0): its block's entry `blockSparsity[block]`; an allocation
 *    with no entry for that block is a DsaPruneError (never a silent fallback to the global target);
 * 3. for a linear outside the blocks (lm_head, block −1): `outside`, the global target of the request, when the
 *    caller gives one (pruneModel with `lmHead: true` prunes lm_head at the requested sparsity unless the allocation
 *    names it); without `outside` it is a DsaPruneError.
 * The result must be a finite number in [0, 1], else a DsaPruneError naming the linear.
 */
import { DsaPruneError } from '../errors.js';
import type { Allocation } from './types.js';

/** What the resolver needs of a linear. */
export interface LinearRef {
  name: string;
  /** Decoder block (0-based), −1 outside the blocks. */
  block: number;
}

export interface ResolveOptions {
  /** Sparsity of a linear outside the blocks without its own entry (the request's global target). */
  outside?: number;
  /** Allocator name, for messages. */
  allocator?: string;
}

/** Target sparsity of one linear under `allocation` (see the module comment for the rule). */
export function resolveLinearSparsity(allocation: Pick<Allocation, 'blockSparsity' | 'linearSparsity'>, linear: LinearRef, o: ResolveOptions = {}): number {
  const who = o.allocator ? `${o.allocator} ` : 'the allocation ';
  let s = allocation.linearSparsity?.[linear.name];
  if (s === undefined) {
    if (linear.block >= 0) {
      s = allocation.blockSparsity[linear.block];
      if (s === undefined) {
        throw new DsaPruneError(`${who}allocated ${allocation.blockSparsity.length} blocks; ${linear.name} is in block ${linear.block}`, {
          hint: 'the allocation must have one sparsity per decoder block of the model (or a per-linear entry for this linear)',
        });
      }
    } else {
      s = o.outside;
      if (s === undefined) {
        throw new DsaPruneError(`${who}gives no sparsity for ${linear.name}, which is outside the decoder blocks (block -1)`, {
          hint: 'lm_head and other linears outside the decoder blocks need a per-linear sparsity (explicit({ lm_head: 0.5 })).',
        });
      }
    }
  }
  if (typeof s !== 'number' || !Number.isFinite(s) || s < 0 || s > 1) {
    throw new DsaPruneError(`${who}gives ${linear.name} the sparsity ${String(s)}, outside [0, 1]`);
  }
  return s;
}

/** Target sparsities of `linears`, in order (resolveLinearSparsity on each). */
export function resolveLinearSparsities(allocation: Pick<Allocation, 'blockSparsity' | 'linearSparsity'>, linears: readonly LinearRef[], o: ResolveOptions = {}): number[] {
  return linears.map((l) => resolveLinearSparsity(allocation, l, o));
}
