/**
 * KL divergence of a model's next-token distribution to a reference (dense) model's, from the reference's top-k
 * probabilities cached once (EvoPress's fitness, with the tail kept as one bucket):
 *
 *   KL(p ‖ q) at one position = Σ_{i ∈ top-k(p)} p_i (log p_i − log q_i) + p_rest (log p_rest − log q_rest),
 *   p_rest = Σ_{j ∉ top-k} p_j,  q_rest = Σ_{j ∉ top-k} q_j,
 *
 * i.e. the exact KL between the two distributions coarsened to k + 1 outcomes (the k dense favourites and
 * "anything else"). By the log-sum inequality it is ≤ the full KL, and equal to it when k ≥ vocab. Positions: the
 * seqlen − 1 positions of each window that perplexity scores (a next token follows them). Sums in float64;
 * q_rest summed over the tail entries themselves (no 1 − Σ cancellation).
 *
 * Memory of the cache: positions · k · 12 bytes (int32 index + float64 log-probability) + positions · 8 (log p_rest);
 * e.g. 16 windows × 511 positions × k = 256: 25 MB. `createTopKCache` refuses a cache above `maxBytes` (default
 * 512 MiB) before any forward, with the numbers.
 */
import { DsaPruneError } from '../errors.js';
import { autoBatchSize, forwardLogits, throwIfAborted, vocabSize, type DecoderSession } from './forward.js';

/** The dense model's top-k next-token log-probabilities at every scored position of the windows. */
export interface TopKCache {
  k: number;
  rows: number;
  seqlen: number;
  vocab: number;
  /** [positions × k] token ids, positions = rows · (seqlen − 1). */
  index: Int32Array;
  /** [positions × k] log p of those tokens (float64). */
  logp: Float64Array;
  /** [positions] log p_rest (−Infinity when the top-k hold all the mass). */
  logRest: Float64Array;
  /** Bytes of the three arrays. */
  bytes: number;
}

export interface TopKOptions {
  /** Tokens kept per position (default 256; clipped to the vocabulary). */
  k?: number;
  /** Rows per onnxruntime run (default: from the logits budget). */
  batchSize?: number;
  config?: Record<string, unknown>;
  /** Refuse a cache above this many bytes (default 512 MiB). */
  maxBytes?: number;
  signal?: AbortSignal;
}

export const DEFAULT_KL_TOP_K = 256;
export const DEFAULT_KL_MAX_BYTES = 512 * 1024 * 1024;

/** Bytes a top-k cache of `positions` positions takes. */
export function topKCacheBytes(positions: number, k: number): number {
  return positions * k * 12 + positions * 8;
}

