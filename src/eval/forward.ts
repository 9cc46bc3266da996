/**
 * Plain forward passes through any decoder ONNX session (transformers.js / optimum exports with or without KV-cache
 * I/O, onnxruntime-genai exports): feeds built from the session's input metadata, only `logits` fetched (present.*
 * are never copied to JS), and next-token log-probabilities reduced in float64 right after each run so the caller
 * never holds more than one sub-batch of logits.
 *
 * The session is always passed in (or read from `model.sessions.model` at call time): other parts of the project
 * swap that session in place after pruning, so nothing here caches it.
 */
import * as ort from 'onnxruntime-node';
import { DsaPruneError } from '../errors.js';
import { fp16ToFloat32 } from '../model/onnx.js';

/** The part of an onnxruntime InferenceSession used here (onnxruntime-node's session satisfies it). */
export type DecoderSession = Pick<ort.InferenceSession, 'inputNames' | 'outputNames' | 'run'> & {
  readonly inputMetadata?: readonly ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata?: readonly ort.InferenceSession.ValueMetadata[];
};

/** A transformers.js causal LM (or anything holding its session the same way). */
export interface CausalLMLike {
  sessions: { model: DecoderSession } | Record<string, DecoderSession>;
  config?: Record<string, unknown>;
}

/** The decoder session of `model`, read now (never cache it: pruning swaps it in place). */
export function sessionOf(model: CausalLMLike | DecoderSession): DecoderSession {
  if ('run' in model && typeof model.run === 'function') return model as DecoderSession;
  const s = (model as CausalLMLike).sessions?.model as DecoderSession | undefined;
  if (!s) {
    throw new DsaPruneError('the model has no `sessions.model` decoder session', {
      hint: 'load it with AutoModelForCausalLM.from_pretrained(dir, { dtype: "fp32" }) from @huggingface/transformers',
    });
  }
  return s;
}

type TensorType = ort.Tensor.Type;

function inputMeta(session: DecoderSession, name: string): ort.InferenceSession.TensorValueMetadata | undefined {
  const m = session.inputMetadata?.find((x) => x.name === name);
  return m && m.isTensor ? (m as ort.InferenceSession.TensorValueMetadata) : undefined;
}

/** Element type of an input (int64 when the metadata is missing, as transformers.js exports use). */
function inputType(session: DecoderSession, name: string, dflt: TensorType): TensorType {
  return (inputMeta(session, name)?.type as TensorType | undefined) ?? dflt;
}

function intTensor(type: TensorType, values: ArrayLike<number> | ArrayLike<bigint>, dims: number[]): ort.Tensor {
  const n = values.length;
  if (type === 'int64') {
    const a = new BigInt64Array(n);
    if (values instanceof BigInt64Array) a.set(values);
    else for (let i = 0; i < n; i++) a[i] = BigInt((values as ArrayLike<number>)[i]!);
    return new ort.Tensor('int64', a, dims);
  }
  if (type === 'int32') {
    const a = new Int32Array(n);
    if (values instanceof BigInt64Array) for (let i = 0; i < n; i++) a[i] = Number(values[i]!);
    else a.set(values as ArrayLike<number>);
    return new ort.Tensor('int32', a, dims);
  }
  throw new DsaPruneError(`unsupported integer input type ${type} in the decoder session`);
}

/** Shape [kvHeads, headDim] of a past_key_values input, from its metadata, else from the model config. */
function kvShape(session: DecoderSession, name: string, config?: Record<string, unknown>): [number, number] {
  const dims = inputMeta(session, name)?.shape;
  let heads = dims && typeof dims[1] === 'number' ? (dims[1] as number) : undefined;
  let headDim = dims && typeof dims[3] === 'number' ? (dims[3] as number) : undefined;
  if (config) {
    const nh = Number(config.num_attention_heads ?? config.n_head ?? NaN);
    heads ??= Number(config.num_key_value_heads ?? nh);
    headDim ??= Number(config.head_dim ?? Number(config.hidden_size ?? config.n_embd) / nh);
  }
  if (!Number.isFinite(heads) || !Number.isFinite(headDim)) {
    throw new DsaPruneError(`cannot tell the shape of KV-cache input ${name}: symbolic in the graph and no config given`, {
      hint: 'pass the model (with its config) rather than a bare session',
    });
  }
  return [heads!, headDim!];
}

/** Optional past state for a forward: tensors keyed by `past_key_values.*` input names, all of length `length`. */
export interface PastState {
  tensors: Record<string, ort.Tensor>;
  length: number;
}

/** Options of buildFeeds / forwardLogits. */
export interface FeedOptions {
  /** [batch × (pastLength + seqlen)] 0/1 mask; default all ones. */
  attentionMask?: Uint8Array;
  /** KV cache from a previous run (present.* outputs renamed to past_key_values.*); default empty. */
  past?: PastState;
  /** Model config, used when KV shapes are symbolic in the graph. */
  config?: Record<string, unknown>;
}

