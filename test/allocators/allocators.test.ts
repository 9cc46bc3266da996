import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  atp, custom, dsa, exactBudget, explicit, importance, nonUniform, outlierRatio, owl, parseAllocatorSpec, uniform, weightedMean,
  DSA_PUBLISHED, type AllocationInput, type BlockAllocationStats,
} from '../../src/allocators/index.js';
import { DsaPruneError } from '../../src/errors.js';
import { mulberry32 } from '../../src/data/text.js';

const rng = mulberry32;
/** Blocks of a tiny Llama: 7 linears, hidden d, ffn f; z = |normal| with a few outliers scaled by `spike`. */
function blocks(L: number, seed: number, o: { d?: number; f?: number; spike?: (b: number) => number; widths?: number[] } = {}): BlockAllocationStats[] {
  const r = rng(seed);
  return Array.from({ length: L }, (_, index) => {
    const d = o.widths?.[index] ?? o.d ?? 8;
    const f = o.f ?? 2 * d;
    const shapes: [string, 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down', number][] = [
      ['self_attn.q_proj', 'q', d * d], ['self_attn.k_proj', 'k', d * d], ['self_attn.v_proj', 'v', d * d],
      ['self_attn.o_proj', 'o', d * d], ['mlp.gate_proj', 'gate', d * f], ['mlp.up_proj', 'up', d * f], ['mlp.down_proj', 'down', d * f],
    ];
    const linears = shapes.map(([n, role, params]) => ({ name: `model.layers.${index}.${n}`, role, params }));
    const params = linears.reduce((a, l) => a + l.params, 0);
    const z = new Float32Array(params);
    const spike = o.spike?.(index) ?? 0.01;
    for (let i = 0; i < params; i++) {
      const g = Math.abs(Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()));
      z[i] = r() < spike ? g * 40 : g;
    }
    return { index, params, linears, z };
  });
}
const input = (b: BlockAllocationStats[], sparsity: number, budget: 'exact' | 'reference' = 'exact'): AllocationInput => ({ blocks: b, sparsity, budget });
const thrown = (f: () => unknown): DsaPruneError => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DsaPruneError);
    return e as DsaPruneError;
  }
  throw new Error('expected a DsaPruneError');
};

// ---- independent float64 versions ----
function naiveOwlD(z: Float32Array, M: number): number {
  const a = Array.from(z);
  const m = a.reduce((s, x) => s + x, 0) / a.length;
  return (100 * a.filter((x) => x > M * m).length) / a.length;
}
function naiveMap(scores: number[], S: number, lam: number, sign: number): number[] {
  const lo = Math.min(...scores);
  const hi = Math.max(...scores);
  const r = scores.map((x) => (x - lo) / (hi - lo));
  const mr = r.reduce((a, b) => a + b, 0) / r.length;
  return r.map((x) => S + sign * 2 * lam * (x - mr));
}
/** Exact budget by bisection on the common offset (200 halvings), written independently of budget/global.ts. */
function naiveExact(raw: number[], w: number[], S: number, lo = 0, hi = 0.99): number[] {
  const f = (c: number) => raw.reduce((a, x, i) => a + w[i] * Math.min(hi, Math.max(lo, x + c)), 0) / w.reduce((a, b) => a + b, 0) - S;
  let a = -2;
  let b = 2;
  for (let k = 0; k < 200; k++) {
    const m = (a + b) / 2;
    if (f(m) < 0) a = m;
    else b = m;
  }
  return raw.map((x) => Math.min(hi, Math.max(lo, x + (a + b) / 2)));
}

