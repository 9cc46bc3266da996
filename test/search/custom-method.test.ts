/**
 * The search goes through the methods: a method registered through the public API (test/fixtures/plugins) is
 * searchable through the API, the worker-thread pool and `dsa-prune search --plugin`; the built-ins' fast paths give
 * bit for bit the fitness of their own prune() per candidate; an unknown method is refused with a code.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModelDir, type PrunableModel } from '../../src/model/index.js';
import { computeDense, createFitness, idsSha256, searchLinears, type DenseData } from '../../src/search/fitness.js';
import { searchSpace } from '../../src/search/space.js';
import { createPool } from '../../src/search/pool.js';
import { searchModel } from '../../src/search/run.js';
import { Rng } from '../../src/search/random.js';
import { tokenizeText } from '../../src/data/text.js';
import { pruneModel } from '../../src/prune.js';
import { dsa } from '../../src/allocators/dsa-allocator.js';
import { parseDsa } from '../../src/allocators/dsa/expression.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { getMethod, registerMethod, type PruningMethod } from '../../src/index.js';
import { importPlugins } from '../../src/methods/plugins.js';
import { run } from '../../src/cli/commands/search.js';
import { run as prune } from '../../src/cli/commands/prune.js';
import { memoryIo } from '../../src/cli/io.js';
import type { Candidate, SearchSpec } from '../../src/search/types.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const modelDir = path.join(repo, 'models/stories260k');
const plugin = path.join(repo, 'test/fixtures/plugins/abs-times-index.ts');
const NS = 8;
const SEQ = 128;
const WIN = 4;
const CUSTOM = 'abs-times-index';

let pm: PrunableModel;
let tokenizer: Parameters<typeof tokenizeText>[0];
let cal: Int32Array;
let search: Int32Array;
let base: SearchSpec;
const candidates: Candidate[] = [];

/** Prune with `method` through the pipeline (one-shot, the candidate's allocation), score, restore: the independent path. */
async function prunedPerplexity(method: string, c: Candidate, ids: Int32Array, calIds: Int32Array, ns: number, seq: number, sseq: number): Promise<{ ppl: number; blockSparsity: number[] }> {
  const originals = searchLinears(pm).map((l) => [l, pm.readWeight(l)] as const);
  try {
    const report = await pruneModel(pm.model, {
      method, sparsity: 0.6, budget: 'exact', allocator: dsa(c.expression, { lambda: c.lambda }),
      calibration: { ids: calIds }, nsamples: ns, seqlen: seq, mode: 'oneshot', source: modelDir,
    });
    return { ppl: (await perplexity(pm.model, ids, { seqlen: sseq })).ppl, blockSparsity: report.targetBlockSparsity };
  } finally {
    for (const [l, w] of originals) pm.writeWeight(l, w);
    await pm.commit();
  }
}

beforeAll(async () => {
  await import(plugin); // registers abs-times-index in this thread, as --plugin does
  const loaded = await loadModelDir(modelDir, { threads: 1 });
  pm = loaded.prunable;
  tokenizer = loaded.tokenizer as never;
  const text = readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 30000);
  const ids = tokenizeText(tokenizer, text);
  cal = ids.slice(0, NS * SEQ);
  search = ids.slice(NS * SEQ, NS * SEQ + WIN * SEQ);
  base = {
    method: CUSTOM, sparsity: 0.6, budget: 'exact', mode: 'fast',
    calibration: { nsamples: NS, seqlen: SEQ, sha256: idsSha256(cal) }, search: { windows: WIN, seqlen: SEQ, sha256: idsSha256(search) },
    seed: 1, modelHash: pm.modelHash(),
  };
  const dense = await computeDense(pm, { ...base, method: 'wanda' }, cal, 1);
  const sp = searchSpace(dense.blocks, base.sparsity, base.budget);
  const rng = new Rng(42);
  while (candidates.length < 3) {
    const c = sp.sample(rng);
    if (sp.check(c).ok) candidates.push(c);
  }
});

