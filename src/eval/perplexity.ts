/**
 * Perplexity — the project's one implementation.
 *
 * Default (reference protocol, docs/evaluation.md): the text tokenized as one string, non-overlapping
 * windows of `seqlen` tokens from the start, remainder dropped, each window's mean NLL over its seqlen − 1
 * next-token targets, ppl = exp(mean of the window means). No BOS inserted per window; float64 accumulation.
 *
 * Strided (`stride` given): sliding windows of at most `seqlen` tokens starting every `stride` tokens (the
 * Hugging Face "perplexity of fixed-length models" recipe); each window scores only the tokens no earlier window
 * scored, with up to seqlen − 1 tokens of context; the last, shorter window reaches the end of the text, so with
 * stride < seqlen every token but the first is scored exactly once (with stride = seqlen the windows are disjoint and
 * each window's first token, having no context, is not scored — as in the reference protocol).
 * ppl = exp(total NLL / scored tokens) (token-weighted).
 */
import { DsaPruneError } from '../errors.js';
import type { ProgressCallback } from '../types.js';
import { tokenizeText, type TextTokenizer } from '../data/text.js';
import {
  autoBatchSize,
  forwardLogits,
  logProbAt,
  sessionOf,
  throwIfAborted,
  tokenNll,
  vocabSize,
  type CausalLMLike,
} from './forward.js';

/** Options of perplexity(). */
export interface PerplexityOptions {
  /** Window length in tokens (≥ 2). */
  seqlen: number;
  /** Sliding-window step (1 ≤ stride ≤ seqlen). Absent: the reference non-overlapping protocol. */
  stride?: number;
  /** Windows per forward; default about 512 tokens per run, logits (batch·seqlen·vocab·4 bytes) under 256 MB. */
  batchSize?: number;
  /** Evaluate only the first n windows (quick checks). */
  limitWindows?: number;
  /** Needed when `text` is a string: the model's tokenizer (the text is tokenized as one string). */
  tokenizer?: TextTokenizer;
  /** Progress: phase "perplexity", fraction of windows done. */
  onProgress?: ProgressCallback;
  /** Abort between batches (throws DsaPruneError with exit code 130). */
  signal?: AbortSignal;
}

/** Result of perplexity(). */
export interface PerplexityResult {
  ppl: number;
  /** Windows evaluated. */
  windows: number;
  /** Tokens fed through the model (windows × their lengths). */
  tokens: number;
  /** Next-token targets scored. */
  scored: number;
  /** Mean NLL (natural log) behind `ppl`. */
  nll: number;
  seconds: number;
  /** Tokens fed per second (`tokens / seconds`). */
  tokensPerSecond: number;
}

/**
 * Perplexity of `model` (a transformers.js causal LM; its `sessions.model` is read at call time) on `text`
 * (tokenized with `options.tokenizer`) or on already-tokenized `ids`.
 *
 * ```ts
 * const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'fp32' });
 * const tokenizer = await AutoTokenizer.from_pretrained(dir);
 * const { ppl } = await perplexity(model, await readTextFile('eval.txt'), { seqlen: 512, tokenizer });
 * ```
 */
export async function perplexity(
  model: CausalLMLike,
  text: string | ArrayLike<number>,
  options: PerplexityOptions,
): Promise<PerplexityResult> {
  let ids: Int32Array;
  if (typeof text === 'string') {
    if (!options.tokenizer) throw new DsaPruneError('perplexity: a tokenizer is needed to evaluate a string', { hint: 'pass { tokenizer } or token ids' });
    ids = tokenizeText(options.tokenizer, text);
  } else {
    ids = text instanceof Int32Array ? text : Int32Array.from(text);
  }
  const { seqlen } = options;
  if (!Number.isInteger(seqlen) || seqlen < 2) throw new DsaPruneError(`perplexity: seqlen must be an integer ≥ 2, got ${seqlen}`);
  if (options.stride !== undefined) {
    if (!Number.isInteger(options.stride) || options.stride < 1 || options.stride > seqlen) {
      throw new DsaPruneError(`perplexity: stride must be an integer in [1, seqlen = ${seqlen}], got ${options.stride}`);
    }
    return strided(model, ids, seqlen, options.stride, options);
  }
  return nonOverlapping(model, ids, seqlen, options);
}