describe('exact global budget', () => {
  it('matches an independent bisection and hits the target to 1e-12', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.double({ min: -0.5, max: 1.5, noNaN: true }), fc.integer({ min: 0, max: 1e7 })), { minLength: 1, maxLength: 64 }),
        fc.double({ min: 0, max: 0.99, noNaN: true }),
        (pairs, S) => {
          fc.pre(pairs.some(([, w]) => w > 0));
          const raw = pairs.map((p) => p[0]);
          const w = pairs.map((p) => p[1]);
          const got = exactBudget(raw, w, S);
          expect(Math.abs(weightedMean(got, w) - S)).toBeLessThan(1e-12);
          for (const s of got) expect(s >= 0 && s <= 0.99).toBe(true);
          const want = naiveExact(raw, w, S);
          // A block of weight w_i is pinned by the mean only to (rounding of the mean) × W / w_i: when every heavier
          // block is clamped, a light block carries the whole remainder (CI found W / w_i = 7e6 at S = 0.99 − 2e-15).
          const W = w.reduce((a, b) => a + b, 0);
          got.forEach((s, i) => {
            if (w[i] > 0) expect(Math.abs(s - want[i])).toBeLessThan(1e-9 + 8 * Number.EPSILON * (W / w[i]));
          });
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a light block beside clamped heavy ones (the ill-conditioned case CI found) still matches the bisection', () => {
    const raw = [-1.5505349171274222e-8, 0, 0, 0, 0];
    const w = [2, 13, 4074189, 5890897, 4057154];
    const S = 0.9899999999999979;
    const got = exactBudget(raw, w, S);
    expect(Math.abs(weightedMean(got, w) - S)).toBeLessThan(1e-12);
    const want = naiveExact(raw, w, S);
    expect(Math.abs(got[0] - want[0])).toBeLessThan(1e-8);
    expect(got[0]).toBeLessThan(0.99 - 1e-9); // the light block takes the remainder below the cap
  });

  it('keeps the shape: one common offset for every unclamped block', () => {
    const got = exactBudget([0.1, 0.5, 0.9, 1.2], [1, 1, 1, 1], 0.6);
    // 1.2 clamps to 0.99; the others move together by c: (0.1+c)+(0.5+c)+(0.9+c)+0.99 = 2.4
    const c = (2.4 - 0.99 - 1.5) / 3;
    expect(got[0]).toBeCloseTo(0.1 + c, 14);
    expect(got[1]).toBeCloseTo(0.5 + c, 14);
    expect(got[3]).toBe(0.99);
  });

  it('refuses impossible targets and empty models', () => {
    expect(thrown(() => exactBudget([0.5], [1], 0.995)).message).toMatch(/outside \[0, 0.99\]/);
    expect(thrown(() => exactBudget([0.5, 0.5], [0, 0], 0.5)).message).toMatch(/no parameters/);
    expect(thrown(() => exactBudget([NaN, 0.5], [1, 1], 0.5)).message).toMatch(/block 0/);
  });
});

describe('uniform', () => {
  it('gives every block S', () => {
    expect(uniform().allocate(input(blocks(3, 1), 0.6)).blockSparsity).toEqual([0.6, 0.6, 0.6]);
    expect(uniform().needsStatistics).toBe(false);
  });
});

describe('OWL', () => {
  it('outlier ratio equals a naive float64 count', () => {
    for (const b of blocks(4, 7, { spike: (i) => 0.002 * (i + 1) })) {
      for (const M of [2, 5, 7]) expect(outlierRatio(b.z, M)).toBeCloseTo(naiveOwlD(b.z, M), 12);
    }
  });

  it('reference mode: s = S − 2λ(q − mean q) with q = minmax(D), unweighted', () => {
    const bs = blocks(6, 3, { spike: (i) => 0.001 + 0.003 * ((i * 7) % 5) });
    const D = bs.map((b) => naiveOwlD(b.z, 5));
    const want = naiveMap(D, 0.7, 0.08, -1);
    const a = owl().allocate(input(bs, 0.7, 'reference'));
    a.blockSparsity.forEach((s, i) => expect(s).toBeCloseTo(want[i], 12));
    a.scores!.forEach((d, i) => expect(d).toBeCloseTo(D[i], 12));
    // More outliers → less pruning.
    const most = D.indexOf(Math.max(...D));
    expect(a.blockSparsity[most]).toBe(Math.min(...a.blockSparsity));
  });

  it('exact mode: weighted mean S with unequal block sizes, same ranking', () => {
    const bs = blocks(5, 9, { widths: [4, 8, 12, 6, 10], spike: (i) => 0.002 * (i + 1) });
    const a = owl({ M: 5, lambda: 0.1 }).allocate(input(bs, 0.7));
    expect(Math.abs(weightedMean(a.blockSparsity, bs.map((b) => b.params)) - 0.7)).toBeLessThan(1e-12);
    const D = bs.map((b) => naiveOwlD(b.z, 5));
    const want = naiveExact(naiveMap(D, 0.7, 0.1, -1), bs.map((b) => b.params), 0.7);
    a.blockSparsity.forEach((s, i) => expect(s).toBeCloseTo(want[i], 9));
  });

  it('equal outlier ratios give the uniform allocation', () => {
    const bs = blocks(3, 4, { spike: () => 0 }).map((b) => ({ ...b, z: new Float32Array(b.z.length).fill(1) }));
    expect(owl().allocate(input(bs, 0.5)).blockSparsity).toEqual([0.5, 0.5, 0.5]);
  });

  it('reference clamp s ≤ 0 → 0.01', () => {
    const bs = blocks(4, 5, { spike: (i) => 0.003 * i });
    const a = owl({ lambda: 0.5 }).allocate(input(bs, 0.1, 'reference'));
    expect(a.blockSparsity).toContain(0.01);
  });
});

