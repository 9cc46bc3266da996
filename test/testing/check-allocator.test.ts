import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  AllocatorCheckError, allocationInputArbitrary, type AllocationInputArbitraryOptions, blockStatsArbitrary, checkAllocator, zVector, Z_DISTRIBUTIONS,
} from '../../src/testing/index.js';
import {
  atp, custom, dsa, explicit, owl, uniform, PRE_OPS, REDUCE_OPS, SCALAR_OPS, type Allocator,
} from '../../src/allocators/index.js';
import { DsaPruneError } from '../../src/errors.js';

const failure = (f: () => unknown): AllocatorCheckError => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(AllocatorCheckError);
    return e as AllocatorCheckError;
  }
  throw new Error('checkAllocator accepted a broken allocator');
};

describe('arbitraries', () => {
  it('generate consistent block statistics (params = Σ linears = |z|)', () => {
    fc.assert(
      fc.property(allocationInputArbitrary({ maxBlocks: 64 }), (inp) => {
        expect(inp.blocks.length).toBeGreaterThanOrEqual(1);
        expect(inp.blocks.length).toBeLessThanOrEqual(64);
        expect(inp.sparsity >= 0 && inp.sparsity <= 0.95).toBe(true);
        inp.blocks.forEach((b, i) => {
          expect(b.index).toBe(i);
          expect(b.params).toBe(b.linears.reduce((a, l) => a + l.params, 0));
          expect(b.z.length).toBe(b.params);
          expect(b.linears.map((l) => l.role)).toEqual(['q', 'k', 'v', 'o', 'gate', 'up', 'down']);
        });
      }),
      { numRuns: 100 },
    );
  });

  it('cover depth 1..64, varied widths and heavy tails', () => {
    const seen = { L1: false, L64: false, varied: false };
    fc.assert(
      fc.property(blockStatsArbitrary({ widths: 'varied' }), (bs) => {
        if (bs.length === 1) seen.L1 = true;
        if (bs.length === 64) seen.L64 = true;
        if (new Set(bs.map((b) => b.params)).size > 1) seen.varied = true;
      }),
      { numRuns: 300 },
    );
    expect(seen.varied).toBe(true);
    const c = zVector('cauchy', 20000, 3);
    const sorted = Array.from(c).sort((a, b) => a - b);
    expect(sorted[19999] / sorted[10000]).toBeGreaterThan(1000); // heavy tail
    expect(Z_DISTRIBUTIONS.length).toBeGreaterThanOrEqual(7);
    expect(zVector('halfnormal', 10, 1)).toEqual(zVector('halfnormal', 10, 1)); // deterministic
  });
});

describe('checkAllocator on every built-in', () => {
  it.each<[string, Allocator, AllocationInputArbitraryOptions?]>([
    ['uniform', uniform()],
    ['owl', owl()],
    ['owl M=3 λ=0.2', owl({ M: 3, lambda: 0.2 })],
    ['atp', atp()],
    // ATP's spread grows with depth (β per block): in reference mode deep inputs fall outside [0, 1) and are refused,
    // so this case draws shallower models to have accepted inputs whatever the seed.
    ['atp β=0.05', atp({ beta: 0.05 }), { maxBlocks: 12, minSparsity: 0.3, maxSparsity: 0.7 }],
    ['dsa published', dsa()],
    ['dsa std', dsa('W:(ABS)-(STD)-(ATAN)')],
    ['dsa entropy', dsa('W:(MMS)-(ENTROPY)-(NO_OP)', { lambda: 0.15 })],
    ['explicit map', explicit({ '*.mlp.*': 0.7, '/q_proj$/': 0.3 })],
    ['custom sparsity', custom('deeper-more', (i) => i.blocks.map((_, l) => 0.3 + (0.4 * l) / Math.max(1, i.blocks.length - 1)))],
    ['custom importance', custom('size', (i) => i.blocks.map((b) => Math.log(b.params)), { output: 'importance', properties: { permutationEquivariant: true, affineInvariantImportance: true } })],
  ])('%s passes in both budget modes', (_, a, inputs) => {
    const r = checkAllocator(a, { numRuns: 40, budget: 'both', inputs });
    expect(r.accepted).toBeGreaterThan(0);
    expect(r.checked).toContain('budget');
  });

  it('reference budget: a block on the step at 0 (raw ≤ 0 → 0.01) may flip under rounding without failing the properties', () => {
    // CI found this input (OWL M=3 λ=0.2, S = 5e-324, reference budget): ×0.01 on the scores moved one block at the mean
    // from raw +1e-17 to −1e-17, i.e. from 5e-324 to the reference rule's 0.01.
    const r = checkAllocator(owl({ M: 3, lambda: 0.2 }), { numRuns: 40, budget: 'both', seed: -1909562342 });
    expect(r.accepted).toBeGreaterThan(0);
    // The tolerance is only for that step: a real move of a block still fails in reference mode.
    const shaky = { ...owl(), name: 'shaky', fromScores: (I: number[], inp: Parameters<ReturnType<typeof owl>['allocate']>[0]) => {
      const a = owl().fromScores!(I, inp);
      return { ...a, blockSparsity: a.blockSparsity.map((x, i) => (i === 0 && Math.max(...I) < 1 ? Math.min(0.95, x + 0.01) : x)) };
    } };
    expect(() => checkAllocator(shaky as never, { numRuns: 60, budget: 'reference' })).toThrow(/affineInvariantImportance|determinism/);
  });

  it('explicit list (fixed depth)', () => {
    checkAllocator(explicit([0.2, 0.5, 0.6, 0.9]), { numRuns: 40, budget: 'both', inputs: { minBlocks: 4, maxBlocks: 4 } });
  });

  it('random DSA expressions from the op tables', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...PRE_OPS.map((o) => o.name)), { maxLength: 2 }),
        fc.constantFrom(...REDUCE_OPS.map((o) => o.name)),
        fc.constantFrom(...SCALAR_OPS.map((o) => o.name)),
        (pre, reduce, transform) => {
          const a = dsa({ pre, reduce, transform });
          // Some functions are undefined on most inputs: they must refuse cleanly, never misallocate.
          checkAllocator(a, { numRuns: 8, minAccepted: 0, inputs: { maxBlocks: 12 } });
        },
      ),
      { numRuns: 15 },
    );
  });
});