describe('a method registered through the public API is searchable', () => {
  it('the registered fixture is the one the registry returns (no fast path: the search falls back to prune())', () => {
    expect(getMethod(CUSTOM).name).toBe(CUSTOM);
    expect(getMethod(CUSTOM).prepare).toBeUndefined();
  });

  it('fast fitness = prune with the method through the pipeline, then the perplexity (independent path)', async () => {
    const f = await createFitness(pm, base, { calibrationIds: cal, searchIds: search }, {});
    try {
      const seen: number[] = [];
      for (const c of candidates.slice(0, 2)) {
        const ev = await f.evaluate(c);
        const ref = await prunedPerplexity(CUSTOM, c, search, cal, NS, SEQ, SEQ);
        expect(ev.blockSparsity).toEqual(ref.blockSparsity);
        expect(Math.abs(ev.fitness - ref.ppl) / ref.ppl).toBeLessThan(1e-4);
        seen.push(ev.fitness);
      }
      // it is not Wanda under another name
      const w = await createFitness(pm, { ...base, method: 'wanda' }, { calibrationIds: cal, searchIds: search }, {});
      expect((await w.evaluate(candidates[0]!)).fitness).not.toBe(seen[0]);
      await w.close();
    } finally {
      await f.close();
    }
  });

  it('worker threads import the plugins: the pool gives the in-process fitness; without them a clear error', async () => {
    const dense: DenseData = await computeDense(pm, base, cal, 1);
    const f = await createFitness(pm, base, { calibrationIds: cal, searchIds: search }, { dense });
    const local: number[] = [];
    for (const c of candidates) local.push((await f.evaluate(c)).fitness);
    await f.close();
    const pool = await createPool({ modelDir, spec: base, calibrationIds: cal, searchIds: search, dense, workers: 2, threads: 1, plugins: [plugin] });
    try {
      const res = await pool.evaluate(candidates);
      expect(res.map((r) => r.fitness)).toEqual(local);
      expect(new Set(res.map((r) => r.worker)).size).toBe(2);
    } finally {
      await pool.close();
    }
    // Registered in this thread only: the worker thread does not know it and says how to fix it.
    await expect(createPool({ modelDir, spec: base, calibrationIds: cal, searchIds: search, dense, workers: 1, threads: 1 }))
      .rejects.toMatchObject({ code: 'invalid-input', message: expect.stringContaining(`unknown pruning method "${CUSTOM}"`), hint: expect.stringContaining('--plugin') });
  }, 600_000);
});

describe('searchModel (the search API) with a plugin method', () => {
  it('searches in this thread; the faithful re-application = the sequential prune with the method + perplexity', async () => {
    const r = await searchModel(pm, {
      modelDir, method: CUSTOM, plugins: [plugin], sparsity: 0.6, calibrationIds: cal, nsamples: NS, seqlen: SEQ, searchIds: search,
      searchWindows: WIN, searchSeqlen: SEQ, evaluations: 3, population: 2, seed: 4, workers: 1, threads: 1,
    });
    expect(r.method).toBe(CUSTOM);
    expect(r.history).toHaveLength(3);
    // independent: the pipeline's sequential prune with the best function, then the perplexity
    const c: Candidate = { expression: parseDsa(r.best.expression), lambda: r.best.lambda };
    const originals = searchLinears(pm).map((l) => [l, pm.readWeight(l)] as const);
    try {
      await pruneModel(pm.model, {
        method: CUSTOM, sparsity: 0.6, budget: 'exact', allocator: dsa(c.expression, { lambda: c.lambda }),
        calibration: { ids: cal }, nsamples: NS, seqlen: SEQ, source: modelDir,
      });
      expect(r.best.faithful!.fitness).toBe((await perplexity(pm.model, search, { seqlen: SEQ })).ppl);
    } finally {
      for (const [l, w] of originals) pm.writeWeight(l, w);
      await pm.commit();
    }
  }, 300_000);
});

describe('the built-ins\' fast paths', () => {
  for (const name of ['wanda', 'magnitude', 'sparsegpt']) {
    for (const budget of ['exact', 'reference'] as const) {
      it(`${name} (${budget}): the fast path gives bit for bit the fitness of prune() on a copy per candidate`, async () => {
        // The same method without its fast path: the search then runs its prune() per candidate.
        const m = getMethod(name);
        const slow: PruningMethod = { name: `${name}-via-prune`, needs: m.needs, prune: m.prune };
        registerMethod(slow);
        const spec = { ...base, method: name, budget };
        const dense = await computeDense(pm, spec, cal, 1);
        const fast = await createFitness(pm, spec, { calibrationIds: cal, searchIds: search }, { dense });
        const viaPrune = await createFitness(pm, { ...spec, method: slow.name }, { calibrationIds: cal, searchIds: search }, { dense });
        try {
          for (const c of candidates.slice(0, 2)) expect((await fast.evaluate(c)).fitness).toBe((await viaPrune.evaluate(c)).fitness);
          // an allocation with a dense block (sparsity 0) and uneven ones
          const alloc = [0, 0.75, 0.6, 0.7, 0.95];
          expect((await fast.evaluateAllocation!(alloc)).fitness).toBe((await viaPrune.evaluateAllocation!(alloc)).fitness);
        } finally {
          await fast.close();
          await viaPrune.close();
        }
      });
    }
  }
});

