/**
 * The loading hook and the in-place session swap on the embedded stories260k through transformers.js:
 * zero half of one linear through the API, commit, and compare the logits with a session built independently from
 * the ONNX file edited by hand (byte offsets computed here, not by the code under test).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { maxAbsDiff } from './helpers.js';
import { AutoModelForCausalLM, AutoTokenizer } from '@huggingface/transformers';
import { DsaPruneError } from '../../src/errors.js';
import { attachModel, inspectModel, installLoadingHook, sourceOfSession } from '../../src/model/index.js';
import { originalCreate } from '../../src/model/hook.js';
import { encodeModel, readModelFile } from '../../src/model/onnx.js';

installLoadingHook();

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dir = path.join(repoRoot, 'models/stories260k');
const onnxPath = path.join(dir, 'onnx/model.onnx');
const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, number>;

/** Run a raw onnxruntime session on token ids with an empty KV cache; returns the logits. */
async function rawLogits(session: ort.InferenceSession, ids: number[]): Promise<Float32Array> {
  const feeds: Record<string, ort.Tensor> = {};
  const kv = config.num_key_value_heads;
  const hd = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  for (const name of session.inputNames) {
    if (name === 'input_ids') feeds[name] = new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
    else if (name === 'attention_mask') feeds[name] = new ort.Tensor('int64', BigInt64Array.from(ids.map(() => 1n)), [1, ids.length]);
    else if (name === 'position_ids') feeds[name] = new ort.Tensor('int64', BigInt64Array.from(ids.map((_, i) => BigInt(i))), [1, ids.length]);
    else if (name.startsWith('past_key_values')) feeds[name] = new ort.Tensor('float32', new Float32Array(0), [1, kv, 0, hd]);
    else throw new Error(`unexpected input ${name}`);
  }
  const out = await session.run(feeds);
  return out.logits.data as Float32Array;
}

describe('stories260k through transformers.js', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let model: any;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let tokenizer: any;
  let ids: number[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let enc: any;

  beforeAll(async () => {
    model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'fp32' });
    tokenizer = await AutoTokenizer.from_pretrained(dir);
    enc = tokenizer('Once upon a time there was a cat');
    ids = Array.from(enc.input_ids.data as BigInt64Array, Number);
  });

  it('the hook recorded the session source; modelHash is the sha256 of the ONNX file', async () => {
    const src = sourceOfSession(model.sessions.model);
    expect(src?.onnxPath).toBe(onnxPath);
    expect(src?.dir).toBe(dir);
    expect(src?.dtypeSuffix).toBe('');
    const pm = await attachModel(model);
    expect(await attachModel(model)).toBe(pm); // cached per model
    expect(pm.modelHash()).toBe(createHash('sha256').update(readFileSync(onnxPath)).digest('hex'));
    expect(pm.linears.length).toBe(35);
    expect(pm.blocks).toBe(5);
  });

  it('readWeight presents the stored [in, out] MatMul weight as [dOut × dIn]', async () => {
    const pm = await attachModel(model);
    const l = pm.linears.find((x) => x.name === 'model.layers.2.mlp.down_proj')!;
    const t = readModelFile(onnxPath).graph.initializer.find((x) => x.name === l.weight)!;
    const dv = new DataView(t.raw_data!.buffer, t.raw_data!.byteOffset, t.raw_data!.byteLength);
    const w = pm.readWeight(l);
    expect(w.length).toBe(l.dIn * l.dOut);
    for (let o = 0; o < l.dOut; o += 7) {
      for (let i = 0; i < l.dIn; i += 5) expect(w[o * l.dIn + i]).toBe(dv.getFloat32((i * l.dOut + o) * 4, true));
    }
  });

  it('zero half of one linear + commit: logits equal a hand-edited independent session; generate() still works', async () => {
    const pm = await attachModel(model);
    const dense = Float32Array.from((await model(enc)).logits.data as Float32Array);

    const l = pm.linears.find((x) => x.name === 'model.layers.1.mlp.gate_proj')!;
    const w = pm.readWeight(l);
    const half = l.dOut >> 1; // rows 0..half-1 of W [dOut × dIn]
    w.fill(0, 0, half * l.dIn);
    pm.writeWeight(l, w);
    const before = model.sessions.model;
    await pm.commit();
    expect(model.sessions.model).not.toBe(before);
    expect(model.sessions.model.config).toEqual({ dtype: 'fp32', device: 'cpu' });

    // Independent: decode the file again, zero stored entries (i, o) with o < half in the [in, out] layout.
    const proto = readModelFile(onnxPath);
    const t = proto.graph.initializer.find((x) => x.name === l.weight)!;
    const raw = new Uint8Array(t.raw_data!); // copy
    const dv = new DataView(raw.buffer);
    for (let i = 0; i < l.dIn; i++) for (let o = 0; o < half; o++) dv.setFloat32((i * l.dOut + o) * 4, 0, true);
    t.raw_data = raw;
    const create = originalCreate() as (b: Uint8Array, o: object) => Promise<ort.InferenceSession>;
    const ref = await create(encodeModel(proto), { executionProviders: ['cpu'], logSeverityLevel: 3 });
    const expected = await rawLogits(ref, ids);
    await ref.release();

    const got = (await model(enc)).logits.data as Float32Array;
    expect(maxAbsDiff(got, expected)).toBeLessThan(1e-5);
    expect(maxAbsDiff(got, dense)).toBeGreaterThan(1e-3);

    const report = await inspectModel(model);
    expect(report.linears.find((x) => x.name === l.name)!.sparsity).toBe(half / l.dOut);
    expect(report.linears.filter((x) => x.sparsity > 0)).toHaveLength(1);

    const out = await model.generate({ ...enc, max_new_tokens: 8, do_sample: false });
    expect(out.dims[1]).toBe(ids.length + 8);
    // Greedy continuation equals the argmax chain of the independent session.
    const first = argmaxLast(expected, config.vocab_size);
    expect(Number(out.data[ids.length])).toBe(first);
  });

  it('a model whose session was not recorded: clear error, or attach with { source }', async () => {
    const create = originalCreate() as (p: string, o: object) => Promise<ort.InferenceSession>;
    const session = (await create(onnxPath, { executionProviders: ['cpu'], logSeverityLevel: 3 })) as ort.InferenceSession & { config?: object };
    session.config = { dtype: 'fp32', device: 'cpu' };
    const early = { sessions: { model: session } };
    await expect(attachModel(early)).rejects.toThrow(/loaded before dsa-prune was imported.*pass \{ source: dir \}/);
    await expect(attachModel(early)).rejects.toBeInstanceOf(DsaPruneError);
    const pm = await attachModel(early, { source: dir });
    expect(pm.source.onnxPath).toBe(onnxPath);
    expect(pm.linears.length).toBe(35);
    await expect(attachModel({})).rejects.toMatchObject({ name: 'DsaPruneError', code: 'invalid-input' });
    await session.release();
  });
});

function argmaxLast(logits: Float32Array, vocab: number): number {
  const off = logits.length - vocab;
  let best = 0;
  for (let i = 1; i < vocab; i++) if (logits[off + i] > logits[off + best]) best = i;
  return best;
}