describe('DSA', () => {
  const varLog = (z: Float32Array) => {
    const a = Array.from(z, (x) => Math.log(Math.abs(x === 0 ? 1 : x)));
    const m = a.reduce((s, x) => s + x, 0) / a.length;
    return a.reduce((s, x) => s + (x - m) ** 2, 0) / (a.length - 1);
  };

  it('allocates from I = asin(atan(var(ln|z|))) like a naive float64 computation', () => {
    // Scale z so var(ln|z|) stays below tan(1): z = 1 + small |normal|.
    const bs = blocks(5, 11).map((b, i) => ({ ...b, z: b.z.map((x) => 1 + x * 0.2 * (i + 1)) }));
    const I = bs.map((b) => Math.asin(Math.atan(varLog(b.z))));
    expect(I.every(Number.isFinite)).toBe(true);
    const a = dsa().allocate(input(bs, 0.6, 'reference'));
    const want = naiveMap(I, 0.6, 0.08, 1);
    a.blockSparsity.forEach((s, i) => expect(s).toBeCloseTo(want[i], 10));
    expect(a.expression).toEqual({ reference: DSA_PUBLISHED, mathjs: 'asin(atan(var(abslog(z))))', simplified: 'asin(atan(var(abslog(z))))', lambda: 0.08 });
    // Larger importance → more pruning.
    expect(a.blockSparsity[I.indexOf(Math.max(...I))]).toBe(Math.max(...a.blockSparsity));
    const e = dsa(undefined, { lambda: 0.05 }).allocate(input(bs, 0.6));
    expect(Math.abs(weightedMean(e.blockSparsity, bs.map((b) => b.params)) - 0.6)).toBeLessThan(1e-12);
  });

  it('exact mode: the published function undefined on a block is an error naming the blocks and the reason', () => {
    // var(ln|z|) ≈ 4·(i+1)·0.3 > tan 1 in blocks 0..3 (lognormal z); ≈ 0.003 in block 4.
    const r = rng(5);
    const bs = blocks(5, 12).map((b, i) => ({
      ...b,
      z: b.z.map(() => (i === 4 ? 1 + 0.1 * r() : Math.exp(2 * (r() - 0.5) * 3 * (1 + 0.3 * i)))),
    }));
    const err = thrown(() => dsa().allocate(input(bs, 0.7)));
    expect(err.message).toMatch(/asin of a value outside \[-1, 1\] \(1\.\d+.*\) in blocks 0,1,2,3\b/);
    expect(err.message).toMatch(/4 of 5 blocks/);
    expect(err.message).toMatch(/published function is undefined on this model/);
    expect(err.hint).toMatch(/dsa-prune search/);
    // Reference mode: NaN → 0 → "prune one block harder" (the last, whose importance is the only finite one).
    const a = dsa().allocate(input(bs, 0.7, 'reference'));
    expect(a.blockSparsity.slice(0, 4).every((s) => Math.abs(s - (0.7 - 0.16 * 0.2)) < 1e-12)).toBe(true);
    expect(a.blockSparsity[4]).toBeCloseTo(0.7 + 0.16 * 0.8, 12);
  });

  it('reference mode maps ±inf to −1', () => {
    const d = dsa('W:(NO_OP)-(MEAN)-(LOG)');
    const inp = input(blocks(3, 1), 0.5, 'reference');
    const got = d.fromScores!([-Infinity, 0.5, 2], inp).blockSparsity;
    expect(got).toEqual(naiveMap([-1, 0.5, 2], 0.5, 0.08, 1).map((s) => (s <= 0 ? 0.01 : s)));
  });

  it('a constant importance is an error in both modes', () => {
    const bs = blocks(3, 2).map((b, i, all) => ({ ...b, z: all[0].z })); // identical blocks
    for (const budget of ['exact', 'reference'] as const) {
      const err = thrown(() => dsa('var(z)').allocate(input(bs, 0.5, budget)));
      expect(err.message).toMatch(/same .* in every block/);
    }
  });

  it('an importance constant up to rounding is refused too (var of a normalised vector is 1 ± 1e-16)', () => {
    const bs = blocks(4, 3);
    const I = bs.map((b) => importance('var(normalize(z))', b.z));
    expect(I.every((v) => Math.abs(v - 1) < 1e-12)).toBe(true);
    expect(thrown(() => dsa('var(normalize(z))').allocate(input(bs, 0.5))).message).toMatch(/same .* up to rounding/);
  });

  it('one block: nothing to allocate', () => {
    expect(dsa('var(z)').allocate(input(blocks(1, 2), 0.5)).blockSparsity).toEqual([0.5]);
  });
});

