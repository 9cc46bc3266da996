/**
 * The levels search's compute-efficiency options (src/search/levels.ts): snapToGrid (a start allocation on the grid,
 * exact budget: property), the EvoPress switch distribution, window sampling, the fitness on listed windows against a
 * fitness built on those windows alone, and on stories260k: `sampling: 'resample'` + a start allocator — exact budget,
 * repeatable, a resumed run equals a straight one, the worker-thread pool equals the serial run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { drawSwitches, levelGrid, levelSearch, parseLevelStages, readLevelCheckpoint, sampleWindows, snapToGrid, unitCounts, type LevelSearchOptions } from '../../src/search/levels.js';
import { Rng } from '../../src/search/random.js';
import { DsaPruneError } from '../../src/errors.js';
import { explicit, owl } from '../../src/allocators/index.js';
import { loadModelDir, type PrunableModel } from '../../src/model/index.js';
import { tokenizeText } from '../../src/data/text.js';
import { computeDense, createFitness, idsSha256, searchLinears, type DenseData } from '../../src/search/fitness.js';
import type { SearchSpec } from '../../src/search/types.js';

describe('snapToGrid', () => {
  it('gives a genome inside the bounds with exactly round(S · W) pruned weights, near the wanted counts (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 16, max: 5000 }), { minLength: 2, maxLength: 40 }),
        fc.double({ min: 0.3, max: 0.8, noNaN: true }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 40, maxLength: 40 }),
        fc.double({ min: 0.02, max: 0.1, noNaN: true }),
        (sizes, S, raw, step) => {
          const units = sizes.map((p, u) => ({ name: `u${u}`, linears: [{ name: `l${u}`, params: p }] }));
          const grid = levelGrid(units, S, { step, spread: 0.2 });
          const wanted = sizes.map((p, i) => raw[i] * p);
          const g = snapToGrid(grid, wanted);
          const counts = unitCounts(grid, g);
          const W = sizes.reduce((a, b) => a + b, 0);
          expect(counts.reduce((a, b) => a + b, 0)).toBe(Math.round(S * W));
          grid.units.forEach((u, i) => {
            expect(g[i]).toBeGreaterThanOrEqual(Math.min(0, u.lo));
            expect(g[i]).toBeLessThanOrEqual(Math.max(0, u.hi));
          });
        },
      ),
      { numRuns: 300 },
    );
  });
  it('keeps a wanted allocation that is already on the grid and exact, and snaps uniform to all zeros', () => {
    const units = [100, 200, 300, 400].map((p, u) => ({ name: `u${u}`, linears: [{ name: `l${u}`, params: p }] }));
    const grid = levelGrid(units, 0.5, { step: 0.1, spread: 0.3 });
    // q = 10 weights; levels (+2, −1, −1, 0) keep Σ = 0.
    const want = [2, -1, -1, 0];
    expect(Array.from(snapToGrid(grid, unitCounts(grid, want)))).toEqual(want);
    expect(Array.from(snapToGrid(grid, units.map((u) => 0.5 * u.linears[0].params)))).toEqual([0, 0, 0, 0]);
  });
});

describe('drawSwitches and sampleWindows', () => {
  it('uniform draws 1..max; evopress is the smaller of two draws (P(1) = 5/9 at max 3)', () => {
    const rng = new Rng(11);
    const n = 90000;
    const hist = { uniform: [0, 0, 0, 0], evopress: [0, 0, 0, 0] };
    for (let i = 0; i < n; i++) {
      hist.uniform[drawSwitches(rng, 3, 'uniform')]++;
      hist.evopress[drawSwitches(rng, 3, 'evopress')]++;
    }
    expect(hist.uniform[0]).toBe(0);
    expect(hist.evopress[0]).toBe(0);
    for (let k = 1; k <= 3; k++) expect(Math.abs(hist.uniform[k] / n - 1 / 3)).toBeLessThan(0.01);
    [5 / 9, 3 / 9, 1 / 9].forEach((p, i) => expect(Math.abs(hist.evopress[i + 1] / n - p)).toBeLessThan(0.01));
  });
  it('samples distinct ascending windows, all of them when n ≥ W, and every window eventually', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 80 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (W, n, seed) => {
        const s = sampleWindows(new Rng(seed), W, n);
        expect(s.length).toBe(Math.min(W, n));
        for (let i = 1; i < s.length; i++) expect(s[i]).toBeGreaterThan(s[i - 1]);
        for (const w of s) expect(w >= 0 && w < W).toBe(true);
      }),
    );
    const rng = new Rng(3);
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) for (const w of sampleWindows(rng, 16, 2)) seen.add(w);
    expect(seen.size).toBe(16);
  });
  it('parses --level-stages and refuses bad ones', () => {
    expect(parseLevelStages('1:8, 4:2,16:3')).toEqual([{ windows: 1, keep: 8 }, { windows: 4, keep: 2 }, { windows: 16, keep: 1 }]);
    expect(() => parseLevelStages('1:8,x')).toThrow(DsaPruneError);
    expect(() => parseLevelStages('')).toThrow(/empty/);
  });
});

const repo = path.resolve(import.meta.dirname, '../..');
const modelDir = path.join(repo, 'models/stories260k');
const NS = 8;
const SEQ = 128;
let pm: PrunableModel;
let ids: Int32Array;
let dense: DenseData;
let dir: string;

beforeAll(async () => {
  const loaded = await loadModelDir(modelDir, { threads: 1 });
  pm = loaded.prunable;
  ids = tokenizeText(loaded.tokenizer, readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 40000));
  dense = await computeDense(pm, { method: 'wanda', calibration: { nsamples: NS, seqlen: SEQ } } as never, ids.slice(0, NS * SEQ), 1);
  dir = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-levels-opt-'));
}, 120_000);
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('fitness on listed windows', () => {
  it('KL and ppl on windows [3, 0] equal a fitness whose search split is those two windows', async () => {
    const search = ids.slice(NS * SEQ, NS * SEQ + 6 * SEQ);
    const picked = new Int32Array(2 * SEQ);
    picked.set(search.subarray(3 * SEQ, 4 * SEQ), 0);
    picked.set(search.subarray(0, SEQ), SEQ);
    const linears = searchLinears(pm);
    const alloc = { blockSparsity: [], linearSparsity: Object.fromEntries(linears.map((l, i) => [l.name, 0.4 + 0.05 * (i % 5)])) };
    for (const fitness of ['kl', 'ppl'] as const) {
      const mk = (s: Int32Array, windows: number) => createFitness(pm, {
        method: 'wanda', sparsity: 0.6, budget: 'exact', mode: 'fast', pattern: { kind: 'unstructured' }, calibration: { nsamples: NS, seqlen: SEQ, sha256: '' },
        search: { windows, seqlen: SEQ, sha256: idsSha256(s) }, seed: 0, modelHash: pm.modelHash(), granularity: 'linear', fitness, klTopK: 32,
      } as SearchSpec, { calibrationIds: ids.slice(0, NS * SEQ), searchIds: s }, { dense, threads: 1, batchSize: 1 });
      const all = await mk(search, 6);
      const two = await mk(picked, 2);
      const a = (await all.evaluateLinears!(alloc, { windowIndices: [3, 0] })).fitness;
      const b = (await two.evaluateLinears!(alloc)).fitness;
      expect(Math.abs(a - b) / b).toBeLessThan(1e-12);
      // and not the first two windows (the listed ones are really used)
      const first = (await all.evaluateLinears!(alloc, { windows: 2 })).fitness;
      expect(first).not.toBe(a);
      await all.close();
      await two.close();
    }
  }, 120_000);
});

describe('re-masking only the linears that changed', () => {
  it('a fitness that evaluated other allocations before gives the fresh fitness value, bit for bit (kl and ppl)', async () => {
    const search = ids.slice(NS * SEQ, NS * SEQ + 2 * SEQ);
    const linears = searchLinears(pm);
    const at = (f: (i: number) => number) => ({ blockSparsity: [], linearSparsity: Object.fromEntries(linears.map((l, i) => [l.name, f(i)])) });
    const a = at((i) => 0.4 + 0.05 * (i % 5));
    const b = at((i) => (i === 3 ? 0.7 : i === 5 ? 0.3 : 0.4 + 0.05 * (i % 5)));
    for (const fitness of ['kl', 'ppl'] as const) {
      const mk = () => createFitness(pm, {
        method: 'wanda', sparsity: 0.6, budget: 'exact', mode: 'fast', pattern: { kind: 'unstructured' }, calibration: { nsamples: NS, seqlen: SEQ, sha256: '' },
        search: { windows: 2, seqlen: SEQ, sha256: idsSha256(search) }, seed: 0, modelHash: pm.modelHash(), granularity: 'linear', fitness, klTopK: 32,
      } as SearchSpec, { calibrationIds: ids.slice(0, NS * SEQ), searchIds: search }, { dense, threads: 1 });
      const used = await mk();
      const fa = (await used.evaluateLinears!(a)).fitness;
      const fb = (await used.evaluateLinears!(b)).fitness;
      const fa2 = (await used.evaluateLinears!(a)).fitness;
      const fresh = await mk();
      expect(fb).toBe((await fresh.evaluateLinears!(b)).fitness);
      expect(fa2).toBe(fa);
      expect(fb).not.toBe(fa);
      await used.close();
      await fresh.close();
    }
  }, 120_000);
});

describe('levelSearch with resample + start', () => {
  const base = (): Omit<LevelSearchOptions, 'evaluations'> => ({
    method: 'wanda', sparsity: 0.6, granularity: 'linear', fitness: 'kl', klTopK: 64, calibrationIds: ids.slice(0, NS * SEQ), nsamples: NS, seqlen: SEQ,
    searchIds: ids.slice(NS * SEQ), searchWindows: 8, searchSeqlen: SEQ, offspring: 4, stages: [{ windows: 1, keep: 2 }, { windows: 2, keep: 1 }],
    seed: 7, threads: 1, step: 0.1, spread: 0.2, modelDir, dense, sampling: 'resample', switchDistribution: 'evopress', start: owl({ M: 3, lambda: 0.08 }),
  });
  it('exact budget, starts at the snapped start, repeatable, resume = straight, 2 worker threads = serial', async () => {
    // per generation: 4 × 1/8 + 3 × 2/8 (the 2 kept offspring + the parent) = 1.25; start: 2/8.
    const straight = await levelSearch(pm, { ...base(), evaluations: 5.25 });
    expect(straight.generations).toBe(4);
    expect(straight.search).toEqual({ sampling: 'resample', switchDistribution: 'evopress', maxSwitches: 3, start: expect.stringMatching(/owl/i) });
    const linears = searchLinears(pm);
    const W = linears.reduce((a, l) => a + l.dIn * l.dOut, 0);
    const total = linears.reduce((a, l) => a + Math.round(straight.best.linearSparsity[l.name] * l.dIn * l.dOut), 0);
    expect(total).toBe(Math.round(0.6 * W));
    // The start: OWL's allocation snapped, not uniform.
    const zero = await levelSearch(pm, { ...base(), evaluations: 0.25 });
    expect(zero.generations).toBe(0);
    expect(zero.best.genome.some((x) => x !== 0)).toBe(true);
    const again = await levelSearch(pm, { ...base(), evaluations: 5.25 });
    expect(again.history).toEqual(straight.history);
    expect(again.best.genome).toEqual(straight.best.genome);
    const ck = path.join(dir, 'resample.ckpt.json');
    await levelSearch(pm, { ...base(), evaluations: 2.75, checkpointPath: ck });
    const resumed = await levelSearch(pm, { ...base(), evaluations: 5.25, resume: await readLevelCheckpoint(ck) });
    expect(resumed.history).toEqual(straight.history);
    expect(resumed.best.genome).toEqual(straight.best.genome);
    expect(resumed.best.fitness).toBe(straight.best.fitness);
    // A checkpoint of a fixed-sampling run does not resume a resample run.
    const ck2 = path.join(dir, 'fixed.ckpt.json');
    await levelSearch(pm, { ...base(), sampling: 'fixed', stages: [{ windows: 4, keep: 2 }, { windows: 8, keep: 1 }], evaluations: 5, checkpointPath: ck2 });
    await expect(levelSearch(pm, { ...base(), stages: [{ windows: 4, keep: 2 }, { windows: 8, keep: 1 }], evaluations: 4, resume: await readLevelCheckpoint(ck2) })).rejects.toThrow(/other settings.*sampling/);
    const pooled = await levelSearch(pm, { ...base(), evaluations: 5.25, workers: 2 });
    expect(pooled.history).toEqual(straight.history);
    expect(pooled.best.genome).toEqual(straight.best.genome);
  }, 600_000);
  it('refuses stages outside the search windows, with the option to change', async () => {
    await expect(levelSearch(pm, { ...base(), stages: [{ windows: 9, keep: 1 }], evaluations: 2 })).rejects.toThrow(/stage 1 scores 9 windows.*\[1, 8\]/);
  });
  it('a start allocation that is already uniform gives the uniform run', async () => {
    const a = await levelSearch(pm, { ...base(), start: undefined, evaluations: 2.25 });
    const b = await levelSearch(pm, { ...base(), start: explicit(Object.fromEntries(searchLinears(pm).map((l) => [l.name, 0.6]))), evaluations: 2.25 });
    expect(b.best.genome).toEqual(a.best.genome);
    expect(b.history).toEqual(a.history);
  }, 300_000);
});
