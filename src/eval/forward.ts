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
import { DsaPruneError, throwIfAborted as throwIfAbortedWith } from '../errors.js';
import { fp16ToFloat32 } from '../model/onnx.js';

export { sessionOf, buildFeeds, type DecoderSession, type CausalLMLike, type PastState, type FeedOptions } from '../model/feeds.js';
import { buildFeeds, type DecoderSession, type FeedOptions } from '../model/feeds.js';

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

/** Throw the one abort error (code `aborted`, exit 130) when the signal has fired. */
export function throwIfAborted(signal?: AbortSignal): void {
  throwIfAbortedWith(signal, 'aborted');
}