describe('unknown methods', () => {
  it('createFitness and computeDense refuse an unregistered method with code invalid-input, naming --plugin', async () => {
    const spec = { ...base, method: 'no-such-method' };
    await expect(createFitness(pm, spec, { calibrationIds: cal, searchIds: search }, {})).rejects.toMatchObject({
      name: 'DsaPruneError', code: 'invalid-input', message: expect.stringContaining('no-such-method'), hint: expect.stringContaining('--plugin'),
    });
    await expect(computeDense(pm, spec, cal, 1)).rejects.toMatchObject({ code: 'invalid-input' });
  });

  it('a plugin that is missing or throws on import is reported with a code and its path', async () => {
    const d = mkdtempSync(path.join(tmpdir(), 'dsa-plugin-bad-'));
    const bad = path.join(d, 'bad.mjs');
    writeFileSync(bad, "throw new Error('boom');\n");
    await expect(importPlugins([bad])).rejects.toMatchObject({ code: 'invalid-input', message: expect.stringContaining(`${bad} failed to load: boom`) });
    await expect(importPlugins([path.join(d, 'absent.mjs')])).rejects.toMatchObject({ code: 'not-found', message: expect.stringContaining('absent.mjs') });
  });
});

describe('dsa-prune search --plugin', () => {
  let dir: string;
  let calib: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'dsa-search-plugin-'));
    calib = path.join(dir, 'calib.txt');
    writeFileSync(calib, readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 25000));
  });
  const args = (...extra: string[]) => [modelDir, '--sparsity', '0.6', '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--search-windows', '2', '--population', '4', '--evals', '4', '--seed', '3', ...extra];

  it('searches with the plugin\'s method on two worker threads; the best fitness = the method\'s prune + perplexity', async () => {
    const io = memoryIo();
    const code = await run(args('--plugin', plugin, '--method', CUSTOM, '--workers', '2', '--no-final', '--json'), io);
    expect(code).toBe(0);
    const j = JSON.parse(io.stdoutText);
    expect(j.method).toBe(CUSTOM);
    expect(j.spec.method).toBe(CUSTOM);
    expect(j.settings.workers).toBe(2);
    expect(j.history).toHaveLength(4);
    // Independent: the CLI's search split (the calibration text after its 4 × 128 windows, 2 windows of 128), the
    // best candidate pruned with the plugin's method through the pipeline, then the perplexity.
    const ids = tokenizeText(tokenizer, readFileSync(calib, 'utf8'));
    const c: Candidate = { expression: parseDsa(j.best.expression), lambda: j.best.lambda };
    const ref = await prunedPerplexity(CUSTOM, c, ids.slice(512, 512 + 256), ids.slice(0, 512), 4, 128, 128);
    expect(j.best.blockSparsity).toEqual(ref.blockSparsity);
    expect(Math.abs(j.best.fitness - ref.ppl) / ref.ppl).toBeLessThan(1e-4);
  }, 600_000);

  it('dsa-prune prune --plugin prunes with the plugin\'s method: the saved weights = pruneModel with it in this process', async () => {
    const out = path.join(dir, 'pruned');
    const io = memoryIo();
    expect(await prune([modelDir, '--plugin', plugin, '--method', CUSTOM, '--sparsity', '0.5', '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--out', out, '--json'], io)).toBe(0);
    expect(JSON.parse(io.stdoutText).method).toBe(CUSTOM);
    const saved = (await loadModelDir(out, { threads: 1 })).prunable;
    const originals = searchLinears(pm).map((l) => [l, pm.readWeight(l)] as const);
    try {
      await pruneModel(pm.model, { method: CUSTOM, sparsity: 0.5, calibration: { files: [calib] }, nsamples: 4, seqlen: 128, source: modelDir });
      let differsFromDense = false;
      for (const [l, w] of originals) {
        const got = saved.readWeight(saved.linears.find((x) => x.name === l.name)!);
        expect(Array.from(got), l.name).toEqual(Array.from(pm.readWeight(l)));
        if (got.some((x, i) => x !== w[i])) differsFromDense = true;
      }
      expect(differsFromDense).toBe(true);
    } finally {
      for (const [l, w] of originals) pm.writeWeight(l, w);
      await pm.commit();
    }
  }, 300_000);

  it('an unknown --method or a missing --plugin file is refused with a code before the model is read', async () => {
    await expect(run(args('--method', 'no-such-method'), memoryIo())).rejects.toMatchObject({ name: 'DsaPruneError', code: 'invalid-input', hint: expect.stringContaining('--plugin') });
    await expect(run(args('--plugin', path.join(dir, 'missing.js'), '--method', CUSTOM), memoryIo())).rejects.toMatchObject({ code: 'not-found' });
    await expect(prune([modelDir, '--method', 'no-such-method', '--out', path.join(dir, 'never')], memoryIo())).rejects.toMatchObject({ code: 'invalid-input' });
  });
});
