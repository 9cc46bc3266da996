/**
 * Peak memory of a prune, estimated before any work, and the refusal when it will not fit.
 *
 * The estimate (bytes) = runtime + weights at rest + max(session build, calibration working set):
 * - runtime: node + onnxruntime + transformers.js before a model is loaded (≈ 256 MiB measured);
 * - weights at rest: a model with external data holds ONE onnxruntime copy (1.0 × the weight bytes: measured 0.99 ×
 *   on the SmolLM2-135M shape, RSS after loading 876 MiB − 260 MiB before; session 7 — it was 0.9 ×, which put the
 *   resident set before calibration 61 MiB below the measured one): the decoded graph holds references only, pruned
 *   weights are spilled to a scratch file (src/model/spill.ts). An inline model (no external data) also holds the
 *   graph's copy: 2 ×;
 * - session build (at load and at commit, when no calibration buffer is alive): external data 0.18 × more (the commit
 *   frees the old session first and builds the new one from files; measured 0.17 × at load: high-water mark 984 MiB
 *   against 876 after it); inline 2 × more (the encoded bytes and the old session next to the new one; counted, not
 *   measured);
 * - calibration working set: the hidden states of all nsamples in and out of one block (2 × nsamples × seqlen × hidden
 *   × 4; sized by the calibration set, never by the model's context length), the activations of one onnxruntime run
 *   of a block (batch × seqlen × (2 × heads × seqlen + 3 × ffn) × 4: attention scores and softmax, gate, up and their
 *   product), one block's weights in float32 three times (read, pruned, written back);
 * - SparseGPT (Gram matrices) adds, for the block with the most Gram bytes: every distinct input's Gram matrix in float64
 *   (the calibration's accumulators, alive while the block is pruned) and in float32 (one onnxruntime run's output),
 *   and the solver's buffers for the widest linear (n inputs, r outputs): the cached Hinv (n² float64), the Gemm
 *   buffers of src/model/blas.ts (n²/2 + 256·n float64 for the Cholesky / inverse, r·128 + 128·n + 2·r·n float32 for
 *   the lazy update) and the sweep's buffers (21 bytes × r × 128); and a slack ({@link SPARSEGPT_SLACK}), fitted,
 *   not counted: SparseGPT's measured peak on the SmolLM2-135M shape is ≈ 300 MiB above Wanda's at 8 × 512 and
 *   32 × 512 alike, while its live buffers are ≈ 92 MiB; the rest grows block by block (freed buffers not yet
 *   collected or not returned to the OS) and is not explained yet (docs/scale.md);
 * - calibration with blockWeights 'initializers': one block session's copy of its weights ({@link BLOCK_SESSION_COPIES}).
 * Compared with the measured peak by the scale bench (docs/scale.md).
 * Available memory: MemAvailable of /proc/meminfo (else os.freemem()) plus what this process already holds (the loaded
 * model is part of the estimate), or `maxMemoryGB` when given.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { DsaPruneError } from '../errors.js';

export interface MemoryEstimate {
  peakBytes: number;
  terms: {
    runtime: number; weights: number; sessionBuild: number;
    hiddenStates: number; activations: number; blockWorkingSet: number; gram: number; solver: number; slack: number;
    /** blockWeights 'initializers': the weights of one block session (BLOCK_SESSION_COPIES × its stored bytes). */
    blockSession: number;
  };
  explanation: string;
}

export interface MemoryInputs {
  /** Bytes of all weights in their stored dtype (the graph's initializers). */
  weightBytes: number;
  /** The weights live in external data files (the decoded graph holds references, not bytes). Default true. */
  external?: boolean;
  hidden: number;
  nsamples: number;
  seqlen: number;
  /** Attention heads and MLP width (activations of one block run); 0 when unknown. */
  heads?: number;
  ffn?: number;
  /** Calibration sequences per onnxruntime run (default 8). */
  batch?: number;
  /** Float32 bytes of the largest block's pruned linears. */
  blockBytes: number;
  /** Widest linear input when the method builds Gram matrices, else 0. */
  gramDim: number;
  /**
   * Widths of the distinct linear inputs of the block with the most Gram bytes (linears sharing an input, q/k/v and
   * gate/up, share one Gram matrix); default [gramDim].
   */
  gramDims?: number[];
  /** Widest linear output (rows of the solver's buffers); default gramDim. */
  maxDOut?: number;
  /**
   * Bytes of the largest block's linears in their stored dtype, when the calibration block sessions take the weights
   * as initializers (blockWeights 'initializers'): onnxruntime copies them (and pre-packs the MatMul ones) into the
   * session of each pass; 0 or absent otherwise.
   */
  blockSessionWeightBytes?: number;
}

/** Node + onnxruntime + transformers.js before a model is loaded (measured 245–265 MiB, docs/scale.md). */
export const RUNTIME_BYTES = 256 * 2 ** 20;
/**
 * Slack on top of SparseGPT's Gram and solver terms: `fixed + factor × (gram + solver)`, fitted (not counted). Until
 * session 6 it was 252 MiB + 0.35 × (…), fitted to a build-up that turned out to be transformers.js reading the whole
 * weight file into an unread stream during the prune (fixed in src/model/load.ts; docs/scale.md). Refitted on one
 * measurement after the fix: SmolLM2-135M, 32 × 512, peak 1222 MiB against 1235 MiB for the terms without slack;
 * 32 MiB + 0.35 × (…) puts the estimate 6 % above it. Not re-validated on Qwen2.5-0.5B / Llama-3.2-1B after the fix.
 */
