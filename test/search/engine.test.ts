import { describe, expect, it } from 'vitest';
import { mkdtempSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runSearch, functionEvaluator, type SearchResult } from '../../src/search/evolution.js';
import { dsaSpace, invalidReason, spaceSize } from '../../src/search/space.js';
import { Rng } from '../../src/search/random.js';
import { readCheckpoint } from '../../src/search/checkpoint.js';
import { candidateKey, type Candidate } from '../../src/search/types.js';
import { importance } from '../../src/allocators/dsa/index.js';

/** Synthetic blocks: lognormal-ish z with a different spread per block, so most functions separate the blocks. */
function syntheticBlocks(n = 6, size = 2000) {
  const rng = new Rng(123);
  return Array.from({ length: n }, (_, b) => {
    const z = new Float32Array(size);
    for (let i = 0; i < size; i++) z[i] = Math.exp(0.3 * (b + 1) * rng.normal()) * (1 + 0.1 * b);
    return { z, params: size };
  });
}

/** Independent allocation: s = S + 2λ (r − mean r), r = minmax(I) (no clamping needed at these values). */
const S = 0.5;
function allocate(scores: number[], lambda: number): number[] {
  const lo = Math.min(...scores);
  const hi = Math.max(...scores);
  const r = scores.map((s) => (s - lo) / (hi - lo));
  const m = r.reduce((a, b) => a + b, 0) / r.length;
  return r.map((x) => S + 2 * lambda * (x - m));
}

const blocks = syntheticBlocks();
const space = () => dsaSpace({ blocks, allocate });

/** Known optimum: fitness 1 exactly at TARGET; +1 per wrong stage, + 10·|λ − λ*|. */
const TARGET: Candidate = { expression: { pre: ['ABS', 'POW'], reduce: 'STD', transform: 'ATAN' }, lambda: 0.1 };
function distance(c: Candidate): number {
  const e = c.expression;
  const t = TARGET.expression;
  let d = 0;
  for (let i = 0; i < 2; i++) if (e.pre[i] !== t.pre[i]) d++;
  if (e.reduce !== t.reduce) d++;
  if (e.transform !== t.transform) d++;
  if ((e.post ?? '') !== (t.post ?? '')) d++;
  return 1 + d + 10 * Math.abs(c.lambda - TARGET.lambda);
}
const evaluator = () => functionEvaluator((c) => ({ fitness: distance(c), blockSparsity: [], seconds: 0 }));

describe('search space', () => {
  it('samples valid, varied candidates from the op tables and rejects invalid ones for free', () => {
    const sp = space();
    const rng = new Rng(5);
    let ok = 0;
    const keys = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const c = sp.sample(rng);
      expect(c.lambda).toBeGreaterThanOrEqual(0.02);
      expect(c.lambda).toBeLessThanOrEqual(0.25);
      expect(c.expression.pre.length).toBeLessThanOrEqual(2);
      const chk = sp.check(c);
      // validity agrees with an independent evaluation of the importance on each block
      const s = blocks.map((b) => importance(c.expression, b.z));
      expect(chk.ok).toBe(invalidReason(s) === undefined);
      if (chk.ok) {
        ok++;
        keys.add(chk.allocationKey);
      }
    }
    expect(ok).toBeGreaterThan(50);
    expect(keys.size).toBeGreaterThan(40);
    expect(spaceSize(sp.ops)).toBeGreaterThan(10000);
  });

  it('rejects NaN and constant importances', () => {
    expect(invalidReason([1, NaN, 2])).toMatch(/not finite/);
    expect(invalidReason([3, 3, 3])).toMatch(/same/);
    expect(invalidReason([1, 2])).toBeUndefined();
    const sp = space();
    // asin of a value > 1 on every block → NaN
    expect(sp.check({ expression: { pre: [], reduce: 'GRAM', transform: 'ASIN' }, lambda: 0.1 }).ok).toBe(false);
  });

  it('deduplicates by allocation: affine-equivalent functions share a key', () => {
    const sp = space();
    const a = sp.check({ expression: { pre: [], reduce: 'STD', transform: 'NO_OP' }, lambda: 0.1 });
    // var = std², a monotone but not affine map → different allocation
    const b = sp.check({ expression: { pre: [], reduce: 'VAR', transform: 'NO_OP' }, lambda: 0.1 });
    // mean(z) and gram... ; a positive-affine change: abs of a positive std changes nothing
    const c = sp.check({ expression: { pre: [], reduce: 'STD', transform: 'ABS' }, lambda: 0.1 });
    expect(a.ok && b.ok && c.ok).toBe(true);
    if (a.ok && b.ok && c.ok) {
      expect(c.allocationKey).toBe(a.allocationKey);
      expect(b.allocationKey).not.toBe(a.allocationKey);
    }
  });

  it('crossover takes every stage from a parent; mutation changes exactly one stage', () => {
    const sp = space();
    const rng = new Rng(9);
    for (let i = 0; i < 200; i++) {
      const p = sp.sample(rng);
      const q = sp.sample(rng);
      const x = sp.crossover(p, q, rng);
      expect([p.expression.reduce, q.expression.reduce]).toContain(x.expression.reduce);
      expect([p.expression.transform, q.expression.transform]).toContain(x.expression.transform);
      expect([p.lambda, q.lambda]).toContain(x.lambda);
      expect([p.expression.pre.join(), q.expression.pre.join()]).toContain(x.expression.pre.join());
      const m = sp.mutate(p, rng);
      let changed = 0;
      if (m.expression.pre.join() !== p.expression.pre.join()) changed++;
      if (m.expression.reduce !== p.expression.reduce) changed++;
      if (m.expression.transform !== p.expression.transform) changed++;
      if ((m.expression.post ?? '') !== (p.expression.post ?? '')) changed++;
      if (m.lambda !== p.lambda) changed++;
      expect(changed).toBeLessThanOrEqual(1);
    }
  });

  it('candidateKey is canonical: equivalent spellings share a key, λ to 1e-6', () => {
    const a = candidateKey({ expression: { pre: ['ABS', 'ABS'], reduce: 'MEAN', transform: 'NO_OP' }, lambda: 0.1 });
    const b = candidateKey({ expression: { pre: [], reduce: 'L1_NORM', transform: 'NO_OP' }, lambda: 0.1000000001 });
    expect(a).toBe(b);
    expect(candidateKey({ expression: { pre: [], reduce: 'L1_NORM', transform: 'NO_OP' }, lambda: 0.11 })).not.toBe(a);
  });
});

