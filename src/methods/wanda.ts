/**
 * Wanda: metric A_ij = |W_ij| · sqrt(sq_j / nsamples) (float32, `wandaMetric`), pruned per output row:
 * the first rowCounts[i] entries of a stable ascending sort of the row (reference: floor(dIn·s) each; exact:
 * round(s·numel) spread over rows), or N of every M. No weight update.
 */
import { rowCounts } from '../budget/rounding.js';
import { zeroSmallestF32 } from '../kernels/select.js';
import { checkContext, countZeros, requireStats } from './common.js';
import { wandaMetric } from './metrics.js';
import { orderFastPath, wandaOrder } from './orders.js';
import { nmNotes, pruneRowNm, validateSparsityAndPattern } from './patterns.js';
import type { FastPathContext, MethodContext, MethodResult, PreparedLinear, PruningMethod } from './types.js';

/** Rows of the metric computed at a time (bounds memory to ~4 MiB instead of 4·numel bytes). */
const CHUNK_ELEMENTS = 1 << 20;

function pruneWanda(ctx: MethodContext): MethodResult {
  checkContext('wanda', ctx);
  validateSparsityAndPattern(ctx.sparsity, ctx.pattern, ctx.name);
  const stats = requireStats('wanda', ctx, false);
  ctx.signal?.throwIfAborted();
  const { weight: w, dOut, dIn, sparsity: s, pattern } = ctx;
  const nm = pattern.kind === 'nm' ? pattern : undefined;
  if (!nm && s === 0) return { zeros: countZeros(w), notes: [] };
  const counts = nm ? undefined : rowCounts(dOut, dIn, s, ctx.budget);
  const chunkRows = Math.max(1, Math.min(dOut, Math.floor(CHUNK_ELEMENTS / dIn)));
  const metric = new Float32Array(chunkRows * dIn);
  const scratch = new Float32Array(dIn);
  const picked = new Int32Array(nm ? nm.m : 1);
  for (let r0 = 0; r0 < dOut; r0 += chunkRows) {
    const rows = Math.min(chunkRows, dOut - r0);
    wandaMetric(w.subarray(r0 * dIn, (r0 + rows) * dIn), rows, dIn, stats.sq, stats.nsamples, metric);
    for (let i = 0; i < rows; i++) {
      const mo = i * dIn;
      const wo = (r0 + i) * dIn;
      if (nm) {
        pruneRowNm(metric, mo, w, wo, dIn, nm.n, nm.m, picked);
        continue;
      }
      const k = counts![r0 + i];
      if (k <= 0) continue;
      zeroSmallestF32(metric, k, w, mo, dIn, wo, scratch);
    }
    ctx.signal?.throwIfAborted();
  }
  return { zeros: countZeros(w), notes: nmNotes(dIn, pattern) };
}

/** Fast path: the per-row stable order of the metric, once; a sparsity then zeroes the first rowCounts[i] of each row. */
function prepareWanda(ctx: FastPathContext): PreparedLinear {
  const stats = requireStats('wanda', ctx, false);
  return orderFastPath(wandaOrder(ctx.weight, ctx.dOut, ctx.dIn, stats), ctx.weight, ctx.budget, ctx.layout);
}

/** Wanda (needs Σx² of the layer input). */
export const wanda: PruningMethod = {
  name: 'wanda',
  needs: { sq: true, gram: false },
  prune: pruneWanda,
  prepare: prepareWanda,
};
