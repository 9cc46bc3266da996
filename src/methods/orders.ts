/**
 * Cached pruning orders, the fast path of Wanda and magnitude (their `prepare`): the dense statistics never change
 * during a search, so the order in which Wanda (per output row, stable ascending metric) or magnitude (per matrix,
 * stable ascending |W|) removes weights is computed once per linear; a candidate then only writes zeros for the first k
 * entries. The result is the same mask `prune()` produces (test/methods/fast-path.test.ts checks it against them).
 */
import type { BudgetMode, InputStats } from '../types.js';
import { exactCount, rowCounts } from '../budget/rounding.js';
import { transpose } from '../kernels/dense.js';
import { wandaMetric } from './metrics.js';
import type { StoredLayout } from './types.js';

/** Stored layout of a weight: `in_out` = ONNX MatMul B [dIn × dOut]; `out_in` = [dOut × dIn]. */
export type Layout = StoredLayout;

export interface PruneOrder {
  method: 'wanda' | 'magnitude';
  dOut: number;
  dIn: number;
  /**
   * wanda: for every row i, order[i·dIn + t] = column of the t-th smallest metric (ties: lowest column first).
   * magnitude: order[t] = flat index (i·dIn + j) of the t-th smallest |W| (ties: lowest index first).
   */
  order: Uint16Array | Uint32Array;
  /** magnitude: |W| in flat order (NaN read as +∞), for the reference rule "zero every |W| ≤ threshold". */
  abs?: Float32Array;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Per-row stable ascending order of the Wanda metric. `weight` is [dOut × dIn]. */
export function wandaOrder(weight: Float32Array, dOut: number, dIn: number, stats: InputStats): PruneOrder {
  if (dIn > 65536) {
    // Column indices no longer fit the 16-bit packing below: sort with a comparator instead.
    const metric = wandaMetric(weight, dOut, dIn, stats.sq, stats.nsamples);
    const order = new Uint32Array(dOut * dIn);
    const idx = new Uint32Array(dIn);
    for (let i = 0; i < dOut; i++) {
      const o = i * dIn;
      for (let j = 0; j < dIn; j++) idx[j] = j;
      const key = (j: number) => {
        const v = metric[o + j]!;
        return v !== v ? Infinity : v;
      };
      idx.sort((a, b) => key(a) - key(b) || a - b);
      order.set(idx, o);
    }
    return { method: 'wanda', dOut, dIn, order };
  }
  const order = new Uint16Array(dOut * dIn);
  const rowMetric = new Float32Array(dIn);
  const keys = new Float64Array(dIn);
  for (let i = 0; i < dOut; i++) {
    const o = i * dIn;
    wandaMetric(weight.subarray(o, o + dIn), 1, dIn, stats.sq, stats.nsamples, rowMetric);
    for (let j = 0; j < dIn; j++) {
      // The metric is ≥ 0, so its float32 bit pattern orders like the value; NaN sorts as +∞ (as the methods do).
      const v = rowMetric[j]!;
      f32[0] = v !== v ? Infinity : v;
      keys[j] = u32[0]! * 65536 + j; // < 2^48: exact in float64, ties broken by column
    }
    keys.sort();
    for (let t = 0; t < dIn; t++) order[o + t] = keys[t]! % 65536;
  }
  return { method: 'wanda', dOut, dIn, order };
}

/** Per-matrix stable ascending order of |W|. `weight` is [dOut × dIn]. */
export function magnitudeOrder(weight: Float32Array, dOut: number, dIn: number): PruneOrder {
  const n = dOut * dIn;
  const abs = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const a = Math.abs(weight[i]!);
    abs[i] = a !== a ? Infinity : a;
  }
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => abs[a]! - abs[b]! || a - b);
  return { method: 'magnitude', dOut, dIn, order, abs };
}

/**
 * Write into `dst` the dense weight `dense` (stored layout) with the weights the order removes at `sparsity` zeroed.
 * Returns the number of weights zeroed. `dst` may be reused between candidates.
 */
export function applyOrder(p: PruneOrder, dense: Float32Array, layout: Layout, sparsity: number, budget: BudgetMode, dst: Float32Array): number {
  dst.set(dense);
  if (sparsity <= 0) return 0;
  const { dOut, dIn, order } = p;
  const inOut = layout === 'in_out';
  if (p.method === 'wanda') {
    const counts = rowCounts(dOut, dIn, sparsity, budget);
    let zeroed = 0;
    for (let i = 0; i < dOut; i++) {
      const k = Math.min(counts[i]!, dIn);
      const o = i * dIn;
      if (inOut) for (let t = 0; t < k; t++) dst[order[o + t]! * dOut + i] = 0;
      else for (let t = 0; t < k; t++) dst[o + order[o + t]!] = 0;
      zeroed += Math.max(0, k);
    }
    return zeroed;
  }
  const n = dOut * dIn;
  let k: number;
  if (budget === 'reference') {
    // thr = sorted(|W|)[floor(n·s)]; zero every |W| ≤ thr (ties can add zeros).
    k = Math.floor(n * sparsity);
    if (k >= n) k = n;
    else {
      const thr = p.abs![order[k]!]!;
      while (k < n && p.abs![order[k]!]! <= thr) k++;
    }
  } else {
    k = Math.min(exactCount(sparsity, n), n);
  }
  for (let t = 0; t < k; t++) {
    const f = order[t]!;
    if (inOut) {
      const i = Math.floor(f / dIn);
      dst[(f - i * dIn) * dOut + i] = 0;
    } else dst[f] = 0;
  }
  return k;
}

/**
 * A prepared linear that re-masks a cached order: keeps the dense weight in the layout the caller stores it in
 * (`ctx.layout`, so no transpose per candidate) and the order; `apply` = applyOrder.
 */
export function orderFastPath(order: PruneOrder, weight: Float32Array, budget: BudgetMode, layout: Layout = 'out_in'): { layout: Layout; apply(s: number, out: Float32Array): void } {
  const { dOut, dIn } = order;
  const dense = layout === 'out_in' ? weight : transpose(weight, dOut, dIn);
  return { layout, apply: (s, out) => void applyOrder(order, dense, layout, s, budget, out) };
}

