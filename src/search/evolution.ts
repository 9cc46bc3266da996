/**
 * The evolutionary search loop (and its random-search baseline), generic over where fitness is computed (Evaluator)
 * and over the search space (CandidateSpace).
 *
 * Repeatability: generation g draws its random numbers from a fresh generator seeded with (seed, g), and everything a
 * generation depends on (population, the set of allocation vectors already seen, counters) is in the checkpoint
 * written after it. So a search stopped after any generation and resumed from its checkpoint makes exactly the same
 * choices, and returns the same result, as one that ran straight through. The batch size (how many candidates go to
 * the evaluator at once) does not change any choice either: a generation's children are all fixed before the first one
 * is evaluated.
 */
import { DsaPruneError, abortedError } from '../errors.js';
import { mixSeed, Rng } from './random.js';
import type { Candidate, Evaluation, Evaluator, HistoryEntry, Member, SearchState } from './types.js';
// Re-exported: they were declared here (now in types.ts, so checkpoint.ts needs nothing of this file).
export type { HistoryEntry, Member, SearchState } from './types.js';
import { candidateKey } from './types.js';
import { signatureDifference, writeCheckpoint, type SearchCheckpoint } from './checkpoint.js';

/** What the loop needs from a search space (space.ts builds the DSA one). */
export interface CandidateSpace {
  /** A random candidate (not necessarily valid). */
  sample(rng: Rng): Candidate;
  /** A copy of `c` with one op replaced or λ perturbed. */
  mutate(c: Candidate, rng: Rng): Candidate;
  /** A child taking each whole stage (pre / reduce / transform / post / λ) from one parent or the other. */
  crossover(a: Candidate, b: Candidate, rng: Rng): Candidate;
  /**
   * Validity without an evaluation, and the deduplication key (the allocation vector the candidate produces). Invalid
   * candidates (non-finite or constant importance) are rejected at no cost.
   */
  check(c: Candidate): { ok: true; allocationKey: string } | { ok: false; reason: string };
  /** Printable forms: the reference string and the simplified mathjs form. */
  describe(c: Candidate): { expression: string; simplified: string };
}

/** Options of runSearch(). */
export interface SearchOptions {
  /** Evaluation budget (candidates actually evaluated; rejected and duplicate ones cost nothing). */
  evaluations: number;
  /** Wall-clock cap in seconds (checked before each batch; time spent before a resume counts). */
  timeLimitSeconds?: number;
  /** `evolution` (default) or `random`: the baseline drawing fresh random candidates with the same budget. */
  strategy?: 'evolution' | 'random';
  /** Seed: equal seeds (and equal fitness) give equal searches. */
  seed: number;
  /** Population size (default 16). */
  population?: number;
  /** Tournament size (default 3). */
  tournament?: number;
  /** Best members copied unchanged into the next generation (default 2). */
  elite?: number;
  /** Probability that a child comes from crossover of two parents rather than a copy of one (default 0.6). */
  crossoverRate?: number;
  /** Probability that a child is mutated (default 0.8; a child equal to a parent is always mutated). */
  mutationRate?: number;
  /** Candidates sent to the evaluator at once (default: the whole generation). */
  batchSize?: number;
  /** Stop after this many generations in total (counting generations done before a resume). */
  maxGenerations?: number;
  /** Write the state here (atomically) after every generation. */
  checkpointPath?: string;
  /** Continue from this state (read with readCheckpoint). */
  resume?: SearchCheckpoint;
  /** Anything that must match on resume (method, sparsity, model hash…); stored in the checkpoint. */
  signature?: Record<string, unknown>;
  onProgress?: (p: SearchProgress) => void;
  signal?: AbortSignal;
}

export interface SearchProgress {
  generation: number;
  evaluations: number;
  budget: number;
  bestFitness: number;
  evalsPerSecond: number;
  /** Seconds until the budget is spent at the current rate (NaN before the first evaluation). */
  etaSeconds: number;
  elapsedSeconds: number;
  /** True on the report made when a generation is complete (one per generation). */
  generationDone: boolean;
}


export interface SearchResult {
  best: {
    candidate: Candidate;
    expression: string;
    simplified: string;
    lambda: number;
    blockSparsity: number[];
    fitness: number;
  };
  history: HistoryEntry[];
  evaluations: number;
  generations: number;
  /** Candidates rejected without an evaluation. */
  rejected: { invalid: number; duplicate: number };
  seconds: number;
  stoppedBy: 'budget' | 'time' | 'generations' | 'exhausted';
  strategy: 'evolution' | 'random';
  seed: number;
}


const byFitness = (a: Member, b: Member) => a.fitness - b.fitness || a.evaluation - b.evaluation;

function clean(f: number): number {
  return Number.isFinite(f) ? f : Infinity;
}

