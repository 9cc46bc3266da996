/**
 * Builder layouts end to end on raw onnxruntime sessions (created after the loading hook, wrapped as a minimal model):
 * optimum and onnxruntime-genai naming, fused qkv / gate_up, fp16 weights, external data in one and several files,
 * linears inside If subgraphs. Each is detected, read back exactly (independent byte decoding), pruned (half of one
 * linear zeroed), committed (logits equal a hand-edited graph), saved and reloaded.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { maxAbsDiff } from './helpers.js';
import { attachModel, inspectModel, installLoadingHook, savePruned } from '../../src/model/index.js';
import { originalCreate } from '../../src/model/hook.js';
import { DataType, encodeModel, type ModelProto, type TensorProto } from '../../src/model/onnx.js';
import { buildToyDecoder, writeToyFolder, type ToyOptions } from '../fixtures/graphs.js';

installLoadingHook();
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-layouts-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Naive IEEE half → number (independent of src/model/onnx.ts). */
function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Value (i, o) of a stored [dIn, dOut] weight, decoded from raw bytes. */
function storedValue(t: TensorProto, raw: Uint8Array, i: number, o: number, dOut: number): number {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const k = i * dOut + o;
  return t.data_type === DataType.FLOAT16 ? halfToNumber(dv.getUint16(k * 2, true)) : dv.getFloat32(k * 4, true);
}

async function logits(session: ort.InferenceSession, subgraph: boolean): Promise<Float32Array> {
  const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', BigInt64Array.from([3n, 1n, 4n, 1n, 5n]), [1, 5]) };
  if (subgraph) feeds.use_cache_branch = new ort.Tensor('bool', [true], [1]);
  const out = (await session.run(feeds)).logits;
  if (out.type === 'float16') return Float32Array.from(out.data as Uint16Array, halfToNumber);
  return out.data as Float32Array;
}

const cases: { label: string; opts: ToyOptions; external?: 'one' | 'several'; file?: string; viaFile?: boolean; releaseFirst?: boolean }[] = [
  { label: 'optimum names', opts: {} },
  { label: 'onnxruntime-genai names, fused qkv_proj / gate_up_proj', opts: { naming: 'genai', fused: true } },
  { label: 'fp16 weights (model_fp16.onnx)', opts: { dtype: 'float16' }, file: 'model_fp16.onnx' },
  { label: 'external data, one file', opts: {}, external: 'one' },
  { label: 'external data, several files, committed through a temp file, old session released first', opts: { naming: 'genai' }, external: 'several', viaFile: true, releaseFirst: true },
  { label: 'fp16 + external data', opts: { dtype: 'float16', fused: true }, external: 'one', file: 'model_fp16.onnx' },
  { label: 'linears inside If subgraphs (decoder_model_merged style)', opts: { subgraph: true } },
];

describe('builder layouts: detect, prune, commit, save, reload', () => {
  for (const c of cases) {
    it(c.label, async () => {
      const toy = buildToyDecoder({ blocks: 3, hidden: 16, inter: 24, ...c.opts });
      const original = structuredClone(toy.model) as ModelProto; // untouched copy for the hand edit
      const dir = path.join(work, c.label.replace(/\W+/g, '_'));
      const onnxPath = writeToyFolder(dir, toy, { external: c.external ?? 'none', file: c.file });
      const session = await ort.InferenceSession.create(onnxPath, { logSeverityLevel: 3 });
      const model = { sessions: { model: session } };
      const pm = await attachModel(model);
      expect(pm.source.onnxPath).toBe(onnxPath);
      expect(pm.source.dtypeSuffix).toBe(c.file === 'model_fp16.onnx' ? '_fp16' : '');
      expect(pm.blocks).toBe(3);
      expect(pm.linears.map((l) => [l.block, l.role, l.weight])).toEqual(toy.linears.map((t) => [t.block, t.role, t.weight]));

      // readWeight = the builder's bytes, transposed, decoded independently.
      const l = pm.linears[pm.linears.length - 2]; // last block's gate / gate_up
      const t = original.graph.initializer.find((x) => x.name === l.weight)!;
      const raw = t.raw_data!;
      const w = pm.readWeight(l);
      for (let o = 0; o < l.dOut; o += 3) for (let i = 0; i < l.dIn; i += 2) expect(w[o * l.dIn + i]).toBe(storedValue(t, raw, i, o, l.dOut));

      // Prune: zero rows 0..half-1 of W [dOut × dIn].
      const half = l.dOut >> 1;
      w.fill(0, 0, half * l.dIn);
      pm.writeWeight(l, w);
      await pm.commit({ viaFile: c.viaFile, releaseFirst: c.releaseFirst });
      expect(model.sessions.model).not.toBe(session);

      // Hand edit of the original graph: zero stored entries (i, o), o < half.
      const edited = new Uint8Array(raw);
      const bpe = t.data_type === DataType.FLOAT16 ? 2 : 4;
      for (let i = 0; i < l.dIn; i++) edited.fill(0, (i * l.dOut) * bpe, (i * l.dOut + half) * bpe);
      t.raw_data = edited;
      const create = originalCreate() as (b: Uint8Array, o: object) => Promise<ort.InferenceSession>;
      const ref = await create(encodeModel(original), { logSeverityLevel: 3 });
      const expected = await logits(ref, !!c.opts.subgraph);
      const got = await logits(model.sessions.model, !!c.opts.subgraph);
      expect(maxAbsDiff(got, expected)).toBe(0);
      const dense = await logits(await create(encodeModel(toy.model), { logSeverityLevel: 3 }), !!c.opts.subgraph);
      expect(maxAbsDiff(got, dense)).toBeGreaterThan(0);

      // Save and reload from disk.
      const out = path.join(work, `${path.basename(dir)}_out`);
      await savePruned(model, out);
      const file = c.file ?? 'model.onnx';
      const files = readdirSync(path.join(out, 'onnx')).sort();
      expect(files).toEqual(c.external ? [file, `${file}_data`] : [file]);
      const reloaded = await ort.InferenceSession.create(path.join(out, 'onnx', file), { logSeverityLevel: 3 });
      expect(maxAbsDiff(await logits(reloaded, !!c.opts.subgraph), expected)).toBe(0);
      const report = await inspectModel(out);
      expect(report.linears.find((x) => x.name === l.name)!.sparsity).toBeCloseTo(half / l.dOut, 12);
      expect(JSON.parse(readFileSync(path.join(out, 'pruning.json'), 'utf8')).linears).toHaveLength(toy.linears.length);
      await Promise.all([reloaded.release(), ref.release(), model.sessions.model.release()]);
    });
  }
});
