/**
 * A whole search on one model: dense statistics once, the evaluator (in-process or a worker-thread pool), the
 * evolution (and optionally the random baseline with the same budget), then the best candidate re-applied with the
 * faithful sequential prune. The CLI command and scripts/search-targets.ts both call searchModel().
 */
import { DsaPruneError } from '../errors.js';
import { linearUnits } from '../allocators/granularity.js';
import type { BudgetMode } from '../types.js';
import type { PrunableModel } from '../model/index.js';
import { candidateAllocator, computeDense, createFitness, idsSha256, calibrationWindows, searchMethod, type DenseData } from './fitness.js';
import { createPool, defaultParallelism } from './pool.js';
import { importPlugins } from '../methods/plugins.js';
import { createRedisEvaluator } from './distributed/coordinator.js';
import { redactUrl } from './distributed/connection.js';
import { searchSpace } from './space.js';
import { functionEvaluator, runSearch, type SearchProgress, type SearchResult } from './evolution.js';
import type { SearchCheckpoint } from './checkpoint.js';
import type { Evaluator, SearchSpec } from './types.js';
import { checkStructuredSearch, searchedShares, type StructuredSearch } from './structured-fitness.js';
import { pruneModel } from '../prune.js';
import { perplexity } from '../eval/perplexity.js';
import { createTopKCache, klToCache } from '../eval/kl.js';
import { sessionOf } from '../eval/forward.js';

export interface SearchModelOptions {
  /** Model folder (worker threads load it themselves). */
  modelDir: string;
  method: SearchSpec['method'];
  sparsity: number;
  /** `block` (default) or `linear`: what one sparsity of a candidate's allocation covers. */
  granularity?: 'block' | 'linear';
  /** `ppl` (default) or `kl`: mean KL(dense ‖ pruned) from the dense top-k (k = klTopK, default 256). */
  fitness?: 'ppl' | 'kl';
  klTopK?: number;
  budget?: BudgetMode;
  mode?: 'fast' | 'faithful';
  /** Calibration token ids (the first nsamples windows of seqlen are used). */
  calibrationIds: Int32Array;
  nsamples: number;
  seqlen: number;
  /** Search-split token ids (the first searchWindows windows of searchSeqlen are used). */
  searchIds: Int32Array;
  searchWindows?: number;
  searchSeqlen?: number;
  /** Evaluation budget. */
  evaluations: number;
  timeLimitSeconds?: number;
  /** Worker threads (1 = evaluate in this thread) and intra-op threads each (default: defaultParallelism()). */
  workers?: number;
  threads?: number;
  seed?: number;
  population?: number;
  /** Also run random search with the same budget (reported as `random`). */
  random?: boolean;
  /** Only random search (the baseline alone). */
  randomOnly?: boolean;
  checkpointPath?: string;
  resume?: SearchCheckpoint;
  /** Re-apply the best candidate with the faithful prune (default true). */
  final?: boolean;
  /** Dense statistics already computed (skips the dense pass). */
  dense?: DenseData;
  /** Evaluate on `dsa-prune worker` processes through this Redis (redis:// or rediss:// URL) instead of locally. */
  redis?: string;
  /** Run id on Redis (default: derived from the spec and data, so a restarted coordinator finds its run). */
  runId?: string;
  /** Key prefix on Redis (several projects on one server). */
  redisPrefix?: string;
  /**
   * Modules registering user methods (registerMethod), imported in this thread and by every worker thread (the CLI's
   * --plugin); a method registered only in this thread is unknown to the workers. Redis workers import their own
   * (`dsa-prune worker --plugin`).
   */
  plugins?: string[];
  /**
   * method `structured`: what the search allocates (`target`: `ffn`, the default and the only one) and the channel
   * score (`wanda-sp`, default, `flap` with its bias compensation, or `magnitude`). Candidates are per-block FFN widths (src/search/structured-fitness.ts);
   * the final re-application is the faithful structured prune, which leaves `pm` pruned with the best widths.
   */
  structured?: { target?: string | string[]; score?: string };
  onProgress?: (p: SearchProgress & { strategy: 'evolution' | 'random' }) => void;
  onPhase?: (message: string) => void;
  signal?: AbortSignal;
}

