/**
 * A decoder session whose prunable weights are graph INPUTS instead of initializers: built once from a copy of the
 * model's graph, it runs any set of weights without rebuilding the session (the search's fast fitness feeds each
 * candidate's pruned weights). fp16 weights are fed as fp16 (float32 values rounded as the save path rounds them).
 *
 * The returned `session` looks like the model's own decoder session (the weight inputs are hidden from
 * `inputNames` / `inputMetadata`, and every `run` adds the current weight feeds), so eval/ and calibration/ use it
 * unchanged.
 */
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { DsaPruneError } from '../errors.js';
import { hasExternalData, inlinedModel } from './external.js';
import type { DecoderSession } from './feeds.js';
import { DataType, encodeModel, float32ToFp16, tensorDims, type ModelProto, type ValueInfoProto } from './onnx.js';
import type { PrunableModel } from './prunable.js';

/** One weight input of the session. */
export interface WeightInput {
  /** Initializer name (= input name). */
  name: string;
  /** Stored dims (the initializer's own layout). */
  dims: number[];
  /** Fed as float16 (the initializer is float16). */
  fp16: boolean;
}

/** A session with weights as inputs (see the module comment). */
export interface WeightFedSession {
  /** The decoder session to run (weight inputs hidden, fed from the last `setWeight` of each). */
  session: DecoderSession;
  /** The weight inputs, in graph-input order. */
  inputs: WeightInput[];
  /**
   * Feed `values` (float32, in the initializer's stored layout and length) for `name` from the next run on. The
   * array is read when this is called (fp16 inputs are converted here; fp32 ones are wrapped, not copied: do not
   * change it while the session runs).
   */
  setWeight(name: string, values: Float32Array): void;
  release(): Promise<void>;
}

/** Options of weightFedSession(). */
export interface WeightFedOptions {
  /** onnxruntime intra-op threads (default 1). */
  threads?: number;
}

/**
 * Build the session of `pm`'s graph with the initializers `names` turned into inputs. The graph is read (copied and
 * encoded) synchronously, before the returned promise first yields: a caller may edit `pm.proto` for this session
 * and restore it right after the call (search/structured-fitness.ts does).
 */
export async function weightFedSession(pm: PrunableModel, names: Iterable<string>, options: WeightFedOptions = {}): Promise<WeightFedSession> {
  const asInputs = new Set(names);
  const base: ModelProto = hasExternalData(pm.proto) ? inlinedModel(pm.proto, path.dirname(pm.source.onnxPath)) : pm.proto;
  const g = base.graph;
  const initByName = new Map(g.initializer.map((t) => [t.name!, t]));
  const valueInfos: ValueInfoProto[] = [];
  const inputs: WeightInput[] = [];
  for (const name of asInputs) {
    const t = initByName.get(name);
    if (!t) throw new DsaPruneError(`initializer ${name} not found in ${pm.source.onnxPath}`, { code: 'invalid-model' });
    const dims = tensorDims(t);
    valueInfos.push({ name, type: { tensor_type: { elem_type: t.data_type, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } });
    inputs.push({ name, dims, fp16: t.data_type === DataType.FLOAT16 });
  }
  const proto: ModelProto = {
    ...base,
    graph: { ...g, initializer: g.initializer.filter((t) => !asInputs.has(t.name!)), input: [...g.input, ...valueInfos] },
  };
  const raw = await ort.InferenceSession.create(encodeModel(proto), {
    executionProviders: ['cpu'], intraOpNumThreads: options.threads ?? 1, interOpNumThreads: 1, logSeverityLevel: 3,
  });
  const byName = new Map(inputs.map((i) => [i.name, i]));
  const feeds: Record<string, ort.Tensor> = {};
  const session = {
    inputNames: raw.inputNames.filter((n) => !asInputs.has(n)),
    outputNames: raw.outputNames,
    inputMetadata: raw.inputMetadata.filter((m) => !asInputs.has(m.name)),
    outputMetadata: raw.outputMetadata,
    run: (f: Record<string, ort.Tensor>, fetches?: string[]) => {
      for (const i of inputs) {
        if (!feeds[i.name]) throw new DsaPruneError(`weight input ${i.name} was never set`, { code: 'internal' });
      }
      return fetches ? raw.run({ ...f, ...feeds }, fetches) : raw.run({ ...f, ...feeds });
    },
  } as unknown as DecoderSession;
  return {
    session,
    inputs,
    setWeight(name, values) {
      const i = byName.get(name);
      if (!i) throw new DsaPruneError(`${name} is not a weight input of this session`, { code: 'internal' });
      const n = i.dims.reduce((a, b) => a * b, 1);
      if (values.length !== n) throw new DsaPruneError(`weight input ${name}: ${values.length} values, expected ${n} (${i.dims.join('×')})`, { code: 'internal' });
      feeds[name] = i.fp16 ? new ort.Tensor('float16', float32ToFp16(values), i.dims) : new ort.Tensor('float32', values, i.dims);
    },
    release: () => raw.release(),
  };
}
