import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { loadModelDir, type PrunableModel } from '../../src/model/index.js';
import { computeDense, createFitness, idsSha256, searchLinears, type DenseData } from '../../src/search/fitness.js';
import { searchSpace } from '../../src/search/space.js';
import { linearUnits } from '../../src/allocators/granularity.js';
import { createPool } from '../../src/search/pool.js';
import { Rng } from '../../src/search/random.js';
import { tokenizeText } from '../../src/data/text.js';
import { pruneModel } from '../../src/prune.js';
import { dsa } from '../../src/allocators/dsa-allocator.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { forwardLogits, sessionOf } from '../../src/eval/forward.js';
import { createTopKCache } from '../../src/eval/kl.js';
import type { Candidate, SearchSpec } from '../../src/search/types.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const modelDir = path.join(repo, 'models/stories260k');
const NS = 8;
const SEQ = 128;
const WIN = 4;

let pm: PrunableModel;
let cal: Int32Array;
let search: Int32Array;
let spec: SearchSpec;
let dense: DenseData;
const candidates: Candidate[] = [];

beforeAll(async () => {
  const loaded = await loadModelDir(modelDir, { threads: 1 });
  pm = loaded.prunable;
  // A prefix of the shipped calibration text is plenty (tokenizing all of it takes seconds).
  const text = readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 30000);
  const ids = tokenizeText(loaded.tokenizer, text);
  cal = ids.slice(0, NS * SEQ);
  search = ids.slice(NS * SEQ, NS * SEQ + WIN * SEQ);
  spec = {
    method: 'wanda', sparsity: 0.6, budget: 'exact', mode: 'fast',
    calibration: { nsamples: NS, seqlen: SEQ, sha256: idsSha256(cal) }, search: { windows: WIN, seqlen: SEQ, sha256: idsSha256(search) },
    seed: 1, modelHash: pm.modelHash(),
  };
  dense = await computeDense(pm, spec, cal, 1);
  const sp = searchSpace(dense.blocks, spec.sparsity, spec.budget);
  const rng = new Rng(42);
  while (candidates.length < 4) {
    const c = sp.sample(rng);
    if (sp.check(c).ok) candidates.push(c);
  }
});

