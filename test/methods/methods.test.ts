import { describe, expect, it } from 'vitest';
import { rowCounts } from '../../src/budget/rounding.js';
import { DsaPruneError } from '../../src/errors.js';
import {
  getMethod,
  magnitude,
  registerMethod,
  sparsegpt,
  validateMethodRequest,
  wanda,
  type MethodContext,
} from '../../src/methods/index.js';
import type { BudgetMode, InputStats, Pattern } from '../../src/types.js';
import { randomMatrix, rng } from '../kernels/rng.js';
import { diagOf, naiveMagnitude, naiveSparseGpt, naiveWanda, randomGram } from './naive.js';

const U: Pattern = { kind: 'unstructured' };
const nm = (n: number, m: number): Pattern => ({ kind: 'nm', n, m });

function zerosOf(w: ArrayLike<number>): number {
  let z = 0;
  for (let i = 0; i < w.length; i++) if (w[i] === 0) z++;
  return z;
}

/** Positions where exactly one of the two is zero (mask disagreement). */
function maskDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) if ((a[i] === 0) !== (b[i] === 0)) d++;
  return d;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

function stats(dIn: number, seed: number, withGram: boolean, tokens = 320, dead: number[] = []): InputStats {
  const gram = randomGram(dIn, tokens, rng(seed), dead);
  return { sq: diagOf(gram, dIn), gram: withGram ? gram : undefined, nsamples: 5, tokens };
}

function ctx(
  weight: Float32Array, dOut: number, dIn: number, sparsity: number, pattern: Pattern, budget: BudgetMode,
  st?: InputStats,
): MethodContext {
  return { weight, dOut, dIn, sparsity, pattern, budget, stats: st, name: 'test.layer' };
}

describe('magnitude', () => {
  for (const budget of ['reference', 'exact'] as const)
    for (const [s, levels] of [[0.5, 0], [0.7, 0], [0.6, 9]] as const)
      it(`${budget} budget, s=${s}${levels ? ', many ties' : ''}: equals the naive sort`, async () => {
        const dOut = 48, dIn = 70;
        const w = randomMatrix(dOut, dIn, 11 + levels, levels);
        const expected = naiveMagnitude(w, dOut, dIn, s, U, budget);
        const res = await magnitude.prune(ctx(w, dOut, dIn, s, U, budget));
        expect(Array.from(w)).toEqual(Array.from(expected));
        expect(res.zeros).toBe(zerosOf(expected));
        if (budget === 'exact' && levels === 0) expect(res.zeros).toBe(Math.round(s * dOut * dIn));
      });

  it('exact budget prunes exactly round(s·numel) even with ties, reference removes the whole tie', async () => {
    const w = new Float32Array(100).fill(1);
    const r1 = await magnitude.prune(ctx(w.slice(), 10, 10, 0.3, U, 'exact'));
    expect(r1.zeros).toBe(30);
    const r2 = await magnitude.prune(ctx(w.slice(), 10, 10, 0.3, U, 'reference'));
    expect(r2.zeros).toBe(100); // |W| ≤ thr with every |W| equal
  });

  it('N:M 2:4 and 4:8 (narrow last group) equal the naive rule', async () => {
    for (const p of [nm(2, 4), nm(4, 8), nm(3, 8)]) {
      const w = randomMatrix(16, 172, 5, 7);
      const expected = naiveMagnitude(w, 16, 172, 0.5, p, 'exact');
      const res = await magnitude.prune(ctx(w, 16, 172, 0.5, p, 'exact'));
      expect(Array.from(w)).toEqual(Array.from(expected));
      if (p.kind === 'nm' && p.m === 8) expect(res.notes.join(' ')).toContain('172 % 8 = 4');
      else expect(res.notes).toEqual([]);
    }
  });
});