describe('checkAllocator catches broken allocators', () => {
  it('an unweighted budget (the reference habit) breaks the exact budget', () => {
    const unweighted: Allocator = {
      name: 'unweighted',
      describe: () => 'shifts by depth, mean over blocks = S, ignores parameter counts',
      allocate: ({ blocks, sparsity }) => {
        const L = blocks.length;
        return { blockSparsity: blocks.map((_, l) => sparsity + (L > 1 ? 0.02 * (l - (L - 1) / 2) / L : 0)) };
      },
    };
    const e = failure(() => checkAllocator(unweighted, { numRuns: 100, inputs: { widths: 'varied', minSparsity: 0.1, maxSparsity: 0.9 } }));
    expect(e.property).toBe('budget');
    expect(e.message).toMatch(/parameter-weighted mean is/);
    expect(e.message).toMatch(/seed/);
  });

  it('a sparsity out of bounds', () => {
    const tooMuch: Allocator = { name: 'too-much', describe: () => '1.2 everywhere', allocate: (i) => ({ blockSparsity: i.blocks.map(() => 1.2) }) };
    const e = failure(() => checkAllocator(tooMuch, { numRuns: 20, budget: 'reference' }));
    expect(e.property).toBe('bounds');
  });

  it('non-determinism', () => {
    const noisy: Allocator = {
      name: 'noisy', describe: () => 'random',
      allocate: ({ blocks, sparsity }) => ({ blockSparsity: blocks.map(() => sparsity + (Math.random() - 0.5) * 1e-3) }),
    };
    expect(failure(() => checkAllocator(noisy, { numRuns: 20, budget: 'reference' })).property).toBe('determinism');
  });

  it('an allocator that mutates its input', () => {
    const mutating: Allocator = {
      name: 'mutating', describe: () => 'sorts z in place',
      allocate: ({ blocks, sparsity }) => {
        for (const b of blocks) b.z.sort();
        return { blockSparsity: blocks.map(() => sparsity) };
      },
    };
    expect(failure(() => checkAllocator(mutating, { numRuns: 30, inputs: { minBlocks: 2 } })).property).toBe('determinism');
  });

  it('a false permutation-equivariance claim (ATP depends on position)', () => {
    const e = failure(() => checkAllocator({ ...atp({ beta: 0.05 }), properties: { permutationEquivariant: true } }, { numRuns: 50 }));
    expect(e.property).toBe('permutationEquivariant');
  });

  it('a false affine-invariance claim (raw importance, no minmax)', () => {
    const raw: Allocator = {
      name: 'raw-importance', describe: () => 's = S + 0.01·(I − mean I)',
      properties: { affineInvariantImportance: true },
      scores: (i) => i.blocks.map((b) => b.z.reduce((a, x) => a + x, 0) / Math.max(1, b.z.length)),
      fromScores: (I, i) => {
        const m = I.reduce((a, b) => a + b, 0) / I.length;
        return { blockSparsity: I.map((v) => Math.min(0.99, Math.max(0, i.sparsity + 0.01 * Math.tanh(v - m)))) };
      },
      allocate(i) {
        return this.fromScores!(this.scores!(i), i);
      },
    };
    const e = failure(() => checkAllocator(raw, { numRuns: 60, budget: 'reference', inputs: { minBlocks: 2 } }));
    expect(e.property).toBe('affineInvariantImportance');
  });

  it('a crash that is not a DsaPruneError', () => {
    const crashing = custom('crash', (i) => {
      if (i.blocks.length === 1) throw new TypeError('cannot read properties of undefined');
      return i.blocks.map(() => i.sparsity);
    });
    const e = failure(() => checkAllocator(crashing, { numRuns: 100, inputs: { maxBlocks: 3 } }));
    expect(e.property).toBe('errors');
    expect(e.message).toMatch(/TypeError/);
  });

  it('an allocator that refuses everything', () => {
    const refusing = custom('refusing', () => {
      throw new DsaPruneError('never defined');
    });
    const e = failure(() => checkAllocator(refusing, { numRuns: 10 }));
    expect(e.message).toMatch(/accepted 0 of 10/);
  });
});