describe('fast fitness on stories260k', () => {
  it('equals a one-shot prune through the pipeline followed by the perplexity (independent path)', async () => {
    const f = await createFitness(pm, spec, { calibrationIds: cal, searchIds: search }, { dense });
    const originals = searchLinears(pm).map((l) => [l, pm.readWeight(l)] as const);
    try {
      for (const c of candidates.slice(0, 2)) {
        const ev = await f.evaluate(c);
        const report = await pruneModel(pm.model, {
          method: 'wanda', sparsity: spec.sparsity, budget: 'exact', allocator: dsa(c.expression, { lambda: c.lambda }),
          calibration: { ids: cal }, nsamples: NS, seqlen: SEQ, mode: 'oneshot', source: modelDir,
        });
        const { ppl } = await perplexity(pm.model, search, { seqlen: SEQ });
        expect(ev.blockSparsity).toEqual(report.targetBlockSparsity);
        expect(Math.abs(ev.fitness - ppl) / ppl).toBeLessThan(1e-4);
        for (const [l, w] of originals) pm.writeWeight(l, w);
        await pm.commit();
      }
    } finally {
      for (const [l, w] of originals) pm.writeWeight(l, w);
      await pm.commit();
      await f.close();
    }
  });

  it('at linear granularity equals a one-shot per-linear prune through the pipeline (independent path)', async () => {
    const lspec: SearchSpec = { ...spec, granularity: 'linear' };
    const sp = searchSpace(linearUnits(dense.blocks).units, spec.sparsity, spec.budget);
    const rng = new Rng(7);
    let c: Candidate | undefined;
    while (!c) {
      const x = sp.sample(rng);
      if (sp.check(x).ok) c = x;
    }
    const f = await createFitness(pm, lspec, { calibrationIds: cal, searchIds: search }, { dense });
    const originals = searchLinears(pm).map((l) => [l, pm.readWeight(l)] as const);
    try {
      // A block-granularity caller's block sparsities are ignored at linear granularity.
      const ev = await f.evaluate(c, undefined, dense.blocks.map(() => spec.sparsity));
      const report = await pruneModel(pm.model, {
        method: 'wanda', sparsity: spec.sparsity, budget: 'exact', allocator: dsa(c.expression, { lambda: c.lambda }), granularity: 'linear',
        calibration: { ids: cal }, nsamples: NS, seqlen: SEQ, mode: 'oneshot', source: modelDir,
      });
      const targets = report.linears.map((l) => l.target);
      expect(new Set(targets.slice(0, 7).map((x) => x.toFixed(5))).size).toBeGreaterThan(1);
      const { ppl } = await perplexity(pm.model, search, { seqlen: SEQ });
      expect(ev.blockSparsity).toEqual(report.targetBlockSparsity);
      expect(Math.abs(ev.fitness - ppl) / ppl).toBeLessThan(1e-4);
    } finally {
      for (const [l, w] of originals) pm.writeWeight(l, w);
      await pm.commit();
      await f.close();
    }
  });

  it('KL fitness = mean KL(dense ‖ pruned) over top-k + rest bucket, against an independent float64 computation', async () => {
    // Independent: logits straight from the model's session (dense, then pruned through the pipeline), float64
    // log-softmax, a full sort for the top-k, the tail summed entry by entry.
    const logits = async () => {
      const out: Float64Array[] = [];
      for (let w = 0; w < WIN; w++) {
        const { data, vocab } = await forwardLogits(sessionOf(pm.model as never), search.subarray(w * SEQ, (w + 1) * SEQ), 1, SEQ, { config: pm.config });
        for (let t = 0; t < SEQ - 1; t++) {
          const row = Float64Array.from(data.subarray(t * vocab, (t + 1) * vocab));
          let m = -Infinity;
          for (const x of row) m = Math.max(m, x);
          let z = 0;
          for (const x of row) z += Math.exp(x - m);
          out.push(row.map((x) => x - m - Math.log(z)));
        }
      }
      return out;
    };
    const klRef = (P: Float64Array[], Q: Float64Array[], k: number) => {
      let sum = 0;
      for (let i = 0; i < P.length; i++) {
        const p = P[i];
        const q = Q[i];
        const order = Array.from(p, (_, j) => j).sort((a, b) => p[b] - p[a] || a - b);
        const top = order.slice(0, k);
        let kl = 0;
        for (const j of top) kl += Math.exp(p[j]) * (p[j] - q[j]);
        let pr = 0;
        let qr = 0;
        for (const j of order.slice(k)) {
          pr += Math.exp(p[j]);
          qr += Math.exp(q[j]);
        }
        if (pr > 0) kl += pr * (Math.log(pr) - Math.log(qr));
        sum += kl;
      }
      return sum / P.length;
    };
    const c = candidates[0];
    const dense64 = await logits();
    const vocab = dense64[0].length;
    const results: Record<number, number> = {};
    for (const k of [64, vocab]) {
      const f = await createFitness(pm, { ...spec, fitness: 'kl', klTopK: k }, { calibrationIds: cal, searchIds: search }, { dense });
      results[k] = (await f.evaluate(c)).fitness;
      await f.close();
    }
    const originals = searchLinears(pm).map((l) => [l, pm.readWeight(l)] as const);
    try {
      await pruneModel(pm.model, {
        method: 'wanda', sparsity: spec.sparsity, budget: 'exact', allocator: dsa(c.expression, { lambda: c.lambda }),
        calibration: { ids: cal }, nsamples: NS, seqlen: SEQ, mode: 'oneshot', source: modelDir,
      });
      const pruned64 = await logits();
      const ref64 = klRef(dense64, pruned64, 64);
      const refFull = klRef(dense64, pruned64, vocab);
      expect(ref64).toBeGreaterThan(0.01);
      expect(ref64).toBeLessThanOrEqual(refFull);
      expect(Math.abs(results[64] - ref64) / ref64).toBeLessThan(1e-4);
      expect(Math.abs(results[vocab] - refFull) / refFull).toBeLessThan(1e-4);
    } finally {
      for (const [l, w] of originals) pm.writeWeight(l, w);
      await pm.commit();
    }
  });

  it('is deterministic: same candidate → same number, with 1 or 2 onnxruntime threads', async () => {
    const f1 = await createFitness(pm, spec, { calibrationIds: cal, searchIds: search }, { dense, threads: 1 });
    const f2 = await createFitness(pm, spec, { calibrationIds: cal, searchIds: search }, { dense, threads: 2 });
    for (const c of candidates) {
      const a = await f1.evaluate(c);
      const b = await f1.evaluate(c);
      const d = await f2.evaluate(c);
      expect(b.fitness).toBe(a.fitness);
      expect(d.fitness).toBe(a.fitness);
    }
    // different candidates give different numbers
    const all = await Promise.all(candidates.map(async (c) => (await f1.evaluate(c)).fitness));
    expect(new Set(all).size).toBe(all.length);
    await f1.close();
    await f2.close();
  });

  it('refuses search data that does not match the spec', async () => {
    await expect(createFitness(pm, { ...spec, search: { ...spec.search, sha256: 'x' } }, { calibrationIds: cal, searchIds: search }, { dense })).rejects.toThrow(/sha256/);
    await expect(createFitness(pm, { ...spec, pattern: { kind: 'nm', n: 2, m: 4 } }, { calibrationIds: cal, searchIds: search }, { dense })).rejects.toThrow(/N:M/);
    await expect(createFitness(pm, { ...spec, search: { ...spec.search, windows: 1000 } }, { calibrationIds: cal, searchIds: search }, { dense })).rejects.toThrow(/too short/);
    // The KL cache states its size and refuses one above the limit before any forward.
    await expect(createTopKCache(sessionOf(pm.model as never), search, WIN, SEQ, { k: 64, maxBytes: 1000, config: pm.config })).rejects.toThrow(/needs \d+ MiB \(508 positions × top-64 × 12 bytes\)/);
    await expect(createFitness(pm, { ...spec, fitness: 'x' as never }, { calibrationIds: cal, searchIds: search }, { dense })).rejects.toThrow(/ppl or kl/);
  });
});

