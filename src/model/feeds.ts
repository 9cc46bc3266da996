/**
 * Feeds for a decoder ONNX session, built from the session's own input metadata: input_ids, attention_mask,
 * position_ids, empty or given past_key_values.*, use_cache_branch, num_logits_to_keep. In model/ because both the
 * calibration runner and the evaluation forward passes build them (calibration stands below eval).
 */
import * as ort from 'onnxruntime-node';
import { DsaPruneError } from '../errors.js';

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
