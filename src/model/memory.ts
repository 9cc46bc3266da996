/**
 * Peak memory of a prune, estimated before any work, and the refusal when it will not fit.
 *
 * The estimate (bytes) = WEIGHT_COPIES × the weights (the decoded graph dsa-prune edits, the onnxruntime session, the
 * calibration sub-graph sessions, the session rebuilt at commit, float32 copies while reading and writing: 5.0 ×
 * measured on the SmolLM2-135M-shape scale bench, docs/scale.md) + the calibration hidden states in and out of one block (2 × nsamples × seqlen × hidden × 4:
 * sized by the calibration set, never by the model's context length) + one block's weights in float32 three times
 * (read, pruned, written back) + the Gram matrices of the widest linear in float64 (SparseGPT: H and its inverse).
 * Available memory: MemAvailable of /proc/meminfo (else os.freemem()) plus what this process already holds (the loaded
 * model is part of the estimate), or `maxMemoryGB` when given.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { DsaPruneError } from '../errors.js';

export interface MemoryEstimate {
  peakBytes: number;
  terms: { weights: number; hiddenStates: number; blockWorkingSet: number; gram: number };
  explanation: string;
}

export interface MemoryInputs {
  /** Bytes of all weights in their stored dtype (the graph's initializers). */
  weightBytes: number;
  hidden: number;
  nsamples: number;
  seqlen: number;
  /** Float32 bytes of the largest block's pruned linears. */
  blockBytes: number;
  /** Widest linear input when the method builds Gram matrices, else 0. */
  gramDim: number;
}

/** Copies of the weights a prune holds at its peak (measured: bench/scale.bench.ts, docs/scale.md). */
export const WEIGHT_COPIES = 5;

export function estimatePeakMemory(m: MemoryInputs): MemoryEstimate {
  const terms = {
    weights: WEIGHT_COPIES * m.weightBytes,
    hiddenStates: 2 * m.nsamples * m.seqlen * m.hidden * 4,
    blockWorkingSet: 3 * m.blockBytes,
    gram: m.gramDim * m.gramDim * 8 * 2,
  };
  return {
    peakBytes: terms.weights + terms.hiddenStates + terms.blockWorkingSet + terms.gram,
    terms,
    explanation: `model weights ${WEIGHT_COPIES} times (graph, sessions, commit, float32 copies; measured), hidden states of the calibration set in and out, one block working set` + (terms.gram ? ', the largest Gram matrix in float64' : ''),
  };
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
  const { weights, hiddenStates, gram } = e.terms;
  const hint = hiddenStates >= Math.max(gram, weights / 2)
    ? `lower --nsamples or --seqlen (the calibration hidden states take ${gb(hiddenStates)} GB)`
    : gram > 0 && gram >= weights / 2
      ? `use --method wanda, which needs no Gram matrices (${gb(gram)} GB here)`
      : `the weights alone take ${gb(weights)} GB (${WEIGHT_COPIES} copies: graph, sessions, commit): use a machine with more memory, or the fp16 file (--dtype fp16)`;
  throw new DsaPruneError(
    `not enough memory: this prune needs about ${gb(e.peakBytes)} GB, ${maxMemoryGB !== undefined ? `--max-memory allows ${gb(limit)} GB` : `${gb(limit)} GB is free (available ${gb(limit - rss)} GB + ${gb(rss)} GB this process holds)`}; nothing was changed`,
    { hint: `${hint}; --max-memory <GB> overrides the free-memory reading.` },
  );
}
