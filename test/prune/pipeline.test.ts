/**
 * pruneModel end to end on the embedded stories260k: reference rows of ../shared/reference/reference.json (a few, CI-sized),
 * the exact budget counted from saved weights, allocator behaviour, and requests refused before any work.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { existsSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import '../../src/index.js';
import { pruneModel, savePruned, owl, dsa, uniform, DSA_PUBLISHED, planPrune, DsaPruneError } from '../../src/index.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { tokenizeText } from '../../src/data/text.js';
import { readModelFile, tensorToFloat32 } from '../../src/model/onnx.js';
import { discoverLinears } from '../../src/model/index.js';

env.allowRemoteModels = false;
// Each case prunes and measures a real model: generous limits for slow or shared machines.
const LONG = 900_000;
const repo = path.resolve(import.meta.dirname, '../..');
const modelDir = path.join(repo, 'models/stories260k');
const shared = path.resolve(repo, '../shared');
const hasShared = existsSync(path.join(shared, 'reference/reference.json'));
const calibration = readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8');
const evalText = readFileSync(path.join(repo, 'data/tinystories/tinystories_eval.txt'), 'utf8');

interface RefRow { method: string; pattern: string; sparsity: number; allocation: string; ppl: { tinystories: number }; block_sparsity: number[]; realized_sparsity: number }
const refRows: RefRow[] = hasShared
  ? (JSON.parse(readFileSync(path.join(shared, 'reference/reference.json'), 'utf8')).models.stories260k.runs as RefRow[])
  : [];
const findRow = (method: string, pattern: string, sparsity: number, allocation: string) =>
  refRows.find((r) => r.method === method && r.pattern === pattern && r.sparsity === sparsity && r.allocation === allocation)!;

const load = () => AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' });
let evalIds: Int32Array;
// The ppl of a model on the first 16 windows of the eval text is enough to compare allocations; reference rows use all.
const ppl = async (model: unknown, limitWindows?: number) =>
  (await perplexity(model as never, evalIds, { seqlen: 512, ...(limitWindows ? { limitWindows } : {}) })).ppl;

beforeAll(async () => {
  const tok = await AutoTokenizer.from_pretrained(modelDir);
  evalIds = tokenizeText(tok as never, evalText);
}, LONG);

describe.skipIf(!hasShared)('reference rows (stories260k, budget reference; needs ../shared/reference)', () => {
  const cases: [string, string, number, string][] = [
    ['wanda', 'unstructured', 0.5, 'uniform'],
    ['sparsegpt', 'unstructured', 0.5, 'uniform'],
    ['magnitude', '2:4', 0.5, 'uniform'],
    ['wanda', 'unstructured', 0.7, 'owl'],
    ['wanda', 'unstructured', 0.7, 'dsa-readme'],
  ];
  for (const [method, pattern, sparsity, allocation] of cases) {
    it(`${method} ${pattern} ${sparsity} ${allocation}: perplexity within 2% of reference.json, same block sparsities`, async () => {
      const row = findRow(method, pattern, sparsity, allocation);
      const model = await load();
      const allocator = allocation === 'owl' ? owl({ M: 5, lambda: 0.08 }) : allocation === 'dsa-readme' ? dsa(DSA_PUBLISHED, { lambda: 0.08 }) : uniform();
      const report = await pruneModel(model, {
        method, sparsity, pattern, allocator, budget: 'reference', calibration, nsamples: 64, seqlen: 512,
      });
      if (allocation !== 'uniform') {
        for (let b = 0; b < row.block_sparsity.length; b++) expect(report.targetBlockSparsity[b]).toBeCloseTo(row.block_sparsity[b], 6);
      }
      expect(Math.abs(report.realizedSparsity - row.realized_sparsity)).toBeLessThan(2e-3);
      const p = await ppl(model);
      expect(Math.abs(p - row.ppl.tinystories) / row.ppl.tinystories).toBeLessThan(0.02);
    }, LONG);
  }
});

describe('exact budget and allocators (embedded model and text only)', () => {
  it('OWL at 0.7 realises 0.7 ± 1e-3 counted from the saved weights, and beats uniform', async () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-owl-'));
    try {
      const m1 = await load();
      const rOwl = await pruneModel(m1, { method: 'wanda', sparsity: 0.7, allocator: owl(), calibration, nsamples: 32, seqlen: 512 });
      await savePruned(m1, path.join(out, 'owl'));
      // Count zeros from the saved ONNX, independently of the report.
      const proto = readModelFile(path.join(out, 'owl/onnx/model.onnx'));
      const { linears } = discoverLinears(proto.graph);
      const inits = new Map(proto.graph.initializer.map((t) => [t.name, t]));
      let zeros = 0;
      let params = 0;
      for (const l of linears) {
        const w = tensorToFloat32(inits.get(l.weight)!);
        params += w.length;
        for (let i = 0; i < w.length; i++) if (w[i] === 0) zeros++;
      }
      expect(Math.abs(zeros / params - 0.7)).toBeLessThan(1e-3);
      expect(Math.abs(rOwl.realizedSparsity - zeros / params)).toBeLessThan(1e-9);
      const manifest = JSON.parse(readFileSync(path.join(out, 'owl/pruning.json'), 'utf8'));
      expect(manifest.method).toBe('wanda');
      expect(manifest.allocator.name).toBe('owl');

      const m2 = await load();
      const rUni = await pruneModel(m2, { method: 'wanda', sparsity: 0.7, calibration, nsamples: 32, seqlen: 512 });
      expect(Math.abs(rUni.realizedSparsity - 0.7)).toBeLessThan(1e-3);
      const [pOwl, pUni] = [await ppl(m1, 16), await ppl(m2, 16)];
      expect(pOwl).toBeLessThan(pUni);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, LONG);

  it('the published DSA function fails in the default mode with the blocks and a suggestion to search', async () => {
    const model = await load();
    const err = await pruneModel(model, { method: 'wanda', sparsity: 0.7, allocator: dsa(DSA_PUBLISHED), calibration, nsamples: 16, seqlen: 512 }).catch((e) => e);
    expect(err).toBeInstanceOf(DsaPruneError);
    expect(String(err.message + ' ' + (err.hint ?? ''))).toMatch(/block/i);
    expect(String(err.message + ' ' + (err.hint ?? ''))).toMatch(/search/i);
  }, LONG);

  it('sparsity 0 prunes nothing; the model still generates after pruning', async () => {
    const model = await load();
    const r0 = await pruneModel(model, { method: 'magnitude', sparsity: 0 });
    expect(r0.realizedSparsity).toBe(0);
    await pruneModel(model, { method: 'magnitude', sparsity: 0.3 });
    const tok = await AutoTokenizer.from_pretrained(modelDir);
    const inputs = tok('Once upon a time');
    const out = (await (model as unknown as { generate(o: object): Promise<{ dims: number[] }> }).generate({ ...inputs, max_new_tokens: 5 })) as { dims: number[] };
    expect(out.dims[1]).toBeGreaterThan(5);
  }, LONG);

  it('refuses invalid requests before any work, with the reason', async () => {
    const model = await load();
    const bad: [object, RegExp][] = [
      [{ method: 'wanda', sparsity: 1 }, /sparsity/],
      [{ method: 'wanda', sparsity: -0.1 }, /sparsity/],
      [{ method: 'wanda', sparsity: 0.5, pattern: '4:4' }, /N|4:4/],
      [{ method: 'nonsense', sparsity: 0.5 }, /nonsense/],
      [{ method: 'wanda', sparsity: 0.5, calibration, seqlen: 4096 }, /context/],
      [{ method: 'wanda', sparsity: 0.5 }, /calibration/],
    ];
    for (const [opts, re] of bad) {
      const e = await pruneModel(model, opts as never).catch((x) => x);
      expect(e, JSON.stringify(opts).slice(0, 80)).toBeInstanceOf(DsaPruneError);
      expect(e.message + ' ' + (e.hint ?? '')).toMatch(re);
    }
  }, LONG);

  it('an aborted prune leaves the model unchanged', async () => {
    const model = await load();
    const before = await ppl(model, 4);
    const ac = new AbortController();
    let calls = 0;
    const e = await pruneModel(model, {
      method: 'wanda', sparsity: 0.5, calibration, nsamples: 8, seqlen: 512, signal: ac.signal,
      onProgress: () => { if (++calls === 3) ac.abort(); },
    }).catch((x) => x);
    expect(e).toBeInstanceOf(Error);
    expect(await ppl(model, 4)).toBe(before);
  }, LONG);

  it('planPrune lists every linear with its target and does not touch the model', async () => {
    const model = await load();
    const before = await ppl(model, 4);
    const plan = await planPrune(model, { method: 'magnitude', sparsity: 0.6 });
    expect(plan.linears).toHaveLength(35);
    expect(plan.linears.every((l) => l.target === 0.6)).toBe(true);
    expect(await ppl(model, 4)).toBe(before);
  }, LONG);
});
