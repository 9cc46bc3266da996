/**
 * The search's way into a method: `prepareLinear` returns the method's own fast path (`PruningMethod.prepare`), or,
 * for a method without one, a prepared linear that copies the dense weight and calls `prune()` per sparsity (slower,
 * the same numbers). The caller (src/search/fitness.ts) never names a method.
 */
import { DsaPruneError } from '../errors.js';
import type { FastPathContext, PreparedLinear, PruningMethod } from './types.js';

/** The prepared linear of `method` for one dense linear (see PruningMethod.prepare). */
export async function prepareLinear(method: PruningMethod, ctx: FastPathContext): Promise<PreparedLinear> {
  if (ctx.weight.length !== ctx.dOut * ctx.dIn) {
    throw new DsaPruneError(`${method.name}: ${ctx.name ?? 'a linear'} has ${ctx.weight.length} weights, expected ${ctx.dOut}×${ctx.dIn}`, { code: 'internal' });
  }
  if (method.prepare) {
    const p = await method.prepare(ctx);
    if (!p || typeof p.apply !== 'function') {
      throw new DsaPruneError(`method ${method.name}: prepare() returned no apply(sparsity, out) function`, {
        code: 'invalid-input', hint: 'return { apply(sparsity, out) { … } } from prepare(), or leave prepare out',
      });
    }
    return p;
  }
  return {
    layout: 'out_in',
    apply: async (sparsity, out, signal) => {
      out.set(ctx.weight);
      await method.prune({ weight: out, dOut: ctx.dOut, dIn: ctx.dIn, stats: ctx.stats, sparsity, pattern: { kind: 'unstructured' }, budget: ctx.budget, signal, name: ctx.name });
    },
  };
}
