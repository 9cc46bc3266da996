/**
 * Magnitude pruning: metric |W|, per matrix (unstructured) or per group of M (N:M). See docs/methods.md.
 * reference budget: thr = sort(|W|)[floor(numel·s)], zero every |W| ≤ thr (ties can add zeros);
 * exact budget: zero exactly round(s·numel) weights, the smallest |W| first, ties lowest flat index first.
 */
import { exactCount } from '../budget/rounding.js';
import { quickselectInPlace } from '../kernels/select.js';
import { checkContext, countZeros } from './common.js';
import { magnitudeOrder, orderFastPath } from './orders.js';
import { nmNotes, pruneRowNm, validateSparsityAndPattern } from './patterns.js';
import type { MethodContext, MethodResult, PruningMethod } from './types.js';

function pruneMagnitude(ctx: MethodContext): MethodResult {
  checkContext('magnitude', ctx);
  validateSparsityAndPattern(ctx.sparsity, ctx.pattern, ctx.name);
  ctx.signal?.throwIfAborted();
  const { weight: w, dOut, dIn, sparsity: s, pattern } = ctx;
  const numel = dOut * dIn;
  if (pattern.kind === 'nm') {
    const row = new Float32Array(dIn);
    const picked = new Int32Array(pattern.m);
    for (let r = 0; r < dOut; r++) {
      const o = r * dIn;
      for (let j = 0; j < dIn; j++) row[j] = Math.abs(w[o + j]);
      pruneRowNm(row, 0, w, o, dIn, pattern.n, pattern.m, picked);
    }
    return { zeros: countZeros(w), notes: nmNotes(dIn, pattern) };
  }
  if (s === 0) return { zeros: countZeros(w), notes: [] };
  // |W| copy (NaN sorts last, as torch.sort), permuted by the selection
  const abs = new Float32Array(numel);
  for (let i = 0; i < numel; i++) {
    const a = Math.abs(w[i]);
    abs[i] = a !== a ? Infinity : a;
  }
  if (ctx.budget === 'reference') {
    const thr = quickselectInPlace(abs, Math.floor(numel * s));
    for (let i = 0; i < numel; i++) if (Math.abs(w[i]) <= thr) w[i] = 0;
  } else {
    const k = Math.min(exactCount(s, numel), numel);
    if (k > 0) {
      const v = quickselectInPlace(abs, k - 1);
      let less = 0;
      for (let i = 0; i < numel; i++) if (Math.abs(w[i]) < v) less++;
      let eq = k - less;
      for (let i = 0; i < numel; i++) {
        const a = Math.abs(w[i]);
        if (a < v) w[i] = 0;
        else if (eq > 0 && (a === v || (a !== a && v === Infinity))) {
          w[i] = 0;
          eq--;
        }
      }
    }
  }
  return { zeros: countZeros(w), notes: [] };
}

/** Magnitude pruning (no calibration statistics needed). */
export const magnitude: PruningMethod = {
  name: 'magnitude',
  needs: { sq: false, gram: false },
  prune: pruneMagnitude,
  // Fast path: the per-matrix stable order of |W|, once; a sparsity then zeroes its first k entries.
  prepare: (ctx) => orderFastPath(magnitudeOrder(ctx.weight, ctx.dOut, ctx.dIn), ctx.weight, ctx.budget, ctx.layout),
};