describe('wanda', () => {
  for (const budget of ['reference', 'exact'] as const)
    for (const [s, levels] of [[0.5, 0], [0.6, 0], [0.8, 5]] as const)
      it(`${budget} budget, s=${s}${levels ? ', many ties' : ''}: masks equal a sort-based Wanda`, async () => {
        const dOut = 37, dIn = 96;
        const w = randomMatrix(dOut, dIn, 21 + levels, levels);
        const st = stats(dIn, 3, false, 64);
        if (levels) st.sq.fill(4); // equal scales: ties in A come from ties in |W|
        const counts = Array.from(rowCounts(dOut, dIn, s, budget));
        const expected = naiveWanda(w, dOut, dIn, st.sq, st.nsamples, s, U, counts);
        const res = await wanda.prune(ctx(w, dOut, dIn, s, U, budget, st));
        expect(Array.from(w)).toEqual(Array.from(expected));
        expect(res.zeros).toBe(budget === 'exact' ? Math.round(s * dOut * dIn) : dOut * Math.floor(dIn * s));
      });

  it('reference budget at 60% on a 64-wide layer prunes 59.375%; exact prunes 60% of the weights', async () => {
    const st = stats(64, 4, false, 64);
    const w1 = randomMatrix(64, 64, 8);
    const r1 = await wanda.prune(ctx(w1, 64, 64, 0.6, U, 'reference', st));
    expect(r1.zeros / 4096).toBe(0.59375);
    const w2 = randomMatrix(64, 64, 8);
    const r2 = await wanda.prune(ctx(w2, 64, 64, 0.6, U, 'exact', st));
    expect(r2.zeros).toBe(Math.round(0.6 * 4096));
    // rows differ by at most one
    const perRow = Array.from({ length: 64 }, (_, r) => zerosOf(w2.subarray(r * 64, r * 64 + 64)));
    expect(Math.max(...perRow) - Math.min(...perRow)).toBeLessThanOrEqual(1);
  });

  it('N:M masks equal the naive rule; the 64×172 4:8 layer realises 88/172 per row and a stories260k block 0.5028', async () => {
    const st = stats(172, 6, false, 64);
    const w = randomMatrix(64, 172, 9);
    const expected = naiveWanda(w, 64, 172, st.sq, st.nsamples, 0.5, nm(4, 8), []);
    const res = await wanda.prune(ctx(w, 64, 172, 0.5, nm(4, 8), 'reference', st));
    expect(Array.from(w)).toEqual(Array.from(expected));
    expect(res.zeros).toBe(64 * 88);
    // every full group of 8 has exactly 4 zeros (random weights: no accidental zeros), the 4-wide tail all zero
    for (let r = 0; r < 64; r++)
      for (let g = 0; g < 172; g += 8) {
        const z = zerosOf(w.subarray(r * 172 + g, r * 172 + Math.min(g + 8, 172)));
        expect(z).toBe(4);
      }
    // stories260k block: q 64×64, k/v 32×64, o 64×64, gate/up 172×64 at exactly 4/8; down 64×172 as above
    const others = 64 * 64 * 2 + 32 * 64 * 2 + 172 * 64 * 2;
    expect(((others / 2 + res.zeros) / (others + 64 * 172)).toFixed(4)).toBe('0.5028');
    const w2 = randomMatrix(8, 64, 3);
    await wanda.prune(ctx(w2, 8, 64, 0, nm(2, 4), 'exact', stats(64, 1, false, 64)));
    expect(zerosOf(w2)).toBe(8 * 32);
  });
});