/**
 * Run the search. Returns the best candidate, the history of every evaluation, and counters. Throws DsaPruneError
 * (exit code 130) when `signal` fires; the last checkpoint then holds the state after the last full generation.
 */
export async function runSearch(space: CandidateSpace, evaluator: Evaluator, options: SearchOptions): Promise<SearchResult> {
  const strategy = options.strategy ?? 'evolution';
  const popSize = options.population ?? 16;
  const tournament = options.tournament ?? 3;
  const elite = Math.min(options.elite ?? 2, popSize - 1);
  const crossoverRate = options.crossoverRate ?? 0.6;
  const mutationRate = options.mutationRate ?? 0.8;
  const budget = options.evaluations;
  if (!Number.isInteger(budget) || budget < 1) throw new DsaPruneError(`the evaluation budget must be a positive integer, got ${budget}`);
  if (!Number.isInteger(popSize) || popSize < 2) throw new DsaPruneError(`population must be an integer ≥ 2, got ${popSize}`);

  let state: SearchState;
  if (options.resume) {
    const ck = options.resume;
    if (ck.state.strategy !== strategy || ck.state.seed !== options.seed) {
      throw new DsaPruneError(`the checkpoint is for a ${ck.state.strategy} search with seed ${ck.state.seed}, not ${strategy} with seed ${options.seed}`, {
        hint: 'resume with the same --seed (and --random or not) as the interrupted run',
      });
    }
    const want = JSON.stringify(options.signature ?? {});
    const have = JSON.stringify(ck.signature ?? {});
    if (want !== have) {
      throw new DsaPruneError(`the checkpoint was written by a search with other settings (${signatureDifference(ck.signature ?? {}, options.signature ?? {})})`, {
        code: 'invalid-input', hint: `checkpoint settings: ${have}; this run: ${want}. Resume with the same model, method, sparsity and data.`,
      });
    }
    state = structuredClone(ck.state);
  } else {
    state = {
      strategy, seed: options.seed, generation: 0, evaluations: 0, elapsedSeconds: 0,
      population: [], seen: {}, history: [], rejected: { invalid: 0, duplicate: 0 },
    };
  }

  const t0 = performance.now();
  const elapsedBefore = state.elapsedSeconds;
  const elapsed = () => elapsedBefore + (performance.now() - t0) / 1000;
  const evalsAtStart = state.evaluations;
  let stoppedBy: SearchResult['stoppedBy'] = 'budget';
  let best: Member | undefined;
  const bestOf = () => {
    for (const h of state.history) {
      const f = h.fitness ?? Infinity;
      if (!best || f < best.fitness) {
        best = { candidate: h.candidate, allocationKey: '', fitness: f, evaluation: h.evaluation };
      }
    }
  };
  bestOf();

  const progress = (generationDone = false) => {
    if (!options.onProgress) return;
    const el = elapsed();
    const doneHere = state.evaluations - evalsAtStart;
    const rate = doneHere / Math.max(1e-9, (performance.now() - t0) / 1000);
    options.onProgress({
      generation: state.generation, evaluations: state.evaluations, budget,
      bestFitness: best?.fitness ?? NaN, evalsPerSecond: doneHere ? rate : 0,
      etaSeconds: doneHere ? (budget - state.evaluations) / rate : NaN, elapsedSeconds: el, generationDone,
    });
  };

  const tournamentPick = (rng: Rng): Member => {
    let w: Member | undefined;
    for (let i = 0; i < tournament; i++) {
      const m = rng.pick(state.population);
      if (!w || byFitness(m, w) < 0) w = m;
    }
    return w!;
  };

  while (state.evaluations < budget) {
    if (options.maxGenerations !== undefined && state.generation >= options.maxGenerations) {
      stoppedBy = 'generations';
      break;
    }
    if (options.timeLimitSeconds !== undefined && elapsed() >= options.timeLimitSeconds) {
      stoppedBy = 'time';
      break;
    }
    const g = state.generation;
    const rng = new Rng(mixSeed(options.seed, g, strategy === 'random' ? 1 : 0));
    const fresh = strategy === 'random' || state.population.length < 2;
    const want = Math.min(budget - state.evaluations, fresh ? popSize : popSize - elite);

    // Build this generation's children: valid, never seen, distinct from each other.
    const children: { candidate: Candidate; allocationKey: string }[] = [];
    const inGeneration = new Set<string>();
    let attempts = 0;
    const maxAttempts = 200 * Math.max(1, want);
    while (children.length < want && attempts < maxAttempts) {
      attempts++;
      let c: Candidate;
      if (fresh || attempts > 50 * want) {
        c = space.sample(rng);
      } else {
        const p1 = tournamentPick(rng);
        let child = p1.candidate;
        let same = true;
        if (rng.next() < crossoverRate) {
          const p2 = tournamentPick(rng);
          child = space.crossover(p1.candidate, p2.candidate, rng);
          same = p2 === p1;
        }
        if (same || rng.next() < mutationRate) child = space.mutate(child, rng);
        c = child;
      }
      const chk = space.check(c);
      if (!chk.ok) {
        state.rejected.invalid++;
        continue;
      }
      if (chk.allocationKey in state.seen || inGeneration.has(chk.allocationKey)) {
        state.rejected.duplicate++;
        continue;
      }
      inGeneration.add(chk.allocationKey);
      children.push({ candidate: c, allocationKey: chk.allocationKey });
    }
    if (children.length === 0) {
      stoppedBy = 'exhausted';
      break;
    }

    // Evaluate in batches.
    const bs = Math.max(1, options.batchSize ?? children.length);
    const evaluated: Member[] = [];
    let timeUp = false;
    for (let i = 0; i < children.length; i += bs) {
      if (options.signal?.aborted) throw abortedError('search aborted', options.checkpointPath ? `resume with --resume ${options.checkpointPath}` : undefined);
      if (i > 0 && options.timeLimitSeconds !== undefined && elapsed() >= options.timeLimitSeconds) {
        timeUp = true;
        break;
      }
      const batch = children.slice(i, i + bs);
      const results: Evaluation[] = await evaluator.evaluate(batch.map((b) => b.candidate), options.signal);
      if (results.length !== batch.length) {
        throw new DsaPruneError(`the evaluator returned ${results.length} results for ${batch.length} candidates`);
      }
      for (let k = 0; k < batch.length; k++) {
        const { candidate, allocationKey } = batch[k]!;
        const r = results[k]!;
        const fitness = clean(r.fitness);
        state.evaluations++;
        state.seen[allocationKey] = Number.isFinite(fitness) ? fitness : null;
        const d = space.describe(candidate);
        state.history.push({
          evaluation: state.evaluations, generation: g, expression: d.expression, lambda: candidate.lambda,
          fitness: Number.isFinite(fitness) ? fitness : null, blockSparsity: r.blockSparsity, seconds: r.seconds,
          ...(r.worker !== undefined ? { worker: r.worker } : {}), candidate,
        });
        const m: Member = { candidate, allocationKey, fitness, evaluation: state.evaluations };
        evaluated.push(m);
        if (!best || fitness < best.fitness) best = m;
      }
      progress();
    }

    // Next population: elites of the old one + this generation (evolution); random search keeps the best only.
    if (strategy === 'evolution') {
      const parents = [...state.population].sort(byFitness);
      const next = fresh ? evaluated : [...parents.slice(0, elite), ...evaluated];
      // Keep the population size: fill from the old population when the generation came out short.
      for (const p of parents.slice(fresh ? 0 : elite)) {
        if (next.length >= popSize) break;
        next.push(p);
      }
      state.population = next.sort(byFitness).slice(0, popSize);
    } else {
      state.population = [...state.population, ...evaluated].sort(byFitness).slice(0, popSize);
    }
    state.generation++;
    progress(true);
    state.elapsedSeconds = elapsed();
    if (options.checkpointPath) {
      await writeCheckpoint(options.checkpointPath, { version: 1, signature: options.signature ?? {}, options: checkpointOptions(options, strategy), state });
    }
    if (timeUp) {
      stoppedBy = 'time';
      break;
    }
  }
  const finalElapsed = elapsed();
  state.elapsedSeconds = finalElapsed;
  if (!best) throw new DsaPruneError('the search evaluated no candidate', { hint: 'raise --evals or --time' });
  const b = best as Member;
  const d = space.describe(b.candidate);
  const h = state.history.find((x) => x.evaluation === b.evaluation);
  return {
    best: {
      candidate: b.candidate, expression: d.expression, simplified: d.simplified, lambda: b.candidate.lambda,
      blockSparsity: h?.blockSparsity ?? [], fitness: b.fitness,
    },
    history: state.history,
    evaluations: state.evaluations,
    generations: state.generation,
    rejected: state.rejected,
    seconds: finalElapsed,
    stoppedBy,
    strategy,
    seed: options.seed,
  };
}

function checkpointOptions(o: SearchOptions, strategy: string): Record<string, unknown> {
  return {
    strategy, seed: o.seed, evaluations: o.evaluations, population: o.population ?? 16, tournament: o.tournament ?? 3,
    elite: o.elite ?? 2, crossoverRate: o.crossoverRate ?? 0.6, mutationRate: o.mutationRate ?? 0.8,
  };
}

/** An Evaluator over a plain in-process function (tests, the single-threaded path). */
export function functionEvaluator(fn: (c: Candidate) => Promise<Omit<Evaluation, 'key'>> | Omit<Evaluation, 'key'>): Evaluator {
  return {
    async evaluate(batch: Candidate[]) {
      const out: Evaluation[] = [];
      for (const c of batch) out.push({ key: candidateKey(c), ...(await fn(c)) });
      return out;
    },
    async close() {},
  };
}