describe('worker-thread pool', () => {
  it('gives the same fitness as the in-process evaluation, in batch order', async () => {
    const f = await createFitness(pm, spec, { calibrationIds: cal, searchIds: search }, { dense });
    const local = [];
    for (const c of candidates) local.push((await f.evaluate(c)).fitness);
    await f.close();
    const pool = await createPool({ modelDir, spec, calibrationIds: cal, searchIds: search, dense, workers: 2, threads: 1 });
    try {
      const res = await pool.evaluate(candidates);
      expect(res.map((r) => r.fitness)).toEqual(local);
      expect(new Set(res.map((r) => r.worker)).size).toBe(2);
    } finally {
      await pool.close();
    }
    // Worker start-up (each thread loads the model; from source, through tsx) is slow on a loaded machine.
  }, 600_000);
});

describe('faithful fitness', () => {
  it('prunes sequentially, scores, and restores the dense model', async () => {
    const dense0 = (await perplexity(pm.model, search, { seqlen: SEQ })).ppl;
    const f = await createFitness(pm, { ...spec, mode: 'faithful' }, { calibrationIds: cal, searchIds: search }, { dense });
    const c = candidates[0]!;
    const ev = await f.evaluate(c);
    expect(ev.fitness).toBeGreaterThan(dense0);
    expect((await perplexity(pm.model, search, { seqlen: SEQ })).ppl).toBe(dense0);
    // independent: the pipeline's sequential prune, then the perplexity
    const originals = searchLinears(pm).map((l) => [l, pm.readWeight(l)] as const);
    await pruneModel(pm.model, {
      method: 'wanda', sparsity: spec.sparsity, budget: 'exact', allocator: dsa(c.expression, { lambda: c.lambda }),
      calibration: { ids: cal }, nsamples: NS, seqlen: SEQ, source: modelDir,
    });
    const ppl = (await perplexity(pm.model, search, { seqlen: SEQ })).ppl;
    for (const [l, w] of originals) pm.writeWeight(l, w);
    await pm.commit();
    expect(ev.fitness).toBe(ppl);
    await f.close();
  });
});

afterAll(async () => {
  // nothing: the model is released with the process
});