describe('sparsegpt (vs a plain-loop float64 implementation of METHODS.md)', () => {
  const dOut = 64, dIn = 160;
  const cases: [string, number, Pattern, BudgetMode][] = [
    ['reference 50%', 0.5, U, 'reference'],
    ['reference 70%', 0.7, U, 'reference'],
    ['exact 60%', 0.6, U, 'exact'],
    ['2:4', 0.5, nm(2, 4), 'reference'],
    ['4:8', 0.5, nm(4, 8), 'exact'],
  ];
  for (const [label, s, p, budget] of cases)
    it(`${label}: masks equal, weights within 1e-4`, async () => {
      const w = randomMatrix(dOut, dIn, 31);
      const st = stats(dIn, 17, true, 320, label === 'reference 50%' ? [5, 140] : []);
      const gramBefore = st.gram!.slice();
      const expected = naiveSparseGpt(w, dOut, dIn, st.gram!, st.nsamples, s, p, budget);
      const res = await sparsegpt.prune(ctx(w, dOut, dIn, s, p, budget, st));
      expect(maskDiff(w, expected.w)).toBe(0);
      expect(maxAbsDiff(w, expected.w)).toBeLessThan(1e-4);
      expect(res.zeros).toBe(zerosOf(expected.w));
      if (budget === 'exact' && p.kind === 'unstructured') expect(res.zeros).toBe(Math.round(s * dOut * dIn));
      if (p.kind === 'nm') expect(res.zeros).toBe((dOut * dIn * p.n) / p.m);
      expect(st.gram).toEqual(gramBefore); // shared statistics are not modified
      if (label === 'reference 50%') expect(res.notes.join(' ')).toMatch(/2 dead inputs/);
    });

  it('2:4 on a width that is not a multiple of 128 with a narrow last group (dIn = 134)', async () => {
    const w = randomMatrix(24, 134, 41);
    const st = stats(134, 43, true, 300);
    const expected = naiveSparseGpt(w, 24, 134, st.gram!, st.nsamples, 0.5, nm(3, 4), 'reference');
    const res = await sparsegpt.prune(ctx(w, 24, 134, 0.5, nm(3, 4), 'reference', st));
    expect(maskDiff(w, expected.w)).toBe(0);
    expect(maxAbsDiff(w, expected.w)).toBeLessThan(1e-4);
    expect(res.notes.join(' ')).toContain('134 % 4 = 2');
  });

  it('layers sharing one gram (q/k/v) and a gram refilled in place both get the right Hinv', async () => {
    const st = stats(96, 12, true, 200);
    for (const [seed, refill] of [[1, false], [2, false], [3, true], [4, false]] as const) {
      if (refill) for (let i = 0; i < st.gram!.length; i += 7) st.gram![i] *= 1.5; // same buffer, new numbers
      const g = st.gram!;
      for (let i = 0; i < 96; i++) for (let j = 0; j < i; j++) g[j * 96 + i] = g[i * 96 + j]; // keep it symmetric
      const w = randomMatrix(20, 96, seed);
      const expected = naiveSparseGpt(w, 20, 96, st.gram!, st.nsamples, 0.5, U, 'reference');
      await sparsegpt.prune(ctx(w, 20, 96, 0.5, U, 'reference', st));
      expect(maskDiff(w, expected.w)).toBe(0);
      expect(maxAbsDiff(w, expected.w)).toBeLessThan(1e-4);
    }
  });

  it('grams of one width alternating (A, B, A) and prunes running at once keep the right Hinv (reused Hinv and work buffers)', { timeout: 60_000 }, async () => {
    // 300 inputs: three column blocks and the onnxruntime Hinv (awaits inside), so the two prunes below interleave.
    // A new Hinv is computed in the previous cache entry's array only when no prune holds it; the sweep buffers are
    // a pool: two prunes in flight on different grams of the same width must not share either
    const a = stats(300, 11, true, 400), b = stats(300, 12, true, 400);
    const expectOk = (w: Float32Array, w0: Float32Array, st: InputStats) => {
      const expected = naiveSparseGpt(w0, 20, 300, st.gram!, st.nsamples, 0.5, U, 'reference');
      expect(maskDiff(w, expected.w)).toBe(0);
      expect(maxAbsDiff(w, expected.w)).toBeLessThan(1e-4);
    };
    for (const [seed, st] of [[1, a], [2, b], [3, a]] as const) {
      const w0 = randomMatrix(20, 300, seed);
      const w = w0.slice();
      await sparsegpt.prune(ctx(w, 20, 300, 0.5, U, 'reference', st));
      expectOk(w, w0, st);
    }
    // two fresh grams: both Hinv run on onnxruntime at once, then both sweeps yield between column blocks (signal)
    const c = stats(300, 13, true, 400), d = stats(300, 14, true, 400);
    const w0c = randomMatrix(20, 300, 4), w0d = randomMatrix(20, 300, 5);
    const wc = w0c.slice(), wd = w0d.slice();
    const signal = new AbortController().signal;
    await Promise.all([
      sparsegpt.prune({ ...ctx(wc, 20, 300, 0.5, U, 'reference', c), signal }),
      sparsegpt.prune({ ...ctx(wd, 20, 300, 0.5, U, 'reference', d), signal }),
    ]);
    expectOk(wc, w0c, c);
    expectOk(wd, w0d, d);
  });

  it('retries with more damping when H is not positive definite, and says so', async () => {
    const n = 16;
    const gram = new Float64Array(n * n);
    for (let i = 0; i < n; i++) gram[i * n + i] = 1;
    gram[1] = gram[n] = 1.05; // eigenvalue −0.05 of the leading 2×2: 1% damping is not enough, 10% is
    const st: InputStats = { sq: diagOf(gram, n), gram, nsamples: 2, tokens: 2 };
    const w = randomMatrix(8, n, 2);
    const expected = naiveSparseGpt(w, 8, n, gram, 2, 0.5, U, 'reference');
    expect(expected.percdamp).toBeCloseTo(0.1);
    const res = await sparsegpt.prune(ctx(w, 8, n, 0.5, U, 'reference', st));
    expect(res.notes.join(' ')).toMatch(/not positive definite.*0\.10 × mean/);
    expect(maskDiff(w, expected.w)).toBe(0);
    expect(maxAbsDiff(w, expected.w)).toBeLessThan(1e-4);
  });

  it('fails with a DsaPruneError naming the layer when H stays indefinite (NaN statistics)', async () => {
    const n = 8;
    const gram = new Float64Array(n * n);
    for (let i = 0; i < n; i++) gram[i * n + i] = 1;
    gram[3 * n + 3] = NaN;
    const st: InputStats = { sq: diagOf(gram, n), gram, nsamples: 1, tokens: 1 };
    await expect(sparsegpt.prune(ctx(randomMatrix(4, n, 1), 4, n, 0.5, U, 'exact', st))).rejects.toThrow(
      /test\.layer.*not positive definite/,
    );
  });

  it('stops on an aborted signal', async () => {
    const st = stats(160, 2, true);
    const ac = new AbortController();
    ac.abort();
    const c = ctx(randomMatrix(8, 160, 1), 8, 160, 0.5, U, 'exact', st);
    c.signal = ac.signal;
    await expect(sparsegpt.prune(c)).rejects.toThrow();
  });
});