describe('ATP', () => {
  it('s = S − β(L−1)/2 + ℓβ', () => {
    const bs = blocks(5, 1);
    const got = atp({ beta: 0.03 }).allocate(input(bs, 0.5, 'reference')).blockSparsity;
    got.forEach((s, l) => expect(s).toBeCloseTo(0.5 - 0.06 + 0.03 * l, 14));
    const ex = atp({ beta: 0.03 }).allocate(input(bs, 0.5)).blockSparsity;
    ex.forEach((s, l) => expect(s).toBeCloseTo(0.5 - 0.06 + 0.03 * l, 12)); // equal sizes: already on budget
    expect(thrown(() => atp({ beta: -1 })).message).toMatch(/beta/);
  });
});

describe('explicit', () => {
  it('list: as given in reference mode, shifted to the budget in exact mode', () => {
    const bs = blocks(3, 1, { widths: [4, 8, 4] });
    expect(explicit([0.4, 0.5, 0.6]).allocate(input(bs, 0.5, 'reference')).blockSparsity).toEqual([0.4, 0.5, 0.6]);
    const ex = explicit([0.4, 0.5, 0.6]).allocate(input(bs, 0.5)).blockSparsity;
    expect(Math.abs(weightedMean(ex, bs.map((b) => b.params)) - 0.5)).toBeLessThan(1e-12);
    expect(ex[1] - ex[0]).toBeCloseTo(0.1, 12);
    expect(thrown(() => explicit([0.5]).allocate(input(bs, 0.5))).message).toMatch(/1 values but the model has 3 blocks/);
  });

  it('map of name patterns: last match wins, unmatched get S, per-linear sparsities', () => {
    const bs = blocks(2, 1);
    const a = explicit({ '*.mlp.*': 0.6, '/down_proj$/': 0.3, 'model.layers.1.self_attn.q_proj': 0.2 }).allocate(input(bs, 0.5, 'reference'));
    expect(a.linearSparsity!['model.layers.0.mlp.up_proj']).toBe(0.6);
    expect(a.linearSparsity!['model.layers.0.mlp.down_proj']).toBe(0.3);
    expect(a.linearSparsity!['model.layers.1.self_attn.q_proj']).toBe(0.2);
    expect(a.linearSparsity!['model.layers.0.self_attn.k_proj']).toBe(0.5);
    const w = bs[0].linears.map((l) => l.params);
    expect(a.blockSparsity[0]).toBeCloseTo(weightedMean(bs[0].linears.map((l) => a.linearSparsity![l.name]), w), 14);
    const ex = explicit({ '*.mlp.*': 0.9 }).allocate(input(bs, 0.5));
    const all = bs.flatMap((b) => b.linears);
    expect(Math.abs(weightedMean(all.map((l) => ex.linearSparsity![l.name]), all.map((l) => l.params)) - 0.5)).toBeLessThan(1e-12);
    expect(thrown(() => explicit({ '*.mlp.gate': 0.5 }).allocate(input(bs, 0.5))).message).toMatch(/matches no prunable linear/);
  });
});

