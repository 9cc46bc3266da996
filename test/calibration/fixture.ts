/**
 * Test fixture: a CalibrationModel straight from an ONNX file (graph + discovered linears + initializer reader),
 * without transformers.js, plus the independent reference computation of the statistics.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { discoverLinears } from '../../src/model/discover.js';
import { cloneGraph, encodeModel, readModelFile, tensorToFloat32, setTensorFloat32, type ModelProto } from '../../src/model/onnx.js';
import type { CalibrationModel } from '../../src/calibration/index.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const shared = path.resolve(repoRoot, '../shared');
export const hasShared = existsSync(path.join(shared, 'models/bench-12l/onnx/model.onnx'));

export interface FixtureModel extends CalibrationModel {
  /** Overwrite an initializer's values (ONNX layout), as a pruning step would. */
  writeInitializer(name: string, v: Float32Array): void;
}

/** Deterministic pseudo-random token ids in [3, vocab) (a 32-bit LCG from `seed`), for calibration windows. */
export function tokens(n: number, vocab: number, seed: number): Int32Array {
  const out = new Int32Array(n);
  let a = seed >>> 0;
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = 3 + (a % (vocab - 3));
  }
  return out;
}

/** The model in `dir`/onnx/`file` (default model.onnx; e.g. model_fp16.onnx) as a CalibrationModel. */
export function loadFixture(dir: string, file = 'model.onnx'): FixtureModel {
  const proto = readModelFile(path.join(dir, 'onnx', file));
  const configPath = path.join(dir, 'config.json');
  const config = existsSync(configPath) ? (JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>) : undefined;
  const { linears } = discoverLinears(proto.graph, { config });
  const byName = new Map(proto.graph.initializer.map((t) => [t.name ?? '', t]));
  return {
    proto,
    linears,
    config,
    source: { dir, onnxPath: path.join(dir, 'onnx', file) },
    readInitializer: (name) => tensorToFloat32(byName.get(name)!, path.join(dir, 'onnx')).slice(),
    writeInitializer: (name, v) => setTensorFloat32(byName.get(name)!, v),
  };
}

/**
 * Independent statistics: the whole model as one graph with every linear's input exposed as an extra output, run
 * batch by batch; Σx² and XᵀX summed naively in float64 in JS. Keyed by the activation tensor name.
 */
export async function referenceStats(
  m: CalibrationModel, windows: Int32Array, nsamples: number, seqlen: number, batch: number, gram: boolean,
  onlyBlock?: number,
): Promise<Map<string, { sq: Float64Array; gram?: Float64Array }>> {
  const xs = new Map<string, number>();
  for (const l of m.linears) {
    if (l.block < 0 || (onlyBlock !== undefined && l.block !== onlyBlock)) continue;
    const node = m.proto.graph.node.find((n) => n.name === l.node)!;
    xs.set(node.input[0]!, l.dIn);
  }
  const acts = await referenceActivations(m, windows, nsamples, seqlen, batch, [...xs.keys()]);
  const out = new Map<string, { sq: Float64Array; gram?: Float64Array }>();
  for (const [x, d] of xs) out.set(x, { sq: new Float64Array(d), gram: gram ? new Float64Array(d * d) : undefined });
  for (const [x, d] of xs) {
    const acc = out.get(x)!;
    for (const data of acts.get(x)!) {
      const T = data.length / d;
      for (let t = 0; t < T; t++) {
        for (let j = 0; j < d; j++) {
          const v = data[t * d + j]!;
          acc.sq[j] += v * v;
          if (acc.gram) for (let k = 0; k < d; k++) acc.gram[j * d + k] += v * data[t * d + k]!;
        }
      }
    }
  }
  return out;
}

/** The whole model as one graph with `tensors` exposed as extra outputs, run batch by batch: their values per batch. */
export async function referenceActivations(
  m: CalibrationModel, windows: Int32Array, nsamples: number, seqlen: number, batch: number, tensors: string[],
): Promise<Map<string, Float32Array[]>> {
  const g = cloneGraph(m.proto.graph);
  for (const x of tensors) g.output.push({ name: x });
  const model: ModelProto = { ...m.proto, graph: g };
  const s = await ort.InferenceSession.create(encodeModel(model), { intraOpNumThreads: 2, logSeverityLevel: 3 });
  const out = new Map<string, Float32Array[]>(tensors.map((x) => [x, []]));
  for (let i = 0; i * batch < nsamples; i++) {
    const rows = Math.min(batch, nsamples - i * batch);
    const n = rows * seqlen;
    const ids = new BigInt64Array(n);
    const pos = new BigInt64Array(n);
    for (let k = 0; k < n; k++) {
      ids[k] = BigInt(windows[i * batch * seqlen + k]!);
      pos[k] = BigInt(k % seqlen);
    }
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of s.inputNames) {
      if (name === 'input_ids') feeds[name] = new ort.Tensor('int64', ids, [rows, seqlen]);
      else if (name === 'attention_mask') feeds[name] = new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [rows, seqlen]);
      else if (name === 'position_ids') feeds[name] = new ort.Tensor('int64', pos, [rows, seqlen]);
      else {
        const kv = Number(m.config?.num_key_value_heads ?? m.config?.num_attention_heads);
        const hd = Number(m.config?.head_dim ?? Number(m.config?.hidden_size) / Number(m.config?.num_attention_heads));
        feeds[name] = new ort.Tensor('float32', new Float32Array(0), [rows, kv, 0, hd]);
      }
    }
    const res = await s.run(feeds, tensors);
    for (const x of tensors) out.get(x)!.push(Float32Array.from(res[x]!.data as Float32Array));
  }
  await s.release();
  return out;
}
