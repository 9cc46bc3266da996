/**
 * savePruned on stories260k: the saved folder reloads with from_pretrained and gives the in-place logits; the source
 * folder stays byte-for-byte unchanged; refusals (source folder, inside it, non-empty folder) write nothing; a failing
 * save leaves no half-written folder.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashTree, maxAbsDiff } from './helpers.js';
import { AutoModelForCausalLM, AutoTokenizer } from '@huggingface/transformers';
import { DsaPruneError } from '../../src/errors.js';
import { attachModel, inspectModel, installLoadingHook, savePruned } from '../../src/model/index.js';

installLoadingHook();

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-save-test-'));
const src = path.join(work, 'src-model');


describe('savePruned', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let model: any;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let enc: any;
  let srcHashes: Record<string, string>;

  beforeAll(async () => {
    cpSync(path.join(repoRoot, 'models/stories260k'), src, { recursive: true });
    srcHashes = hashTree(src);
    model = await AutoModelForCausalLM.from_pretrained(src, { dtype: 'fp32' });
    enc = (await AutoTokenizer.from_pretrained(src))('One day, a little bird');
    const pm = await attachModel(model);
    const l = pm.linears.find((x) => x.name === 'model.layers.3.self_attn.o_proj')!;
    const w = pm.readWeight(l);
    w.fill(0, 0, (l.dOut >> 1) * l.dIn);
    pm.writeWeight(l, w);
    await pm.commit();
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('saves a folder that from_pretrained reloads with the same logits; the source is unchanged', async () => {
    const out = path.join(work, 'out');
    await savePruned(model, out, { manifest: { method: 'test', sparsity: 0.5 } });
    expect(readdirSync(out).sort()).toEqual(['LICENSE', 'README.md', 'config.json', 'generation_config.json', 'onnx', 'pruning.json', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readdirSync(path.join(out, 'onnx'))).toEqual(['model.onnx']);
    for (const f of ['config.json', 'tokenizer.json', 'generation_config.json']) {
      expect(readFileSync(path.join(out, f))).toEqual(readFileSync(path.join(src, f)));
    }
    const reloaded = await AutoModelForCausalLM.from_pretrained(out, { dtype: 'fp32' });
    const a = (await model(enc)).logits.data as Float32Array;
    const b = ((await reloaded(enc)) as { logits: { data: Float32Array } }).logits.data;
    expect(maxAbsDiff(a, b)).toBe(0);

    const manifest = JSON.parse(readFileSync(path.join(out, 'pruning.json'), 'utf8'));
    expect(manifest.tool).toBe('dsa-prune');
    expect(manifest.version).toBe(JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version);
    expect(manifest.method).toBe('test');
    expect(manifest.linears).toHaveLength(35);
    for (const l of manifest.linears) expect(l.sparsity).toBe(l.name === 'model.layers.3.self_attn.o_proj' ? 0.5 : 0);
    const report = await inspectModel(out);
    expect(report.linears.find((l) => l.name === 'model.layers.3.self_attn.o_proj')!.sparsity).toBe(0.5);

    expect(hashTree(src)).toEqual(srcHashes);
  });

  it('refuses the source folder, a folder inside it, a folder containing it, and a non-empty folder; writes nothing', async () => {
    const before = readdirSync(work).sort();
    for (const bad of [src, path.join(src, 'pruned'), path.join(src, 'onnx'), work]) {
      const err = await savePruned(model, bad).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DsaPruneError);
      expect(err).toMatchObject({ code: 'refused' });
    }
    const full = path.join(work, 'full');
    mkdirSync(full);
    writeFileSync(path.join(full, 'keep.txt'), 'x');
    const err = await savePruned(model, full).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DsaPruneError);
    expect(err).toMatchObject({ code: 'refused' });
    expect(readdirSync(full)).toEqual(['keep.txt']);
    expect(readdirSync(work).sort()).toEqual([...before, 'full'].sort());
    expect(hashTree(src)).toEqual(srcHashes);

    await savePruned(model, full, { overwrite: true });
    expect(existsSync(path.join(full, 'keep.txt'))).toBe(false);
    expect(existsSync(path.join(full, 'onnx/model.onnx'))).toBe(true);
    expect(readdirSync(work).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('a save that fails midway leaves neither the output folder nor a temp folder', async () => {
    const out = path.join(work, 'failed');
    // JSON.stringify cannot serialise a BigInt: the manifest write fails after the ONNX was written.
    const err = await savePruned(model, out, { manifest: { bad: 1n } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DsaPruneError);
    expect((err as Error).message).toMatch(/nothing was written/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('two saves racing for the same folder: exactly one wins, the folder is complete', async () => {
    const out = path.join(work, 'race');
    const results = await Promise.allSettled([savePruned(model, out), savePruned(model, out)]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(DsaPruneError);
    expect(readdirSync(path.join(out, 'onnx'))).toEqual(['model.onnx']);
    expect(existsSync(path.join(out, 'pruning.json'))).toBe(true);
  });
});