/** Indices of the k largest entries of row [offset, offset + vocab) (ties: lower index first), into `out`. */
function topK(logits: Float32Array, offset: number, vocab: number, k: number, scratch: Float32Array, out: Int32Array, outOff: number): void {
  if (k >= vocab) {
    for (let i = 0; i < vocab; i++) out[outOff + i] = i;
    return;
  }
  // k-th largest value by quickselect on a copy, then collect > threshold, then ties in index order.
  scratch.set(logits.subarray(offset, offset + vocab));
  let lo = 0;
  let hi = vocab - 1;
  const want = k - 1; // position in descending order
  while (lo < hi) {
    const pivot = scratch[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (scratch[i]! > pivot) i++;
      while (scratch[j]! < pivot) j--;
      if (i <= j) {
        const t = scratch[i]!;
        scratch[i] = scratch[j]!;
        scratch[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else break;
  }
  const thr = scratch[want]!;
  let n = 0;
  for (let v = 0; v < vocab && n < k; v++) if (logits[offset + v]! > thr) out[outOff + n++] = v;
  for (let v = 0; v < vocab && n < k; v++) if (logits[offset + v]! === thr) out[outOff + n++] = v;
}

/** log Σ exp(row) in float64 (max-shifted). */
function logSumExp(logits: Float32Array, offset: number, vocab: number): number {
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) if (logits[offset + i]! > max) max = logits[offset + i]!;
  let s = 0;
  for (let i = 0; i < vocab; i++) s += Math.exp(logits[offset + i]! - max);
  return max + Math.log(s);
}

/**
 * Forward `ids` [rows × seqlen] through the (dense) `session` once and keep, at every scored position, the top-k
 * log-probabilities and the log of the remaining mass.
 */
export async function createTopKCache(session: DecoderSession, ids: Int32Array, rows: number, seqlen: number, o: TopKOptions = {}): Promise<TopKCache> {
  const positions = rows * (seqlen - 1);
  const vocabHint = vocabSize(session, o.config);
  const k0 = o.k ?? DEFAULT_KL_TOP_K;
  if (!Number.isInteger(k0) || k0 < 1) throw new DsaPruneError(`KL top-k must be an integer ≥ 1, got ${k0}`, { hint: 'use --kl-top-k 256 (the default)' });
  const kEst = vocabHint ? Math.min(k0, vocabHint) : k0;
  const bytes = topKCacheBytes(positions, kEst);
  const maxBytes = o.maxBytes ?? DEFAULT_KL_MAX_BYTES;
  if (bytes > maxBytes) {
    throw new DsaPruneError(
      `the KL fitness cache needs ${(bytes / 2 ** 20).toFixed(0)} MiB (${positions} positions × top-${kEst} × 12 bytes), above the ${(maxBytes / 2 ** 20).toFixed(0)} MiB limit`,
      { hint: 'use a smaller --kl-top-k, fewer --search-windows or a shorter --search-seqlen' },
    );
  }
  const bs = o.batchSize ?? autoBatchSize(seqlen, vocabHint);
  let cache: TopKCache | undefined;
  let scratch = new Float32Array(0);
  let mask = new Uint8Array(0);
  for (let r0 = 0; r0 < rows; r0 += bs) {
    throwIfAborted(o.signal);
    const b = Math.min(bs, rows - r0);
    const { data, vocab } = await forwardLogits(session, ids.subarray(r0 * seqlen, (r0 + b) * seqlen), b, seqlen, { config: o.config });
    if (!cache) {
      const k = Math.min(k0, vocab);
      cache = {
        k, rows, seqlen, vocab, index: new Int32Array(positions * k), logp: new Float64Array(positions * k), logRest: new Float64Array(positions),
        bytes: topKCacheBytes(positions, k),
      };
      scratch = new Float32Array(vocab);
      mask = new Uint8Array(vocab);
    }
    const { k } = cache;
    for (let i = 0; i < b; i++) {
      for (let t = 0; t < seqlen - 1; t++) {
        const p = (r0 + i) * (seqlen - 1) + t;
        const off = (i * seqlen + t) * vocab;
        topK(data, off, vocab, k, scratch, cache.index, p * k);
        const lse = logSumExp(data, off, vocab);
        for (let j = 0; j < k; j++) {
          const v = cache.index[p * k + j]!;
          cache.logp[p * k + j] = data[off + v]! - lse;
          mask[v] = 1;
        }
        let rest = 0;
        for (let v = 0; v < vocab; v++) if (!mask[v]) rest += Math.exp(data[off + v]! - lse);
        cache.logRest[p] = Math.log(rest);
        for (let j = 0; j < k; j++) mask[cache.index[p * k + j]!] = 0;
      }
    }
  }
  return cache!;
}

export interface KlResult {
  /** Mean over positions of KL(dense ‖ model), nats. */
  kl: number;
  positions: number;
}

/** Mean KL(dense ‖ model) over the cached positions, from forwards of `session` on the same `ids`. */
export async function klToCache(
  session: DecoderSession,
  ids: Int32Array,
  cache: TopKCache,
  o: {
    batchSize?: number; config?: Record<string, unknown>; signal?: AbortSignal;
    /** Only the first `rows` windows of the cache. */ rows?: number;
    /** Only these windows of the cache (indices in [0, cache.rows), scored in this order); overrides `rows`. */ windows?: readonly number[];
  } = {},
): Promise<KlResult> {
  const { seqlen, k } = cache;
  const idx = o.windows ?? Array.from({ length: Math.max(1, Math.min(cache.rows, o.rows ?? cache.rows)) }, (_, i) => i);
  for (const w of idx) {
    if (!Number.isInteger(w) || w < 0 || w >= cache.rows) throw new DsaPruneError(`KL: window ${w} is not one of the ${cache.rows} cached windows`, { code: 'internal' });
  }
  const rows = idx.length;
  const bs = o.batchSize ?? autoBatchSize(seqlen, cache.vocab);
  const mask = new Uint8Array(cache.vocab);
  // exp(logit − max) of one position, computed once for the log-sum-exp and reused for the tail bucket.
  const ex = new Float64Array(cache.vocab);
  // Windows that are not consecutive are copied into one batch.
  const batchIds = new Int32Array(Math.min(bs, rows) * seqlen);
  let sum = 0;
  for (let r0 = 0; r0 < rows; r0 += bs) {
    throwIfAborted(o.signal);
    const b = Math.min(bs, rows - r0);
    let input: Int32Array;
    if (idx.slice(r0, r0 + b).every((w, i) => w === idx[r0]! + i)) input = ids.subarray(idx[r0]! * seqlen, (idx[r0]! + b) * seqlen);
    else {
      for (let i = 0; i < b; i++) batchIds.set(ids.subarray(idx[r0 + i]! * seqlen, (idx[r0 + i]! + 1) * seqlen), i * seqlen);
      input = batchIds.subarray(0, b * seqlen);
    }
    const { data, vocab } = await forwardLogits(session, input, b, seqlen, { config: o.config });
    if (vocab !== cache.vocab) throw new DsaPruneError(`KL: the model has ${vocab} logits, the dense cache ${cache.vocab}`);
    for (let i = 0; i < b; i++) {
      for (let t = 0; t < seqlen - 1; t++) {
        const p = idx[r0 + i]! * (seqlen - 1) + t;
        const off = (i * seqlen + t) * vocab;
        // log Σ exp(row), summed in the order of logSumExp (same value), keeping each exp(x − max): one exp per entry.
        let max = -Infinity;
        for (let v = 0; v < vocab; v++) if (data[off + v]! > max) max = data[off + v]!;
        let se = 0;
        for (let v = 0; v < vocab; v++) {
          const e = Math.exp(data[off + v]! - max);
          ex[v] = e;
          se += e;
        }
        const lse = max + Math.log(se);
        let kl = 0;
        for (let j = 0; j < k; j++) {
          const v = cache.index[p * k + j]!;
          const lp = cache.logp[p * k + j]!;
          kl += Math.exp(lp) * (lp - (data[off + v]! - lse));
          mask[v] = 1;
        }
        const lr = cache.logRest[p]!;
        if (lr > -Infinity) {
          // q_rest = Σ_tail exp(x − max) / Σ exp(x − max), summed over the tail entries themselves (no 1 − Σ cancellation).
          let rest = 0;
          for (let v = 0; v < vocab; v++) if (!mask[v]) rest += ex[v]!;
          kl += Math.exp(lr) * (lr - (Math.log(rest) - Math.log(se)));
        }
        for (let j = 0; j < k; j++) mask[cache.index[p * k + j]!] = 0;
        sum += kl;
      }
    }
  }
  const positions = rows * (seqlen - 1);
  return { kl: sum / positions, positions };
}