export interface HistoryRow {
  evaluation: number;
  generation: number;
  expression: string;
  lambda: number;
  fitness: number | null;
}

export interface SearchOutput {
  best: {
    expression: string;
    simplified: string;
    lambda: number;
    blockSparsity: number[];
    /** At linear granularity: the sparsity of every linear (on the dense statistics of the search). */
    linearSparsity?: Record<string, number>;
    /** Fitness in the search's mode (fast: one-shot prune). */
    fitness: number;
    /** The best candidate re-applied with the faithful sequential prune, perplexity on the same search split. */
    faithful?: { fitness: number; blockSparsity: number[]; seconds: number };
    /** method `structured`: the FFN width kept per block by the faithful re-application. */
    ffnWidths?: number[];
  };
  /** method `structured`: what was searched. */
  structured?: StructuredSearch;
  history: HistoryRow[];
  random?: HistoryRow[];
  randomBest?: { expression: string; lambda: number; fitness: number };
  evaluations: number;
  generations: number;
  rejected: { invalid: number; duplicate: number };
  stoppedBy: SearchResult['stoppedBy'];
  model: string;
  method: string;
  sparsity: number;
  budget: BudgetMode;
  mode: 'fast' | 'faithful';
  granularity: 'block' | 'linear';
  fitness: 'ppl' | 'kl';
  seed: number;
  settings: { workers: number; threads: number; population: number };
  spec: SearchSpec;
  seconds: { dense: number; search: number; random?: number; final?: number; total: number };
  evalsPerMinute: number;
}

const rows = (r: SearchResult): HistoryRow[] =>
  r.history.map((h) => ({ evaluation: h.evaluation, generation: h.generation, expression: h.expression, lambda: h.lambda, fitness: h.fitness }));