/**
 * Feeds for one forward of `ids` [batch × seqlen] through any decoder session: input_ids, attention_mask,
 * position_ids (when the graph has them; positions continue after the past; padded slots get position 1 as
 * transformers does), empty past KV tensors [batch, kvHeads, 0, headDim] (when the graph has KV inputs and no past
 * is given), `use_cache_branch` / `num_logits_to_keep` when present.
 */
export function buildFeeds(
  session: DecoderSession,
  ids: Int32Array | BigInt64Array,
  batch: number,
  seqlen: number,
  options: FeedOptions = {},
): Record<string, ort.Tensor> {
  if (ids.length !== batch * seqlen) {
    throw new DsaPruneError(`forward: ${ids.length} ids do not make a [${batch} × ${seqlen}] batch`);
  }
  const pastLen = options.past?.length ?? 0;
  const total = pastLen + seqlen;
  const mask = options.attentionMask;
  if (mask && mask.length !== batch * total) {
    throw new DsaPruneError(`forward: attention mask has ${mask.length} entries, expected ${batch} × ${total}`);
  }
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of session.inputNames) {
    if (name === 'input_ids') {
      feeds[name] = intTensor(inputType(session, name, 'int64'), ids, [batch, seqlen]);
    } else if (name === 'attention_mask') {
      const m = new Int32Array(batch * total);
      if (mask) m.set(mask);
      else m.fill(1);
      feeds[name] = intTensor(inputType(session, name, 'int64'), m, [batch, total]);
    } else if (name === 'position_ids') {
      const p = new Int32Array(batch * seqlen);
      for (let b = 0; b < batch; b++) {
        // Position = number of attended tokens before this one (cumsum(mask) - 1), as transformers computes it.
        let pos = 0;
        if (mask) for (let t = 0; t < pastLen; t++) pos += mask[b * total + t]!;
        else pos = pastLen;
        for (let t = 0; t < seqlen; t++) {
          const on = mask ? mask[b * total + pastLen + t]! : 1;
          p[b * seqlen + t] = on ? pos : 1;
          pos += on;
        }
      }
      feeds[name] = intTensor(inputType(session, name, 'int64'), p, [batch, seqlen]);
    } else if (name.startsWith('past_key_values.') || name.startsWith('past_key.') || name.startsWith('past_value.')) {
      const given = options.past?.tensors[name];
      if (given) {
        feeds[name] = given;
        continue;
      }
      if (pastLen > 0) throw new DsaPruneError(`forward: past state lacks ${name}`);
      const [heads, headDim] = kvShape(session, name, options.config);
      const type = inputType(session, name, 'float32');
      const empty = type === 'float16' ? new Uint16Array(0) : new Float32Array(0);
      feeds[name] = new ort.Tensor(type as 'float32', empty as Float32Array, [batch, heads, 0, headDim]);
    } else if (name === 'use_cache_branch') {
      feeds[name] = new ort.Tensor('bool', new Uint8Array([pastLen > 0 ? 1 : 0]), [1]);
    } else if (name === 'num_logits_to_keep' || name === 'logits_to_keep') {
      feeds[name] = new ort.Tensor('int64', new BigInt64Array([0n]), []);
    } else {
      throw new DsaPruneError(`forward: the decoder graph has an input "${name}" this tool does not know how to fill`, {
        hint: 'supported inputs: input_ids, attention_mask, position_ids, past_key_values.*, use_cache_branch, num_logits_to_keep',
      });
    }
  }
  return feeds;
}

/** Logits of one forward: data [batch × seqlen × vocab] (float32, row-major). */
export interface Logits {
  data: Float32Array;
  batch: number;
  seqlen: number;
  vocab: number;
}

function toFloat32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') {
    const d = t.data as unknown;
    if (d instanceof Uint16Array) return fp16ToFloat32(d);
    return Float32Array.from(d as ArrayLike<number>);
  }
  throw new DsaPruneError(`forward: logits have type ${t.type}, expected float32 or float16`);
}

/** Name of the logits output of a decoder session. */
function logitsName(session: DecoderSession): string {
  if (session.outputNames.includes('logits')) return 'logits';
  const first = session.outputNames[0];
  if (!first) throw new DsaPruneError('forward: the decoder session has no outputs');
  return first;
}

/**
 * One forward of `ids` [batch × seqlen]; returns the logits (only `logits` is fetched). With `fetchPresent`, the
 * present.* outputs are returned too, renamed to the matching past_key_values.* input names.
 */
