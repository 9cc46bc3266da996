/**
 * A legacy merged decoder through transformers.js: stories260k's model.onnx rewritten by the fixture builder into the
 * `decoder_model_merged.onnx` layout (one `If(use_cache_branch)`, the decoder in both branches, weights in the outer
 * graph). transformers.js 4.3.2 loads it with `model_file_name: 'decoder_model_merged'` and feeds `use_cache_branch`
 * (false on the prefill, true on every cached step). Wanda through pruneModel must give exactly the weights it gives on
 * model.onnx, both branches must compute the pruned function, generate() must follow the pruned model.onnx token for
 * token, and savePruned must write a decoder_model_merged.onnx that reloads to the same logits. Also the variant whose
 * branches each hold a copy of the weights (same names): every copy is pruned alike, differing copies are refused.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AutoModelForCausalLM, AutoTokenizer } from '@huggingface/transformers';
import { maxAbsDiff } from './helpers.js';
import { attachModel, installLoadingHook } from '../../src/model/index.js';
import { encodeModel, readModelFile, tensorToFloat32, type GraphProto } from '../../src/model/onnx.js';
import { pruneModel } from '../../src/prune.js';
import { savePruned } from '../../src/save.js';
import { mergedDecoder } from '../fixtures/graphs.js';

installLoadingHook();
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const stories = path.join(repoRoot, 'models/stories260k');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-merged-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const calibration = readFileSync(path.join(repoRoot, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 40_000);
const PRUNE = { method: 'wanda', sparsity: 0.5, calibration, nsamples: 8, seqlen: 64 } as const;
const MERGED = { model_file_name: 'decoder_model_merged', dtype: 'fp32' } as const;

/** A model folder: stories260k's top-level files plus `onnx/<file>` holding `model`. */
function writeFolder(dir: string, file: string, bytes: Uint8Array): void {
  mkdirSync(path.join(dir, 'onnx'), { recursive: true });
  for (const f of readdirSync(stories)) if (statSync(path.join(stories, f)).isFile()) cpSync(path.join(stories, f), path.join(dir, f));
  writeFileSync(path.join(dir, 'onnx', file), bytes);
}