/** Run a search on `pm` (loaded from `o.modelDir`). */
export async function searchModel(pm: PrunableModel, o: SearchModelOptions): Promise<SearchOutput> {
  const t0 = performance.now();
  // The plugins register user methods here too (an import runs once per thread), then an unknown method is refused
  // before any work.
  const plugins = await importPlugins(o.plugins);
  const st = o.method === 'structured'
    ? checkStructuredSearch({ target: o.structured?.target, score: o.structured?.score, mode: o.mode, granularity: o.granularity })
    : undefined;
  if (!st) searchMethod(o.method);
  const budget = o.budget ?? 'exact';
  const mode = o.mode ?? 'fast';
  const seed = o.seed ?? 0;
  const windows = o.searchWindows ?? 16;
  const sseq = o.searchSeqlen ?? Math.min(512, o.seqlen);
  const par = defaultParallelism();
  const workers = o.workers ?? par.workers;
  const threads = o.threads ?? (workers === 1 ? Math.max(1, par.workers * par.threads) : par.threads);
  const population = o.population ?? 16;
  const searchIds = o.searchIds.subarray(0, windows * sseq);
  if (searchIds.length < windows * sseq) {
    throw new DsaPruneError(`the search split has ${o.searchIds.length} tokens; ${windows} windows of ${sseq} need ${windows * sseq}`, {
      hint: 'give a longer --search-text, or fewer --search-windows / a shorter --search-seqlen',
    });
  }
  const cal = calibrationWindows({ calibration: { nsamples: o.nsamples, seqlen: o.seqlen, sha256: '' } } as SearchSpec, o.calibrationIds);
  const spec: SearchSpec = {
    method: o.method, sparsity: o.sparsity, budget, mode, pattern: { kind: 'unstructured' },
    calibration: { nsamples: o.nsamples, seqlen: o.seqlen, sha256: cal.sha256 },
    search: { windows, seqlen: sseq, sha256: idsSha256(searchIds) }, seed, modelHash: pm.modelHash(),
    ...(o.granularity === 'linear' ? { granularity: 'linear' as const } : {}),
    ...(o.fitness === 'kl' ? { fitness: 'kl' as const, ...(o.klTopK !== undefined ? { klTopK: o.klTopK } : {}) } : {}),
    ...(st ? { structured: st } : {}),
  };
  o.onPhase?.(`dense statistics (${o.nsamples} × ${o.seqlen} tokens)`);
  const tDense = performance.now();
  const dense = o.dense ?? (await computeDense(pm, spec, cal.ids, threads));
  const secondsDense = (performance.now() - tDense) / 1000;
  // At linear granularity the space checks candidates on the linears' own vectors (the allocation units).
  const space = searchSpace(o.granularity === 'linear' ? linearUnits(dense.blocks).units : dense.blocks, o.sparsity, budget);

  o.onPhase?.(workers > 1 ? `starting ${workers} worker threads × ${threads} onnxruntime threads` : `evaluating in this thread (${threads} onnxruntime threads)`);
  let evaluator: Evaluator;
  if (o.redis) {
    o.onPhase?.(`publishing the run on ${redactUrl(o.redis)}: candidates go to dsa-prune worker processes`);
    evaluator = await createRedisEvaluator({
      redis: o.redis, spec, calibrationIds: cal.ids, searchIds, dense, runId: o.runId, prefix: o.redisPrefix,
      onLog: o.onPhase, signal: o.signal,
    });
  } else if (workers > 1) {
    evaluator = await createPool({ modelDir: o.modelDir, spec, calibrationIds: cal.ids, searchIds, dense, workers, threads, plugins });
  } else {
    const fitness = await createFitness(pm, spec, { calibrationIds: cal.ids, searchIds }, { dense, threads });
    const ev = functionEvaluator((c) => fitness.evaluate(c, o.signal));
    evaluator = { evaluate: ev.evaluate, close: () => fitness.close() };
  }
  const signature = {
    modelHash: spec.modelHash, method: spec.method, sparsity: spec.sparsity, budget, mode,
    calibration: spec.calibration.sha256, search: spec.search.sha256, population,
    ...(spec.granularity ? { granularity: spec.granularity } : {}),
    ...(spec.fitness ? { fitness: spec.fitness, klTopK: spec.klTopK } : {}),
    ...(st ? { structured: st } : {}),
  };
  let evo: SearchResult | undefined;
  let rnd: SearchResult | undefined;
  let secondsSearch = 0;
  let secondsRandom: number | undefined;
  try {
    const common = {
      evaluations: o.evaluations, timeLimitSeconds: o.timeLimitSeconds, seed, population, batchSize: o.redis ? undefined : Math.max(1, workers),
      signature, signal: o.signal,
    };
    const tS = performance.now();
    if (!o.randomOnly) {
      o.onPhase?.(`evolutionary search: ${o.evaluations} evaluations, population ${population}, seed ${seed}`);
      evo = await runSearch(space, evaluator, {
        ...common, strategy: 'evolution', checkpointPath: o.checkpointPath, resume: o.resume,
        onProgress: (p) => o.onProgress?.({ ...p, strategy: 'evolution' }),
      });
    }
    secondsSearch = (performance.now() - tS) / 1000;
    if (o.random || o.randomOnly) {
      o.onPhase?.(`random search baseline: ${o.evaluations} evaluations, seed ${seed}`);
      const tR = performance.now();
      rnd = await runSearch(space, evaluator, {
        ...common, strategy: 'random',
        ...(o.randomOnly ? { checkpointPath: o.checkpointPath, resume: o.resume } : {}),
        onProgress: (p) => o.onProgress?.({ ...p, strategy: 'random' }),
      });
      secondsRandom = (performance.now() - tR) / 1000;
      if (o.randomOnly) secondsSearch = secondsRandom;
    }
  } finally {
    await evaluator.close();
  }
  const main = (evo ?? rnd)!;
  const out: SearchOutput = {
    best: {
      expression: main.best.expression, simplified: main.best.simplified, lambda: main.best.lambda,
      blockSparsity: main.best.blockSparsity, fitness: main.best.fitness,
      ...(spec.granularity === 'linear'
        ? { linearSparsity: candidateAllocator(main.best.candidate, spec).allocate({ blocks: dense.blocks, sparsity: o.sparsity, budget }).linearSparsity }
        : {}),
    },
    history: rows(main),
    ...(evo && rnd ? { random: rows(rnd), randomBest: { expression: rnd.best.expression, lambda: rnd.best.lambda, fitness: rnd.best.fitness } } : {}),
    evaluations: main.evaluations,
    generations: main.generations,
    rejected: main.rejected,
    stoppedBy: main.stoppedBy,
    model: o.modelDir,
    method: o.method,
    sparsity: o.sparsity,
    budget,
    mode,
    granularity: spec.granularity ?? 'block',
    fitness: spec.fitness ?? 'ppl',
    seed,
    settings: { workers, threads, population },
    spec,
    ...(st ? { structured: st } : {}),
    seconds: { dense: secondsDense, search: secondsSearch, ...(secondsRandom !== undefined ? { random: secondsRandom } : {}), total: 0 },
    evalsPerMinute: main.evaluations / Math.max(1e-9, secondsSearch / 60),
  };
  if (o.final !== false && st) {
    o.onPhase?.('re-applying the best FFN widths with the faithful structured prune (channels removed, sequential)');
    const tF = performance.now();
    const ev = await faithfulStructured(pm, spec, st, main.best.blockSparsity, cal.ids, searchIds, Math.max(1, workers * threads), o.signal);
    out.best.faithful = { fitness: ev.fitness, blockSparsity: ev.blockSparsity, seconds: ev.seconds };
    out.best.ffnWidths = ev.widths;
    out.seconds.final = (performance.now() - tF) / 1000;
  } else if (o.final !== false) {
    o.onPhase?.('re-applying the best function with the faithful (sequential) prune');
    const tF = performance.now();
    const faithful = await createFitness(pm, { ...spec, mode: 'faithful' }, { calibrationIds: cal.ids, searchIds }, { dense, threads: Math.max(1, workers * threads) });
    const ev = await faithful.evaluate(main.best.candidate, o.signal);
    await faithful.close();
    out.best.faithful = { fitness: ev.fitness, blockSparsity: ev.blockSparsity, seconds: ev.seconds };
    out.seconds.final = (performance.now() - tF) / 1000;
  }
  out.seconds.total = (performance.now() - t0) / 1000;
  return out;
}

