/** The level-switch search (src/search/levels.ts): exact budget under mutation (property), refusal on another model, a tiny run on stories260k. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { genomeAllocation, levelGrid, levelSearch, levelSwitch, levelsAllocator, readLevelCheckpoint, unitCounts } from '../../src/search/levels.js';
import { Rng } from '../../src/search/random.js';
import { DsaPruneError } from '../../src/errors.js';

describe('level-switch mutation', () => {
  it('keeps the exact parameter count, per unit and per linear, and the bounds (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: 16, max: 4096 }), { minLength: 1, maxLength: 4 }), { minLength: 2, maxLength: 24 }),
        fc.double({ min: 0.3, max: 0.8, noNaN: true }),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.integer({ min: 1, max: 40 }),
        (sizes, S, seed, rounds) => {
          const units = sizes.map((ls, u) => ({ name: `u${u}`, linears: ls.map((p, j) => ({ name: `u${u}.l${j}`, params: p })) }));
          const grid = levelGrid(units, S, { step: 0.05, spread: 0.2 });
          const W = sizes.flat().reduce((a, b) => a + b, 0);
          const want = Math.round(S * W);
          const rng = new Rng(seed);
          let g: Int32Array = new Int32Array(units.length);
          for (let r = 0; r < rounds; r++) {
            g = levelSwitch(grid, g, rng, 1 + (r % 3));
            const counts = unitCounts(grid, g);
            expect(counts.reduce((a, b) => a + b, 0)).toBe(want);
            grid.units.forEach((u, i) => {
              expect(g[i]).toBeGreaterThanOrEqual(Math.min(0, u.lo));
              expect(g[i]).toBeLessThanOrEqual(Math.max(0, u.hi));
              expect(counts[i]).toBeGreaterThanOrEqual(0);
              expect(counts[i]).toBeLessThanOrEqual(u.params);
            });
            // Per linear: the sparsities realise exactly the same total under the methods' rounding round(s · n).
            const alloc = genomeAllocation(grid, g);
            let total = 0;
            for (const u of units) for (const l of u.linears) total += Math.round(alloc[l.name] * l.params);
            expect(total).toBe(want);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('levelsAllocator', () => {
  const result = { modelHash: 'aaaa1111bbbb2222cccc', granularity: 'linear' as const, best: { fitness: 1, genome: [], blockSparsity: [0.5], linearSparsity: { 'model.layers.0.mlp.up_proj': 0.4, 'model.layers.0.mlp.down_proj': 0.6 } } };
  it('applies on the model it was found on', () => {
    const a = levelsAllocator(result, 'aaaa1111bbbb2222cccc');
    const out = a.allocate({ sparsity: 0.5, budget: 'exact', blocks: [{ index: 0, params: 2, z: new Float32Array(0), linears: [{ name: 'model.layers.0.mlp.up_proj', role: 'up', params: 1 }, { name: 'model.layers.0.mlp.down_proj', role: 'down', params: 1 }] }] });
    expect(out.linearSparsity).toEqual(result.best.linearSparsity);
    expect(out.blockSparsity[0]).toBeCloseTo(0.5, 12);
  });
  it('refuses another model, with the reason', () => {
    let err: unknown;
    try {
      levelsAllocator(result, 'ffff0000ffff0000ffff', 'search.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DsaPruneError);
    expect((err as DsaPruneError).message).toMatch(/search\.json was found on another model .*applies only to the model it was searched on/);
    expect((err as DsaPruneError).hint).toMatch(/DSA search result/);
  });
});

const repo = path.resolve(import.meta.dirname, '../..');
const modelDir = path.join(repo, 'models/stories260k');

describe('levelSearch on stories260k', () => {
  it('never ends worse than its uniform start, keeps the budget exact, and a resumed run equals a straight one', async () => {
    const { loadModelDir } = await import('../../src/model/index.js');
    const { tokenizeText } = await import('../../src/data/text.js');
    const { computeDense } = await import('../../src/search/fitness.js');
    const loaded = await loadModelDir(modelDir, { threads: 1 });
    const pm = loaded.prunable;
    const ids = tokenizeText(loaded.tokenizer, readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 30000));
    const NS = 8;
    const SEQ = 128;
    const base = {
      method: 'wanda' as const, sparsity: 0.6, granularity: 'linear' as const, fitness: 'kl' as const, klTopK: 64, calibrationIds: ids.slice(0, NS * SEQ), nsamples: NS, seqlen: SEQ,
      searchIds: ids.slice(NS * SEQ), searchWindows: 4, searchSeqlen: SEQ, offspring: 4, stages: [{ windows: 2, keep: 2 }, { windows: 4, keep: 1 }], seed: 3, threads: 1,
    };
    const dense = await computeDense(pm, { method: 'wanda', calibration: { nsamples: NS, seqlen: SEQ } } as never, base.calibrationIds, 1);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-levels-'));
    try {
      const straight = await levelSearch(pm, { ...base, dense, evaluations: 13 });
      expect(straight.generations).toBe(3); // 1 (parent) + 3 × (4·½ + 2·1) = 13
      expect(straight.best.fitness).toBeLessThanOrEqual(straight.history[0].fitness);
      const W = pm.linears.filter((l) => l.block >= 0 && l.role !== 'lm_head').reduce((a, l) => a + l.dIn * l.dOut, 0);
      const total = pm.linears.filter((l) => l.block >= 0 && l.role !== 'lm_head').reduce((a, l) => a + Math.round(straight.best.linearSparsity[l.name] * l.dIn * l.dOut), 0);
      expect(total).toBe(Math.round(0.6 * W));
      const ck = path.join(dir, 'levels.ckpt.json');
      await levelSearch(pm, { ...base, dense, evaluations: 5, checkpointPath: ck });
      const resumed = await levelSearch(pm, { ...base, dense, evaluations: 13, resume: await readLevelCheckpoint(ck) });
      expect(resumed.best.genome).toEqual(straight.best.genome);
      expect(resumed.best.fitness).toBe(straight.best.fitness);
      expect(resumed.history).toEqual(straight.history);
      await expect(levelSearch(pm, { ...base, dense, evaluations: 13, step: 0.1, resume: await readLevelCheckpoint(ck) })).rejects.toThrow(/other settings/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000);
});