describe('custom', () => {
  it('sparsity output goes through the budget; importance output through the DSA mapping', () => {
    const bs = blocks(4, 1, { widths: [4, 6, 8, 10] });
    const lin = custom('linear', (inp) => inp.blocks.map((_, i) => 0.4 + 0.1 * i));
    const a = lin.allocate(input(bs, 0.5));
    expect(Math.abs(weightedMean(a.blockSparsity, bs.map((b) => b.params)) - 0.5)).toBeLessThan(1e-12);
    const imp = custom('size', (inp) => inp.blocks.map((b) => b.params), { output: 'importance', lambda: 0.1 });
    const r = imp.allocate(input(bs, 0.5, 'reference')).blockSparsity;
    const want = naiveMap(bs.map((b) => b.params), 0.5, 0.1, 1);
    r.forEach((s, i) => expect(s).toBeCloseTo(want[i], 14));
    expect(thrown(() => custom('bad', () => [0.5]).allocate(input(bs, 0.5))).message).toMatch(/returned 1 values for 4 blocks/);
  });
});

describe('parseAllocatorSpec', () => {
  it('understands the CLI forms', () => {
    expect(parseAllocatorSpec('uniform').name).toBe('uniform');
    expect(parseAllocatorSpec('owl', { owlM: 7, lambda: 0.1 }).describe()).toBe('owl: outlier-weighted, M=7, lambda=0.1');
    expect(parseAllocatorSpec('atp', { beta: 0.01 }).describe()).toMatch(/beta=0.01/);
    expect(parseAllocatorSpec('dsa').describe()).toMatch(/W:\(ABSLOG\)-\(VAR\)-\(ATAN,ASIN\)/);
    expect(parseAllocatorSpec('dsa:W:(ABS)-(VAR)-(ATAN)', { lambda: 0.2 }).describe()).toBe('dsa: W:(ABS)-(VAR)-(ATAN) = atan(var(abs(z))), lambda=0.2');
    expect(parseAllocatorSpec('atan(std(z))').name).toBe('dsa');
    expect(parseAllocatorSpec('explicit:0.5,0.6').allocate(input(blocks(2, 1), 0.55, 'reference')).blockSparsity).toEqual([0.5, 0.6]);
    expect(thrown(() => parseAllocatorSpec('owls')).hint).toMatch(/uniform, owl, atp, dsa/);
    expect(thrown(() => parseAllocatorSpec('dsa:W:(FOO)-(VAR)-(ATAN)')).message).toMatch(/FOO/);
  });
});

describe('nonUniform', () => {
  it('wraps any method with any allocator', () => {
    const method = { name: 'wanda', needs: { sq: true, gram: false } };
    const nu = nonUniform(method, explicit({ '*.down_proj': 0.3 }));
    expect(nu.name).toBe('wanda+explicit');
    expect(nu.needsDenseStatistics).toBe(false);
    expect(nonUniform(method, owl()).needsDenseStatistics).toBe(true);
    const bs = blocks(2, 1);
    const a = nu.allocate(input(bs, 0.5, 'reference'));
    expect(nu.sparsityFor(a, { name: 'model.layers.1.mlp.down_proj', block: 1 })).toBe(0.3);
    const b = nonUniform(method, atp({ beta: 0.1 })).allocate(input(bs, 0.5, 'reference'));
    expect(nu.sparsityFor(b, { name: 'model.layers.1.mlp.up_proj', block: 1 })).toBeCloseTo(0.55, 14);
    expect(thrown(() => nu.sparsityFor(b, { name: 'lm_head', block: -1 })).message).toMatch(/block -1/);
  });
});