/**
 * The faithful re-application of a structured search's best shares: the structured pipeline (channels removed,
 * sequential, the search's calibration windows) on `pm` — which stays pruned — then the fitness on the search split
 * through the pruned model's own session (KL against the dense top-k taken before the prune).
 */
async function faithfulStructured(
  pm: PrunableModel, spec: SearchSpec, st: StructuredSearch, shares: number[], calibrationIds: Int32Array, searchIds: Int32Array, threads: number, signal?: AbortSignal,
): Promise<{ fitness: number; blockSparsity: number[]; seconds: number; widths: number[] }> {
  const t0 = performance.now();
  const { windows, seqlen } = spec.search;
  const batchSize = Math.min(2, windows);
  const klCache = spec.fitness === 'kl'
    ? await createTopKCache(sessionOf(pm.model as never), searchIds, windows, seqlen, { k: spec.klTopK, batchSize, config: pm.config })
    : undefined;
  const report = await pruneModel(pm.model, {
    method: 'structured', target: [st.target], score: st.score, sparsity: spec.sparsity, allocator: searchedShares(shares, 'the search'),
    calibration: { ids: calibrationIds }, nsamples: spec.calibration.nsamples, seqlen: spec.calibration.seqlen, source: pm.source.dir, threads, signal,
  });
  const session = sessionOf(pm.model as never);
  const v = klCache
    ? (await klToCache(session, searchIds, klCache, { batchSize, config: pm.config, signal })).kl
    : (await perplexity({ sessions: { model: session }, config: pm.config }, searchIds, { seqlen, batchSize, signal })).ppl;
  return {
    fitness: Number.isFinite(v) ? v : Infinity, blockSparsity: report.targetBlockSparsity,
    seconds: (performance.now() - t0) / 1000, widths: report.structured!.blocks.map((b) => b.ffnAfter),
  };
}

// The chart of a search is drawn by report/ from the search's data (re-exported here for existing callers).
export { searchChart } from '../report/search-chart.js';