function finish(sumNll: number, scored: number, windows: number, tokens: number, t0: number, meanOfMeans?: number): PerplexityResult {
  const seconds = (performance.now() - t0) / 1000;
  const nll = meanOfMeans ?? sumNll / scored;
  return { ppl: Math.exp(nll), nll, windows, tokens, scored, seconds, tokensPerSecond: tokens / seconds };
}

async function nonOverlapping(model: CausalLMLike, ids: Int32Array, seqlen: number, options: PerplexityOptions): Promise<PerplexityResult> {
  let n = Math.floor(ids.length / seqlen);
  if (n < 1) {
    throw new DsaPruneError(`perplexity: the text has ${ids.length} tokens, one window of seqlen ${seqlen} needs ${seqlen}`, {
      hint: 'use a longer text or a smaller --seqlen',
    });
  }
  if (options.limitWindows !== undefined) n = Math.min(n, Math.max(1, Math.floor(options.limitWindows)));
  const t0 = performance.now();
  const session = sessionOf(model);
  const nll = await tokenNll(session, ids.subarray(0, n * seqlen), n, seqlen, {
    batchSize: options.batchSize,
    config: model.config,
    signal: options.signal,
    onBatch: (done) => options.onProgress?.({ phase: 'perplexity', fraction: done / n }),
  });
  // Mean of window means, float64.
  let sumMeans = 0;
  for (let w = 0; w < n; w++) {
    let s = 0;
    for (let t = 0; t < seqlen - 1; t++) s += nll[w * (seqlen - 1) + t]!;
    sumMeans += s / (seqlen - 1);
  }
  return finish(0, n * (seqlen - 1), n, n * seqlen, t0, sumMeans / n);
}

/** One sliding window: tokens [begin, end), targets at positions ≥ from (absolute) are scored. */
interface Win {
  begin: number;
  end: number;
  from: number;
}

/** The sliding windows of the strided protocol (exported for tests). */
export function stridedWindows(total: number, seqlen: number, stride: number): Win[] {
  const wins: Win[] = [];
  let prevEnd = 0;
  for (let begin = 0; begin < total; begin += stride) {
    const end = Math.min(begin + seqlen, total);
    const from = Math.max(prevEnd, begin + 1);
    if (end - begin >= 2 && from < end) wins.push({ begin, end, from });
    prevEnd = end;
    if (end === total) break;
  }
  return wins;
}

async function strided(model: CausalLMLike, ids: Int32Array, seqlen: number, stride: number, options: PerplexityOptions): Promise<PerplexityResult> {
  let wins = stridedWindows(ids.length, seqlen, stride);
  if (wins.length === 0) throw new DsaPruneError(`perplexity: the text has ${ids.length} tokens, at least 2 are needed`);
  if (options.limitWindows !== undefined) wins = wins.slice(0, Math.max(1, Math.floor(options.limitWindows)));
  const t0 = performance.now();
  const session = sessionOf(model);
  let sumNll = 0;
  let scored = 0;
  let tokens = 0;
  let done = 0;
  // Full-length windows go in batches; the last, shorter one runs alone.
  let i = 0;
  while (i < wins.length) {
    throwIfAborted(options.signal);
    const len = wins[i]!.end - wins[i]!.begin;
    const bs = options.batchSize ?? autoBatchSize(len, vocabSize(session, model.config));
    let j = i;
    while (j < wins.length && j - i < bs && wins[j]!.end - wins[j]!.begin === len) j++;
    const b = j - i;
    const batchIds = new Int32Array(b * len);
    for (let k = 0; k < b; k++) batchIds.set(ids.subarray(wins[i + k]!.begin, wins[i + k]!.end), k * len);
    const { data, vocab } = await forwardLogits(session, batchIds, b, len, { config: model.config });
    for (let k = 0; k < b; k++) {
      const w = wins[i + k]!;
      for (let pos = w.from; pos < w.end; pos++) {
        const t = pos - w.begin; // target index inside the window; predicted from t − 1
        sumNll -= logProbAt(data, (k * len + t - 1) * vocab, vocab, batchIds[k * len + t]!);
        scored++;
      }
    }
    tokens += b * len;
    done += b;
    options.onProgress?.({ phase: 'perplexity', fraction: done / wins.length });
    i = j;
  }
  return finish(sumNll, scored, wins.length, tokens, t0);
}