export const SPARSEGPT_SLACK = { fixed: 32 * 2 ** 20, factor: 0.35 } as const;
/**
 * A calibration block session built with its weights as initializers holds ≈ 1.13 × their bytes after creation and
 * peaks at ≈ 1.45 × while it is created (measured: 3 × 64 MiB MatMul weights, +218 MiB after creation, +280 MiB peak,
 * with or without pre-packing; docs/calibration.md). One such session is alive at a time.
 */
export const BLOCK_SESSION_COPIES = 1.45;
/** Weight copies: held at rest, and added while a session is built (external: measured, docs/scale.md; inline: counted). */
export const WEIGHT_COPIES = { external: { rest: 1, build: 0.18 }, inline: { rest: 2, build: 2 } } as const;

export function estimatePeakMemory(m: MemoryInputs): MemoryEstimate {
  const external = m.external ?? true;
  const copies = external ? WEIGHT_COPIES.external : WEIGHT_COPIES.inline;
  const batch = Math.min(m.batch ?? 8, m.nsamples);
  const terms = {
    runtime: RUNTIME_BYTES,
    weights: Math.round(copies.rest * m.weightBytes),
    sessionBuild: Math.round(copies.build * m.weightBytes),
    hiddenStates: 2 * m.nsamples * m.seqlen * m.hidden * 4,
    activations: m.nsamples > 0 ? batch * m.seqlen * (2 * (m.heads ?? 0) * m.seqlen + 3 * (m.ffn ?? 0)) * 4 : 0,
    blockWorkingSet: 3 * m.blockBytes,
    gram: m.gramDim > 0 ? (m.gramDims ?? [m.gramDim]).reduce((a, d) => a + d * d, 0) * (8 + 4) : 0,
    solver: m.gramDim > 0 ? solverBytes(m.gramDim, m.maxDOut ?? m.gramDim) : 0,
    slack: 0,
    blockSession: Math.round(BLOCK_SESSION_COPIES * (m.blockSessionWeightBytes ?? 0)),
  };
  terms.slack = m.gramDim > 0 ? Math.round(SPARSEGPT_SLACK.fixed + SPARSEGPT_SLACK.factor * (terms.gram + terms.solver)) : 0;
  const working = terms.hiddenStates + terms.activations + terms.blockWorkingSet + terms.blockSession + terms.gram + terms.solver + terms.slack;
  return {
    peakBytes: terms.runtime + terms.weights + Math.max(terms.sessionBuild, working),
    terms,
    explanation: `runtime + model weights ${copies.rest} times (${external ? 'one onnxruntime session; pruned weights spilled to a scratch file' : 'inline: the graph and the session'}) + the larger of a session build and the calibration working set (hidden states in and out, one block run's activations, one block's weights`
      + (terms.blockSession ? ', the weights of one block session' : '')
      + (terms.gram ? ', the Gram matrices of one block and the SparseGPT solver\'s buffers' : '') + ')',
  };
}

/**
 * SparseGPT solver buffers for a linear with n inputs and r outputs: the cached Hinv (n² float64), the Gemm buffers
 * (float64 Cholesky / inverse: n²/2 + 256·n; float32 lazy update: r·128 + 128·n + 2·r·n) and the sweep's work
 * buffers (err float64, mask, metric and selection scratch, product indices: 21 bytes × r × 128).
 */
export function solverBytes(n: number, r: number): number {
  return 8 * n * n + 8 * (n * n / 2 + 256 * n) + 4 * (r * 128 + 128 * n + 2 * r * n) + 21 * r * 128;
}

/** Bytes the machine can still give this process: MemAvailable (Linux) or os.freemem(). */
export function availableMemoryBytes(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return os.freemem();
}

const gb = (b: number): string => (b / 2 ** 30).toFixed(2);

/**
 * Throw a DsaPruneError (before any work) when the estimate is above the memory available: `maxMemoryGB` when given
 * (CLI --max-memory), else available memory + this process's resident set. Names the term to lower and its flag.
 */
export function checkMemory(e: MemoryEstimate, maxMemoryGB?: number): void {
  const rss = process.memoryUsage().rss;
  const limit = maxMemoryGB !== undefined ? maxMemoryGB * 2 ** 30 : availableMemoryBytes() + rss;
  if (e.peakBytes <= limit) return;
  const { weights, hiddenStates, activations } = e.terms;
  const gram = e.terms.gram + e.terms.solver;
  const calibration = hiddenStates + activations;
  const hint = calibration >= Math.max(gram, weights / 2)
    ? activations > hiddenStates
      ? `lower --batch-size or --seqlen (one block run's activations take ${gb(activations)} GB, the hidden states ${gb(hiddenStates)} GB)`
      : `lower --nsamples or --seqlen (the calibration hidden states take ${gb(hiddenStates)} GB)`
    : gram > 0 && gram >= weights / 2
      ? `use --method wanda, which needs no Gram matrices nor solver buffers (${gb(gram)} GB here)`
      : `the weights alone take ${gb(weights)} GB: use a machine with more memory, or the fp16 file (--dtype fp16)`;
  throw new DsaPruneError(
    `not enough memory: this prune needs about ${gb(e.peakBytes)} GB, ${maxMemoryGB !== undefined ? `--max-memory allows ${gb(limit)} GB` : `${gb(limit)} GB is free (available ${gb(limit - rss)} GB + ${gb(rss)} GB this process holds)`}; nothing was changed`,
    { hint: `${hint}; --max-memory <GB> overrides the free-memory reading.` },
  );
}
