/**
 * Log-likelihood of continuations given contexts, the primitive of every zero-shot task (as lm-evaluation-harness's
 * `loglikelihood`): for each request, Σ log p(continuation token | everything before it), and whether every
 * continuation token is the greedy (argmax) choice.
 *
 * Work sharing:
 * - requests of one group (the choices of one question) that share a long token prefix run the prefix once and the
 *   choices as one batch on its KV cache (decoders with past_key_values inputs);
 * - everything else is packed across groups into right-padded batches, longest first (as lm-eval sorts), so short
 *   items (BLiMP, COPA) cost one forward per ~512 tokens rather than one per sentence.
 */
import * as ort from 'onnxruntime-node';
import { DsaPruneError } from '../errors.js';
import type { ProgressCallback } from '../types.js';
import type { TextTokenizer } from '../data/text.js';
import {
  argmaxAt,
  autoBatchSize,
  forwardLogits,
  logProbAt,
  sessionOf,
  throwIfAborted,
  vocabSize,
  type CausalLMLike,
  type DecoderSession,
  type PastState,
} from './forward.js';

/** One token-level request: score ids[contStart..] given ids[..contStart). */
export interface ScoreRequest {
  ids: Int32Array;
  /** Index of the first continuation token (≥ 1). */
  contStart: number;
  /** Requests with the same group (the choices of one question) may share their prefix's forward. */
  group?: number;
}

/** Log-likelihood of one request's continuation. */
export interface ScoreResult {
  /** Σ of the continuation tokens' log-probabilities (natural log). */
  logprob: number;
  /** Every continuation token is the argmax of its distribution. */
  greedy: boolean;
}

/** Options of scoreSequences(). */
export interface ScoreOptions {
  /** Rows per forward of the packed path; default about 512 tokens per run (see TOKENS_PER_RUN). */
  batchSize?: number;
  /** Longest sequence fed; longer requests lose tokens from the left (lm-eval does the same). Default: config context length. */
  maxLength?: number;
  /** Shared prefix (tokens) from which a group runs its prefix once and reuses the KV cache; default 32. */
  minSharedPrefix?: number;
  /** Disable KV-cache prefix sharing (every request goes through the packed path). */
  noKvReuse?: boolean;
  signal?: AbortSignal;
  /** Progress: phase "score", fraction of requests done. */
  onProgress?: ProgressCallback;
}

function hasKvInputs(session: DecoderSession): boolean {
  return session.inputNames.some((n) => n.startsWith('past_key_values.'));
}

/** Add the log-probs of targets ids[from..to) read from logits rows (rowOf(t) gives the row predicting ids[t]). */
function accumulate(
  res: ScoreResult,
  ids: Int32Array,
  from: number,
  to: number,
  data: Float32Array,
  vocab: number,
  rowOf: (t: number) => number,
): void {
  for (let t = from; t < to; t++) {
    const off = rowOf(t) * vocab;
    const target = ids[t]!;
    res.logprob += logProbAt(data, off, vocab, target);
    if (res.greedy && argmaxAt(data, off, vocab) !== target) res.greedy = false;
  }
}