export async function forwardLogits(
  session: DecoderSession,
  ids: Int32Array | BigInt64Array,
  batch: number,
  seqlen: number,
  options: FeedOptions & { fetchPresent?: boolean } = {},
): Promise<Logits & { present?: Record<string, ort.Tensor> }> {
  const feeds = buildFeeds(session, ids, batch, seqlen, options);
  const lname = logitsName(session);
  const fetches = [lname];
  const presentMap: [string, string][] = [];
  if (options.fetchPresent) {
    for (const out of session.outputNames) {
      const m = /^present[._](.*)$/.exec(out);
      if (!m) continue;
      const suffix = m[1]!;
      const input = session.inputNames.find((n) => n === `past_key_values.${suffix}` || n === `past_${suffix}`);
      if (input) {
        fetches.push(out);
        presentMap.push([out, input]);
      }
    }
  }
  const out = await session.run(feeds, fetches);
  const lt = out[lname]!;
  const dims = lt.dims;
  const vocab = dims[dims.length - 1]!;
  const result: Logits & { present?: Record<string, ort.Tensor> } = { data: toFloat32(lt), batch, seqlen, vocab };
  if (dims.length !== 3 || dims[0] !== batch || dims[1] !== seqlen) {
    throw new DsaPruneError(`forward: logits have shape [${dims.join(', ')}], expected [${batch}, ${seqlen}, vocab]`, {
      hint: 'the graph may keep only the last logits (num_logits_to_keep); export it with full logits',
    });
  }
  if (options.fetchPresent) {
    result.present = {};
    for (const [o, i] of presentMap) result.present[i] = out[o]!;
  }
  return result;
}

/**
 * log softmax(row)[target] of one logits row, in float64: row[target] − max − log Σ exp(row − max).
 */
export function logProbAt(logits: Float32Array, offset: number, vocab: number, target: number): number {
  let max = -Infinity;
  const end = offset + vocab;
  for (let i = offset; i < end; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = offset; i < end; i++) sum += Math.exp(logits[i]! - max);
  return logits[offset + target]! - max - Math.log(sum);
}

/** Index of the largest entry of one logits row (first on ties). */
export function argmaxAt(logits: Float32Array, offset: number, vocab: number): number {
  let best = 0;
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) {
    const v = logits[offset + i]!;
    if (v > max) {
      max = v;
      best = i;
    }
  }
  return best;
}

/** Vocabulary size of a decoder, from the logits output metadata or the config; undefined if neither tells. */
export function vocabSize(session: DecoderSession, config?: Record<string, unknown>): number | undefined {
  const meta = session.outputMetadata?.find((m) => m.name === logitsName(session));
  const shape = meta && meta.isTensor ? (meta as ort.InferenceSession.TensorValueMetadata).shape : undefined;
  const last = shape?.[shape.length - 1];
  if (typeof last === 'number' && last > 0) return last;
  const v = Number(config?.vocab_size);
  return Number.isFinite(v) && v > 0 ? v : undefined;
}

/** Default budget of logits held in JS at once (bytes): sub-batches are sized so batch·seqlen·vocab·4 stays under it. */
export const DEFAULT_LOGITS_BUDGET = 256 * 1024 * 1024;

/**
 * Tokens per forward the automatic batch size aims at. Measured on stories260k / 2 cores: one 512-token row per run
 * was fastest (21.7k tok/s) and 32 rows per run 2.8× slower (attention scratch [batch, heads, T, T] spills the
 * caches), so long windows run alone and only short sequences (zero-shot choices) are packed.
 */
export const TOKENS_PER_RUN = 512;

/** Rows per forward: about TOKENS_PER_RUN tokens, float32 logits [batch × seqlen × vocab] under `budget` bytes, ≥ 1. */
export function autoBatchSize(seqlen: number, vocab: number | undefined, budget = DEFAULT_LOGITS_BUDGET, max = 64): number {
  let b = Math.max(1, Math.floor(TOKENS_PER_RUN / seqlen));
  if (vocab) b = Math.min(b, Math.floor(budget / (seqlen * vocab * 4)));
  return Math.max(1, Math.min(max, b));
}

/**
 * Next-token NLL of `rows` sequences of `seqlen` tokens (`ids` row-major [rows × seqlen]): returns
 * [rows × (seqlen − 1)] float64, entry (r, t) = −log p(ids[r, t+1] | ids[r, 0..t]). Runs in sub-batches of
 * `batchSize` rows (default: from the logits budget), so the logits never exceed one sub-batch.
 */
export async function tokenNll(
  session: DecoderSession,
  ids: Int32Array,
  rows: number,
  seqlen: number,
  options: { batchSize?: number; config?: Record<string, unknown>; signal?: AbortSignal; onBatch?: (doneRows: number) => void } = {},
): Promise<Float64Array> {
  const out = new Float64Array(rows * (seqlen - 1));
  const bs = options.batchSize ?? autoBatchSize(seqlen, vocabSize(session, options.config));
  for (let r0 = 0; r0 < rows; r0 += bs) {
    throwIfAborted(options.signal);
    const b = Math.min(bs, rows - r0);
    const chunk = ids.subarray(r0 * seqlen, (r0 + b) * seqlen);
    const { data, vocab } = await forwardLogits(session, chunk, b, seqlen, { config: options.config });
    for (let i = 0; i < b; i++) {
      for (let t = 0; t < seqlen - 1; t++) {
        const target = chunk[i * seqlen + t + 1]!;
        out[(r0 + i) * (seqlen - 1) + t] = -logProbAt(data, (i * seqlen + t) * vocab, vocab, target);
      }
    }
    options.onBatch?.(r0 + b);
  }
  return out;
}

/** Throw the CLI's "aborted" error (exit code 130) when the signal has fired. */
export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new DsaPruneError('aborted', { exitCode: 130 });
}
