/** Checks and small helpers shared by the built-in methods. */
import { DsaPruneError } from '../errors.js';
import type { InputStats } from '../types.js';
import type { MethodContext } from './types.js';

/** Number of zero entries (+0 and −0) of `w` (in kernels/: model/ counts zeros too). */
export { countZeros } from '../kernels/dense.js';

/** `layer <name>` or `the layer` for messages. */
export function layerLabel(ctx: { name?: string }): string {
  return ctx.name ? `layer ${ctx.name}` : 'the layer';
}

/** Validate the shape of a context (weight length, sparsity range, pattern); throws DsaPruneError. */
export function checkContext(method: string, ctx: MethodContext): void {
  const { dOut, dIn, weight } = ctx;
  if (!Number.isInteger(dOut) || !Number.isInteger(dIn) || dOut <= 0 || dIn <= 0) {
    throw new DsaPruneError(`${method}: ${layerLabel(ctx)} has invalid shape ${dOut}×${dIn}`);
  }
  if (weight.length !== dOut * dIn) {
    throw new DsaPruneError(
      `${method}: ${layerLabel(ctx)} weight has ${weight.length} entries, expected dOut×dIn = ${dOut}×${dIn}`,
    );
  }
}

/** Return the statistics a method needs or throw a DsaPruneError naming the layer and what is missing. */
export function requireStats(method: string, ctx: Pick<MethodContext, 'stats' | 'dOut' | 'dIn' | 'name'>, gram: boolean): InputStats {
  const s = ctx.stats;
  const what = gram ? 'the input Gram matrix (stats.gram)' : 'input statistics (stats.sq)';
  const hint = `collect calibration statistics with method.needs = { sq: true${gram ? ', gram: true' : ''} } before pruning`;
  if (!s) throw new DsaPruneError(`${method} needs ${what} for ${layerLabel(ctx)}, none were given`, { hint });
  if (!(s.nsamples > 0)) {
    throw new DsaPruneError(`${method}: ${layerLabel(ctx)} statistics have nsamples = ${s.nsamples}`, { hint });
  }
  if (!gram && s.sq.length !== ctx.dIn) {
    throw new DsaPruneError(
      `${method}: ${layerLabel(ctx)} stats.sq has ${s.sq.length} entries, the layer has dIn = ${ctx.dIn}`,
      { hint },
    );
  }
  if (gram) {
    if (!s.gram) throw new DsaPruneError(`${method} needs ${what} for ${layerLabel(ctx)}, stats.gram is absent`, { hint });
    if (s.gram.length !== ctx.dIn * ctx.dIn) {
      throw new DsaPruneError(
        `${method}: ${layerLabel(ctx)} stats.gram has ${s.gram.length} entries, expected ${ctx.dIn}×${ctx.dIn}`,
        { hint },
      );
    }
  }
  return s;
}