describe('evolution engine', () => {
  it('is repeatable: same seed → same history', async () => {
    const a = await runSearch(space(), evaluator(), { evaluations: 60, seed: 3 });
    const b = await runSearch(space(), evaluator(), { evaluations: 60, seed: 3, batchSize: 5 });
    expect(b.history.map((h) => [h.expression, h.lambda])).toEqual(a.history.map((h) => [h.expression, h.lambda]));
    const c = await runSearch(space(), evaluator(), { evaluations: 60, seed: 4 });
    expect(c.history.map((h) => h.expression)).not.toEqual(a.history.map((h) => h.expression));
  });

  it('never evaluates the same allocation twice and respects the budget', async () => {
    const sp = space();
    const r = await runSearch(sp, evaluator(), { evaluations: 120, seed: 1 });
    expect(r.evaluations).toBe(120);
    expect(r.history.length).toBe(120);
    const keys = r.history.map((h) => {
      const chk = sp.check(h.candidate);
      return chk.ok ? chk.allocationKey : 'invalid';
    });
    expect(keys).not.toContain('invalid');
    expect(new Set(keys).size).toBe(keys.length);
    // best = minimum of the history
    const min = Math.min(...r.history.map((h) => h.fitness ?? Infinity));
    expect(r.best.fitness).toBe(min);
  });

  it('beats random search at equal budget on a fitness with a known optimum (5 seeds)', async () => {
    const budget = 200;
    const evo: number[] = [];
    const rnd: number[] = [];
    for (const seed of [1, 2, 3, 4, 5]) {
      evo.push((await runSearch(space(), evaluator(), { evaluations: budget, seed })).best.fitness);
      rnd.push((await runSearch(space(), evaluator(), { evaluations: budget, seed, strategy: 'random' })).best.fitness);
    }
    const mean = (x: number[]) => x.reduce((a, b) => a + b, 0) / x.length;
    expect(mean(evo)).toBeLessThan(mean(rnd));
    // the evolution gets at least as close as random on most seeds, and reaches the exact structure at least once
    expect(evo.filter((f, i) => f <= rnd[i]!).length).toBeGreaterThanOrEqual(4);
    expect(Math.min(...evo)).toBeLessThan(1.2);
  });

  it('stops at the wall-clock cap', async () => {
    const slow = functionEvaluator(async (c) => {
      await new Promise((r) => setTimeout(r, 20));
      return { fitness: distance(c), blockSparsity: [], seconds: 0.02 };
    });
    const r = await runSearch(space(), slow, { evaluations: 10000, seed: 1, timeLimitSeconds: 0.5, batchSize: 4 });
    expect(r.stoppedBy).toBe('time');
    expect(r.evaluations).toBeLessThan(200);
  });

  it('resumes from a checkpoint with the same result as an uninterrupted run', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dsa-search-'));
    const ck = path.join(dir, 'ck.json');
    const straight = await runSearch(space(), evaluator(), { evaluations: 100, seed: 7, population: 10 });
    // stop after 4 generations, then resume (twice, from the file), as a killed run would
    const part = await runSearch(space(), evaluator(), { evaluations: 100, seed: 7, population: 10, checkpointPath: ck, maxGenerations: 4 });
    expect(part.stoppedBy).toBe('generations');
    expect(part.evaluations).toBe(10 + 3 * 8);
    const mid = await runSearch(space(), evaluator(), {
      evaluations: 100, seed: 7, population: 10, checkpointPath: ck, maxGenerations: 7, resume: await readCheckpoint(ck),
    });
    expect(mid.evaluations).toBeGreaterThan(part.evaluations);
    const resumed = await runSearch(space(), evaluator(), { evaluations: 100, seed: 7, population: 10, checkpointPath: ck, resume: await readCheckpoint(ck) });
    const strip = (r: SearchResult) => r.history.map((h) => ({ e: h.expression, l: h.lambda, f: h.fitness, g: h.generation }));
    expect(strip(resumed)).toEqual(strip(straight));
    expect(resumed.best).toEqual(straight.best);
    // atomic write leaves no temp files behind
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(existsSync(ck)).toBe(true);
  });

  it('refuses a checkpoint from other settings', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dsa-search-'));
    const ck = path.join(dir, 'ck.json');
    await runSearch(space(), evaluator(), { evaluations: 20, seed: 7, checkpointPath: ck, signature: { sparsity: 0.5 } });
    await expect(runSearch(space(), evaluator(), { evaluations: 40, seed: 7, resume: await readCheckpoint(ck), signature: { sparsity: 0.6 } })).rejects.toThrow(/other settings/);
    await expect(runSearch(space(), evaluator(), { evaluations: 40, seed: 8, resume: await readCheckpoint(ck), signature: { sparsity: 0.5 } })).rejects.toThrow(/seed/);
  });
});
