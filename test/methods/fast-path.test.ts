import { describe, expect, it } from 'vitest';
import { applyOrder, magnitudeOrder, wandaOrder } from '../../src/methods/orders.js';
import { wanda, magnitude } from '../../src/methods/index.js';
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