describe('sparsity 0 prunes nothing', () => {
  for (const m of [magnitude, wanda, sparsegpt])
    for (const budget of ['reference', 'exact'] as const)
      it(`${m.name} (${budget})`, async () => {
        const w = randomMatrix(16, 130, 7);
        const before = w.slice();
        const res = await m.prune(ctx(w, 16, 130, 0, U, budget, stats(130, 3, true, 200)));
        expect(res.zeros).toBe(0);
        expect(w).toEqual(before);
      });
});

describe('requests and registry', () => {
  it('refuses invalid requests with a DsaPruneError', () => {
    const bad: Parameters<typeof validateMethodRequest>[0][] = [
      { method: 'wanda', sparsity: 1 },
      { method: 'wanda', sparsity: -0.1 },
      { method: 'wanda', sparsity: NaN },
      { method: 'magnitude', sparsity: 0.5, pattern: nm(4, 4) },
      { method: 'magnitude', sparsity: 0.5, pattern: nm(0, 4) },
      { method: 'magnitude', sparsity: 0.5, pattern: nm(2.5, 4) },
      { method: 'sparsegpt', sparsity: 0.5, pattern: nm(2, 6) },
      { method: 'nope', sparsity: 0.5 },
      { method: 'wanda', sparsity: 0.5, budget: 'approx' as BudgetMode },
    ];
    for (const req of bad) expect(() => validateMethodRequest(req), JSON.stringify(req)).toThrow(DsaPruneError);
    expect(validateMethodRequest({ method: 'sparsegpt', sparsity: 0, pattern: nm(2, 4) })).toBe(sparsegpt);
    expect(validateMethodRequest({ method: 'wanda', sparsity: 0.5, pattern: nm(2, 6) })).toBe(wanda);
    expect(() => getMethod('obs')).toThrow(/known: magnitude, wanda, sparsegpt/);
  });

  it('methods refuse missing statistics and wrong shapes, naming the layer', async () => {
    await expect(async () => wanda.prune(ctx(randomMatrix(2, 4, 1), 2, 4, 0.5, U, 'exact'))).rejects.toThrow(
      /wanda needs .*test\.layer/,
    );
    const st = stats(4, 1, false, 16);
    await expect(async () => sparsegpt.prune(ctx(randomMatrix(2, 4, 1), 2, 4, 0.5, U, 'exact', st))).rejects.toThrow(
      /stats\.gram is absent/,
    );
    await expect(async () => magnitude.prune(ctx(randomMatrix(2, 4, 1), 3, 4, 0.5, U, 'exact'))).rejects.toThrow(
      DsaPruneError,
    );
  });

  it('registers user methods, refuses to replace built-ins', async () => {
    registerMethod({
      name: 'zero-first-column',
      needs: { sq: false, gram: false },
      prune: (c) => {
        for (let r = 0; r < c.dOut; r++) c.weight[r * c.dIn] = 0;
        return { zeros: c.dOut, notes: [] };
      },
    });
    const m = getMethod('zero-first-column');
    const w = randomMatrix(3, 3, 1);
    expect((await m.prune(ctx(w, 3, 3, 0.3, U, 'exact'))).zeros).toBe(3);
    expect(() => registerMethod({ ...magnitude })).toThrow(DsaPruneError);
    expect(getMethod('Wanda')).toBe(wanda);
  });
});
