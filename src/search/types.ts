/**
 * The search engine's contract: what a candidate allocation function is, what evaluating it returns, and the
 * Evaluator interface the evolution loop drives. The local worker pool (pool.ts) and the distributed BullMQ evaluator
 * (distributed/) both implement Evaluator with this contract, so the loop never knows where fitness is computed.
 */
import type { DsaExpression } from '../allocators/dsa/index.js';
import type { BudgetMode, Pattern } from '../types.js';
import { simplifyDsa, formatDsa } from '../allocators/dsa/index.js';

export type { DsaExpression };

/** One point of the search space: an allocation function and its λ. */
export interface Candidate {
  expression: DsaExpression;
  /** Spread of the allocation around the target sparsity, in [0.02, 0.25]. */
  lambda: number;
}

/**
 * Canonical key of a candidate: the simplified expression (mathjs form) and λ rounded to 1e-6. Equivalent spellings of
 * the same function get the same key, so a candidate is never evaluated (or queued) twice.
 */
export function candidateKey(c: Candidate): string {
  let expr: string;
  try {
    expr = simplifyDsa(c.expression);
  } catch {
    expr = formatDsa(c.expression, 'mathjs');
  }
  return `${expr}|${(Math.round(c.lambda * 1e6) / 1e6).toFixed(6)}`;
}

/** Result of evaluating one candidate. `fitness` is the perplexity on the search split (lower is better). */
export interface Evaluation {
  key: string;
  /** Perplexity on the search split; `Infinity` when the pruned model's perplexity is not finite. */
  fitness: number;
  /** Sparsity each block received. */
  blockSparsity: number[];
  /** Wall-clock seconds the evaluation took. */
  seconds: number;
  /** Who evaluated it (worker id), for reports. */
  worker?: string;
}

/** Something that evaluates batches of candidates (a local worker pool, a Redis queue, an in-process fitness). */
export interface Evaluator {
  /** Evaluate every candidate of the batch; results in the same order as `batch`. */
  evaluate(batch: Candidate[], signal?: AbortSignal): Promise<Evaluation[]>;
  close(): Promise<void>;
}

/** Everything that determines a candidate's fitness (apart from the model and the token ids themselves). */
export interface SearchSpec {
  /** A registered method's name: a built-in (`wanda`, `magnitude`, `sparsegpt`) or one added with registerMethod(). */
  method: string;
  /** Global target sparsity S. */
  sparsity: number;
  pattern?: Pattern;
  budget: BudgetMode;
  /** `fast`: one-shot pruning from cached dense statistics; `faithful`: the sequential prune of src/prune.ts. */
  mode: 'fast' | 'faithful';
  calibration: { nsamples: number; seqlen: number; sha256: string };
  search: { windows: number; seqlen: number; sha256: string };
  seed: number;
  modelHash: string;
  /** `block` (default when absent): one sparsity per block; `linear`: the candidate's allocation per linear (atGranularity). */
  granularity?: 'block' | 'linear';
  /**
   * `ppl` (default when absent): perplexity on the search split; `kl`: mean KL(dense ‖ pruned) over the search tokens
   * from the dense model's top-k next-token probabilities (src/eval/kl.ts). Lower is better for both.
   */
  fitness?: 'ppl' | 'kl';
  /** k of the KL fitness (default 256). */
  klTopK?: number;
  /**
   * method `structured`: the candidate's block shares become whole FFN channels per block, scored once on the dense
   * statistics (src/search/structured-fitness.ts).
   */
  structured?: { target: 'ffn'; score: 'wanda-sp' | 'magnitude' | 'flap' };
}

/** One evaluated candidate, in the order of evaluation. */
export interface HistoryEntry {
  /** 1-based index of the evaluation. */
  evaluation: number;
  generation: number;
  /** Reference string form, e.g. `W:(ABSLOG)-(VAR)-(ATAN)`. */
  expression: string;
  lambda: number;
  /** Perplexity on the search split (null when not finite). */
  fitness: number | null;
  blockSparsity: number[];
  seconds: number;
  worker?: string;
  candidate: Candidate;
}

/** A population member: a candidate with its fitness. */
export interface Member {
  candidate: Candidate;
  allocationKey: string;
  fitness: number;
  /** Evaluation index (1-based), the tie-breaker: earlier wins. */
  evaluation: number;
}

/** The whole state of a search between generations (what a checkpoint holds). */
export interface SearchState {
  strategy: 'evolution' | 'random';
  seed: number;
  generation: number; // generations completed
  evaluations: number;
  elapsedSeconds: number;
  population: Member[];
  /** allocation key → fitness (null = not finite) of every evaluated candidate. */
  seen: Record<string, number | null>;
  history: HistoryEntry[];
  rejected: { invalid: number; duplicate: number };
}