/** Record the use_cache_branch value of every run of the model's session (wraps the current session object). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function recordBranches(model: any): boolean[] {
  const seen: boolean[] = [];
  const s = model.sessions.model;
  const run = s.run.bind(s);
  s.run = (feeds: Record<string, ort.Tensor>, ...rest: unknown[]) => {
    seen.push(Boolean((feeds.use_cache_branch?.data as Uint8Array | boolean[] | undefined)?.[0]));
    return run(feeds, ...rest);
  };
  return seen;
}

/** One forward pass straight through the session with empty past, on the chosen branch. */
async function branchLogits(session: ort.InferenceSession, ids: bigint[], useCache: boolean): Promise<Float32Array> {
  const n = ids.length;
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids), [1, n]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map((_, i) => BigInt(i))), [1, n]),
    use_cache_branch: new ort.Tensor('bool', [useCache], [1]),
  };
  for (let b = 0; b < 5; b++) for (const kv of ['key', 'value']) feeds[`past_key_values.${b}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 8]);
  return (await session.run(feeds)).logits.data as Float32Array;
}

describe('legacy decoder_model_merged.onnx (If subgraphs) through transformers.js', () => {
  const plainDir = path.join(work, 'plain');
  const mergedDir = path.join(work, 'merged');
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let plain: any, merged: any, tok: any, enc: any;
  let denseTokens: bigint[];
  const ids = [1n, 403n, 2n, 150n, 33n, 7n, 91n];

  beforeAll(async () => {
    const m = readModelFile(path.join(stories, 'onnx/model.onnx'));
    writeFolder(plainDir, 'model.onnx', encodeModel(m));
    writeFolder(mergedDir, 'decoder_model_merged.onnx', encodeModel(mergedDecoder(m)));
    plain = await AutoModelForCausalLM.from_pretrained(plainDir, { dtype: 'fp32' });
    merged = await AutoModelForCausalLM.from_pretrained(mergedDir, MERGED);
    tok = await AutoTokenizer.from_pretrained(mergedDir);
    enc = tok('One day, a little bird');
  });

  const generate = async (model: unknown): Promise<bigint[]> =>
    Array.from((await (model as { generate(o: object): Promise<{ tolist(): bigint[][] }> }).generate({ ...enc, max_new_tokens: 12, do_sample: false })).tolist()[0]);

  it('loads with model_file_name, is fed use_cache_branch (false on prefill, true on cached steps), generates like model.onnx', async () => {
    expect(Object.keys(merged.sessions)).toEqual(['model']);
    expect(merged.sessions.model.inputNames).toContain('use_cache_branch');
    const branches = recordBranches(merged);
    denseTokens = await generate(merged);
    expect(branches[0]).toBe(false);
    expect(branches.length).toBeGreaterThan(5);
    expect(branches.slice(1).every(Boolean)).toBe(true);
    expect(denseTokens).toEqual(await generate(plain));

    const pm = await attachModel(merged);
    const pp = await attachModel(plain);
    expect(pm.source.fileBase).toBe('decoder_model_merged');
    expect(pm.linears.map((l) => [l.name, l.block, l.role, l.weight])).toEqual(pp.linears.map((l) => [l.name, l.block, l.role, l.weight]));
  });

  it('wanda prunes the shared weights of both branches exactly as on model.onnx; generate follows the pruned model', async () => {
    const rp = await pruneModel(plain, PRUNE);
    const rm = await pruneModel(merged, PRUNE);
    expect(rm.realizedSparsity).toBe(rp.realizedSparsity);
    expect(rm.calibration!.sha256).toBe(rp.calibration!.sha256);
    const pm = await attachModel(merged);
    const pp = await attachModel(plain);
    for (const [i, l] of pm.linears.entries()) {
      const w = pm.readWeight(l);
      expect(maxAbsDiff(w, pp.readWeight(pp.linears[i])), l.name).toBe(0);
      expect(w.filter((x) => x === 0).length / w.length).toBeCloseTo(0.5, 2);
    }
    // One copy of each weight, in the outer graph: both branches read the pruned tensor.
    const ifNode = pm.proto.graph.node.find((n) => n.op_type === 'If')!;
    for (const a of ifNode.attribute) expect((a.g as GraphProto).initializer ?? []).toHaveLength(0);
    const outer = new Set(pm.proto.graph.initializer.map((t) => t.name));
    for (const l of pm.linears) expect(outer.has(l.weight)).toBe(true);

    // Both branches of the committed session compute the pruned model.onnx.
    const want = await branchLogits(plain.sessions.model, ids, false);
    const dense = await branchLogits(await ort.InferenceSession.create(path.join(plainDir, 'onnx/model.onnx')), ids, false);
    expect(maxAbsDiff(want, dense)).toBeGreaterThan(0.01);
    expect(maxAbsDiff(await branchLogits(merged.sessions.model, ids, false), want)).toBe(0);
    expect(maxAbsDiff(await branchLogits(merged.sessions.model, ids, true), want)).toBe(0);

    const branches = recordBranches(merged);
    const tokens = await generate(merged);
    expect(branches.slice(1).every(Boolean) && !branches[0]).toBe(true);
    expect(tokens).toEqual(await generate(plain));
    expect(tokens).not.toEqual(denseTokens);
  }, 120_000);

  it('branch-local copies of the weights (not hoisted): every copy is pruned alike; copies that differ are refused', async () => {
    const m = readModelFile(path.join(stories, 'onnx/model.onnx'));
    const localDir = path.join(work, 'local');
    writeFolder(localDir, 'decoder_model_merged.onnx', encodeModel(mergedDecoder(m, { localWeights: true })));
    const local = await AutoModelForCausalLM.from_pretrained(localDir, MERGED);
    await pruneModel(local, PRUNE);
    const pm = await attachModel(local);
    const pp = await attachModel(plain); // pruned by the previous test
    const branches = pm.proto.graph.node[0].attribute.map((a) => a.g as GraphProto);
    expect(branches).toHaveLength(2);
    for (const l of pm.linears) {
      for (const g of branches) {
        const t = g.initializer.find((x) => x.name === l.weight)!;
        expect(maxAbsDiff(tensorToFloat32(t), pp.readInitializer(l.weight)), `${g.name} ${l.name}`).toBe(0);
      }
    }
    const want = await branchLogits(plain.sessions.model, ids, false);
    expect(maxAbsDiff(await branchLogits(local.sessions.model, ids, false), want)).toBe(0);
    expect(maxAbsDiff(await branchLogits(local.sessions.model, ids, true), want)).toBe(0);

    // Copies with different values cannot share one pruning: refused at attach, naming the weight.
    const odd = mergedDecoder(m, { localWeights: true });
    const w = pm.linears[3].weight;
    const t = (odd.graph.node[0].attribute[1].g as GraphProto).initializer.find((x) => x.name === w)!;
    const raw = new Uint8Array(t.raw_data!);
    raw[0] ^= 1;
    t.raw_data = raw;
    const oddDir = path.join(work, 'odd');
    writeFolder(oddDir, 'decoder_model_merged.onnx', encodeModel(odd));
    const oddModel = await AutoModelForCausalLM.from_pretrained(oddDir, MERGED);
    await expect(attachModel(oddModel)).rejects.toThrow(new RegExp(`weight ${w.replace(/[.:]/g, '\\$&')} of ${pm.linears[3].name} is stored in several subgraphs .* with different values`));
  }, 120_000);

  it('savePruned writes onnx/decoder_model_merged.onnx; from_pretrained with the same model_file_name reloads the logits', async () => {
    const out = path.join(work, 'out');
    await savePruned(merged, out);
    expect(readdirSync(path.join(out, 'onnx'))).toEqual(['decoder_model_merged.onnx']);
    const manifest = JSON.parse(readFileSync(path.join(out, 'pruning.json'), 'utf8'));
    expect(manifest.source.onnx).toBe(path.join('onnx', 'decoder_model_merged.onnx'));
    expect(manifest.linears).toHaveLength(35);
    const reloaded = await AutoModelForCausalLM.from_pretrained(out, MERGED);
    expect(maxAbsDiff((await reloaded(enc)).logits.data as Float32Array, (await merged(enc)).logits.data as Float32Array)).toBe(0);
    expect(await generate(reloaded)).toEqual(await generate(merged));
    // The saved graph keeps the merged layout.
    const saved = readModelFile(path.join(out, 'onnx/decoder_model_merged.onnx'));
    expect(saved.graph.node.map((n) => n.op_type)).toEqual(['If']);
    expect(saved.graph.input.map((i) => i.name)).toContain('use_cache_branch');
  }, 60_000);
});
