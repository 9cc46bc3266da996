import { describe, expect, it } from 'vitest';
import { applyOrder, magnitudeOrder, wandaOrder } from '../../src/methods/orders.js';
import { wanda, magnitude, sparsegpt, prepareLinear, type PruningMethod } from '../../src/methods/index.js';
import { Rng } from '../../src/search/random.js';
import type { BudgetMode, InputStats } from '../../src/types.js';

function randomLinear(dOut: number, dIn: number, seed: number, ties = false) {
  const rng = new Rng(seed);
  const w = new Float32Array(dOut * dIn);
  for (let i = 0; i < w.length; i++) w[i] = ties ? (rng.int(7) - 3) / 4 : rng.normal();
  const sq = new Float64Array(dIn);
  for (let j = 0; j < dIn; j++) sq[j] = ties ? 4 : rng.next() * 10;
  const stats: InputStats = { sq, nsamples: 4, tokens: 64 };
  return { w, stats };
}

function transposeNaive(w: Float32Array, dOut: number, dIn: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let i = 0; i < dOut; i++) for (let j = 0; j < dIn; j++) t[j * dOut + i] = w[i * dIn + j]!;
  return t;
}

describe('cached pruning orders give the methods\' masks', () => {
  for (const method of ['wanda', 'magnitude'] as const) {
    for (const budget of ['exact', 'reference'] as BudgetMode[]) {
      for (const ties of [false, true]) {
        it(`${method}, ${budget} budget${ties ? ', with ties' : ''}, both layouts, several sparsities`, async () => {
          const dOut = 24;
          const dIn = 40;
          const { w, stats } = randomLinear(dOut, dIn, ties ? 11 : 3, ties);
          const order = method === 'wanda' ? wandaOrder(w, dOut, dIn, stats) : magnitudeOrder(w, dOut, dIn);
          const bufOI = new Float32Array(w.length);
          const bufIO = new Float32Array(w.length);
          const wIO = transposeNaive(w, dOut, dIn);
          for (const s of [0, 0.1, 0.37, 0.5, 0.7, 0.93]) {
            const expected = w.slice();
            const m = method === 'wanda' ? wanda : magnitude;
            await m.prune({ weight: expected, dOut, dIn, stats, sparsity: s, pattern: { kind: 'unstructured' }, budget });
            applyOrder(order, w, 'out_in', s, budget, bufOI);
            expect(Array.from(bufOI)).toEqual(Array.from(expected));
            applyOrder(order, wIO, 'in_out', s, budget, bufIO);
            expect(Array.from(bufIO)).toEqual(Array.from(transposeNaive(expected, dOut, dIn)));
          }
        });
      }
    }
  }
});

describe('PruningMethod.prepare (the search\'s fast path) = prune() on a copy, in the layout it says it writes', () => {
  const dOut = 20;
  const dIn = 136; // > one SparseGPT column block
  const { w } = randomLinear(dOut, dIn, 5);
  const rng = new Rng(9);
  // a positive-definite Gram for SparseGPT: XᵀX of random inputs
  const X = Array.from({ length: 160 * dIn }, () => rng.normal());
  const gram = new Float64Array(dIn * dIn);
  for (let t = 0; t < 160; t++) for (let a = 0; a < dIn; a++) for (let b = 0; b < dIn; b++) gram[a * dIn + b] += X[t * dIn + a]! * X[t * dIn + b]!;
  const sq = new Float64Array(dIn);
  for (let j = 0; j < dIn; j++) sq[j] = gram[j * dIn + j]!;
  const stats: InputStats = { sq, gram, nsamples: 160, tokens: 160 };
  const userMethod: PruningMethod = {
    name: 'user-no-fast-path',
    needs: { sq: false, gram: false },
    prune: (ctx) => {
      // zero the first round(s·numel) entries in flat order: any deterministic rule will do
      const k = Math.round(ctx.sparsity * ctx.weight.length);
      for (let t = 0; t < k; t++) ctx.weight[t] = 0;
      return { zeros: k, notes: [] };
    },
  };
  for (const m of [wanda, magnitude, sparsegpt, userMethod]) {
    for (const budget of ['exact', 'reference'] as BudgetMode[]) {
      for (const layout of ['out_in', 'in_out'] as const) {
        if (m === userMethod && budget === 'reference') continue;
        it(`${m.name}, ${budget} budget, stored ${layout}`, async () => {
          const dense = w.slice();
          const p = await prepareLinear(m, { weight: dense, dOut, dIn, stats, budget, layout, name: 'x' });
          const writes = p.layout ?? 'out_in';
          const out = new Float32Array(w.length).fill(7); // stale values from a "previous candidate"
          for (const s of [0, 0.3, 0.6, 0.0, 0.9]) {
            const expected = w.slice();
            await m.prune({ weight: expected, dOut, dIn, stats, sparsity: s, pattern: { kind: 'unstructured' }, budget });
            await p.apply(s, out);
            const got = writes === 'out_in' ? out : transposeNaive(out, dIn, dOut);
            expect(Array.from(got)).toEqual(Array.from(expected));
          }
          // the dense weight it was given is untouched
          expect(Array.from(dense)).toEqual(Array.from(w));
        });
      }
    }
  }
});