/** Tile a [1, …] tensor along the batch axis to [b, …]. */
function tileBatch(t: ort.Tensor, b: number): ort.Tensor {
  if (b === 1) return t;
  const src = t.data as Float32Array | Uint16Array;
  const dst = new (src.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(src.length * b);
  for (let i = 0; i < b; i++) dst.set(src, i * src.length);
  return new ort.Tensor(t.type as 'float32', dst as Float32Array, [b, ...t.dims.slice(1)]);
}

/** Longest common prefix of the ids of `reqs`. */
function commonPrefix(reqs: ScoreRequest[]): number {
  const first = reqs[0]!.ids;
  let p = first.length;
  for (const r of reqs) {
    const n = Math.min(p, r.ids.length);
    let i = 0;
    while (i < n && r.ids[i] === first[i]) i++;
    p = i;
  }
  return p;
}

/**
 * Score token-level requests with `model` (its `sessions.model` read now). Results are in request order.
 */
export async function scoreSequences(model: CausalLMLike, requests: ScoreRequest[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
  const session = sessionOf(model);
  const vocab = vocabSize(session, model.config);
  const maxLen = options.maxLength ?? (Number(model.config?.max_position_embeddings ?? model.config?.n_positions) || Infinity);
  const reqs = requests.map((r, i) => {
    if (!(r.contStart >= 1 && r.contStart < r.ids.length + 1)) {
      throw new DsaPruneError(`score: request ${i} has contStart ${r.contStart} outside [1, ${r.ids.length}]`);
    }
    if (r.ids.length > maxLen) {
      const drop = r.ids.length - maxLen;
      return { ids: r.ids.subarray(drop), contStart: Math.max(1, r.contStart - drop), group: r.group };
    }
    return r;
  });
  const results: ScoreResult[] = reqs.map(() => ({ logprob: 0, greedy: true }));
  let done = 0;
  const progress = (k: number) => {
    done += k;
    options.onProgress?.({ phase: 'score', fraction: done / Math.max(1, reqs.length) });
  };

  // Groups eligible for prefix sharing.
  const packed: number[] = [];
  const groups = new Map<number, number[]>();
  reqs.forEach((r, i) => {
    if (r.group === undefined) packed.push(i);
    else {
      const g = groups.get(r.group);
      if (g) g.push(i);
      else groups.set(r.group, [i]);
    }
  });
  const kv = !options.noKvReuse && hasKvInputs(session);
  const minShared = options.minSharedPrefix ?? 32;
  const shared: { idx: number[]; prefix: number }[] = [];
  for (const idx of groups.values()) {
    if (kv && idx.length >= 2) {
      const members = idx.map((i) => reqs[i]!);
      const p = Math.min(commonPrefix(members), ...members.map((m) => m.ids.length - 1));
      if (p >= minShared) {
        shared.push({ idx, prefix: p });
        continue;
      }
    }
    packed.push(...idx);
  }

  // Packed path: longest first, right-padded batches.
  packed.sort((a, b) => reqs[b]!.ids.length - reqs[a]!.ids.length || a - b);
  for (let k = 0; k < packed.length; ) {
    throwIfAborted(options.signal);
    const L = reqs[packed[k]!]!.ids.length;
    const bs = options.batchSize ?? autoBatchSize(L, vocab);
    const rows = packed.slice(k, k + bs);
    const b = rows.length;
    const ids = new Int32Array(b * L);
    const mask = new Uint8Array(b * L);
    rows.forEach((ri, r) => {
      const s = reqs[ri]!.ids;
      ids.set(s, r * L);
      mask.fill(1, r * L, r * L + s.length);
    });
    const { data, vocab: V } = await forwardLogits(session, ids, b, L, { attentionMask: mask, config: model.config });
    rows.forEach((ri, r) => {
      const q = reqs[ri]!;
      accumulate(results[ri]!, q.ids, q.contStart, q.ids.length, data, V, (t) => r * L + t - 1);
    });
    progress(b);
    k += b;
  }

  // Shared-prefix path: prefix once (keeping its KV cache), then the group's suffixes as one batch on that cache.
  for (const { idx, prefix: P } of shared) {
    throwIfAborted(options.signal);
    const head = reqs[idx[0]!]!.ids.subarray(0, P);
    const pre = await forwardLogits(session, head, 1, P, { config: model.config, fetchPresent: true });
    const V = pre.vocab;
    for (const ri of idx) {
      const q = reqs[ri]!;
      // Targets inside the prefix (continuation starting before the shared part ends), and the one right after it.
      accumulate(results[ri]!, q.ids, q.contStart, P + 1, pre.data, V, (t) => t - 1);
    }
    const rest = idx.filter((ri) => reqs[ri]!.ids.length > P + 1);
    if (rest.length > 0) {
      const L = Math.max(...rest.map((ri) => reqs[ri]!.ids.length - P));
      // Rows cost their new tokens (the prefix is only attended to): size the batch by L.
      const bs = options.batchSize ?? autoBatchSize(L, vocab);
      for (let k = 0; k < rest.length; k += bs) {
        const rows = rest.slice(k, k + bs);
        const b = rows.length;
        const ids = new Int32Array(b * L);
        const mask = new Uint8Array(b * (P + L));
        rows.forEach((ri, r) => {
          const s = reqs[ri]!.ids.subarray(P);
          ids.set(s, r * L);
          mask.fill(1, r * (P + L), r * (P + L) + P + s.length);
        });
        const past: PastState = { length: P, tensors: {} };
        for (const [name, t] of Object.entries(pre.present!)) past.tensors[name] = tileBatch(t, b);
        const { data } = await forwardLogits(session, ids, b, L, { attentionMask: mask, past, config: model.config });
        rows.forEach((ri, r) => {
          const q = reqs[ri]!;
          accumulate(results[ri]!, q.ids, Math.max(P + 1, q.contStart), q.ids.length, data, V, (t) => r * L + t - 1 - P);
        });
      }
    }
    progress(idx.length);
  }
  return results;
}

/** How text requests become token sequences. */
export interface EncodeOptions {
  /**
   * Start every sequence with the tokenizer's BOS token (default true: the sequence then looks like the start of a
   * document, as in training and in the perplexity protocol). false = lm-evaluation-harness's HF default: no BOS,
   * except that an empty context becomes the BOS token (or EOS when there is none).
   */
  bos?: boolean;
}

/** A tokenizer that can also tell its special tokens (transformers.js PreTrainedTokenizer satisfies it). */
export interface TaskTokenizer extends TextTokenizer {
  bos_token_id?: number | null;
  eos_token_id?: number | null;
  model_max_length?: number;
}

function specialId(tokenizer: TaskTokenizer, which: 'bos' | 'eos'): number | undefined {
  const v = which === 'bos' ? tokenizer.bos_token_id : tokenizer.eos_token_id;
  return typeof v === 'number' ? v : undefined;
}

/**
 * Tokenize (context, continuation) as lm-evaluation-harness does: trailing spaces of the context move to the
 * continuation; whole = encode(context + continuation), ctx = encode(context); continuation tokens = whole[|ctx|..];
 * the sequence is ctx + those tokens (with a BOS in front per `options.bos`).
 */
export function encodePair(tokenizer: TaskTokenizer, context: string, continuation: string, options: EncodeOptions = {}): ScoreRequest {
  const n = context.length - context.trimEnd().length;
  if (n > 0) {
    continuation = context.slice(context.length - n) + continuation;
    context = context.slice(0, context.length - n);
  }
  const noSpecial = { add_special_tokens: false };
  const whole = tokenizer.encode(context + continuation, noSpecial);
  const ctx = context === '' ? [] : tokenizer.encode(context, noSpecial);
  const cont = whole.slice(ctx.length);
  const bos = specialId(tokenizer, 'bos');
  const head: number[] = [];
  if (options.bos ?? true) {
    if (bos !== undefined) head.push(bos);
  }
  if (ctx.length === 0 && head.length === 0) {
    const prefix = bos ?? specialId(tokenizer, 'eos');
    if (prefix === undefined) throw new DsaPruneError('score: empty context and the tokenizer has neither BOS nor EOS to start from');
    head.push(prefix);
  }
  if (cont.length === 0) throw new DsaPruneError(`score: the continuation ${JSON.stringify(continuation)} has no tokens`);
  const ids = Int32Array.from([...head, ...ctx, ...cont]);
  return { ids, contStart: head.length + ctx.length };
}
