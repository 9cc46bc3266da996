/**
 * The level-switch search (EvoPress-style, `--strategy levels`): the genome is one sparsity level per unit (a linear,
 * or a block) on a grid around the target; a mutation lowers one unit by one step and raises another by the same
 * number of weights, so every genome prunes exactly round(S · W) weights; (1+λ) selection where the offspring are
 * filtered through stages of growing token counts and the parent competes in the last stage.
 *
 * Levels in weights. Unit u has n_u prunable weights and a base count b_u (apportionCounts: Σ b_u = round(S·W), b_u
 * within one weight of S·n_u). Its pruned count is c_u = b_u + k_u · q, with one global quantum q = round(step ·
 * min_u n_u) weights and an integer level k_u ∈ [lo_u, hi_u] keeping c_u/n_u inside [S − spread, S + spread] ∩
 * [0, 0.99]. A level switch does k_a −= 1, k_b += 1: Σ c_u is unchanged, exactly. (For units of one size this is one
 * grid step of sparsity; a bigger unit moves by q/n_u < step.) A block unit's count is spread over its linears by
 * apportionCounts, so the per-linear counts also sum exactly.
 *
 * Evaluation: the search's fast fitness (src/search/fitness.ts evaluateLinears) in this thread, on worker threads or on
 * the BullMQ queue (level-eval.ts): Wanda / magnitude re-mask from the cached orders, SparseGPT assembles from the
 * level database computed once (level-db.ts). Fitness ppl or kl. The time limit is checked before every evaluation
 * chunk; a generation cut by it or by an abort is dropped, so the result is the last checkpoint's state.
 * Budget: `evaluations` counts full-split equivalents (an evaluation on w of W windows costs w/W), so a levels run and
 * a DSA run with the same number are equal in forward tokens. Checkpoint after every generation; generation g draws
 * from a fresh stream seeded with (seed, g), so a resumed run equals a straight one.
 *
 * A levels result is an allocation of *this* model's linears (by name), not a function of statistics: it carries the
 * model hash and is refused on another model (levelsAllocator).
 */
import { DsaPruneError, abortedError } from '../errors.js';
import { checkSchema, count, numbers, obj, parseSchema, plainObject, v } from '../data/schema.js';
import { readCheckpointJson, signatureDifference } from './checkpoint.js';
import type { PrunableModel } from '../model/index.js';
import type { Allocator } from '../allocators/types.js';
import { apportionCounts } from '../budget/counts.js';
import { resolveLinearSparsity } from '../allocators/resolve.js';
import { EXACT_MAX } from '../budget/global.js';
import { writeAtomicJson } from './levels-io.js';
import { buildLevelDb, unitSparsities, type LevelDb } from './level-db.js';
import { createLevelEvaluator, type LevelEvaluator, type LevelEvaluatorOptions } from './level-eval.js';
import { Rng, mixSeed } from './random.js';
import { calibrationWindows, computeDense, idsSha256, searchLinears, type DenseData } from './fitness.js';
import type { SearchModelOptions } from './run.js';
import type { SearchSpec } from './types.js';
import { checkStructuredSearch } from './structured-fitness.js';

/** One allocation unit of the level search. */
export interface LevelUnit {
  /** Linear name, or `block N`. */
  name: string;
  /** Linears of the unit (one at linear granularity). */
  linears: { name: string; params: number }[];
  params: number;
  base: number;
  lo: number;
  hi: number;
}

export interface LevelGrid {
  units: LevelUnit[];
  /** Weights per level step. */
  quantum: number;
  /** Target count round(S · W). */
  total: number;
  sparsity: number;
}

/** The level grid of `units` sizes around S: step (default 0.05 of the smallest unit) and spread (default 0.25). */
export function levelGrid(
  units: { name: string; linears: { name: string; params: number }[] }[],
  sparsity: number,
  o: { step?: number; spread?: number } = {},
): LevelGrid {
  const step = o.step ?? 0.05;
  const spread = o.spread ?? 0.25;
  if (!(step > 0 && step < 1)) throw new DsaPruneError(`level step must be in (0, 1), got ${step}`);
  if (!(spread >= step)) throw new DsaPruneError(`level spread ${spread} must be at least one step (${step})`);
  const n = units.map((u) => u.linears.reduce((a, l) => a + l.params, 0));
  if (n.some((x) => !(x > 0))) throw new DsaPruneError('every unit of the level search needs prunable weights');
  const base = apportionCounts(n.map(() => sparsity), n, sparsity);
  const quantum = Math.max(1, Math.round(step * Math.min(...n)));
  const lo = Math.max(0, sparsity - spread);
  const hi = Math.min(EXACT_MAX, sparsity + spread);
  const out = units.map((u, i) => ({
    name: u.name, linears: u.linears, params: n[i], base: base[i],
    lo: Math.ceil((lo * n[i] - base[i]) / quantum - 1e-9),
    hi: Math.floor((hi * n[i] - base[i]) / quantum + 1e-9),
  }));
  return { units: out, quantum, total: base.reduce((a, b) => a + b, 0), sparsity };
}

/** Pruned weights of each unit for a genome. */
export function unitCounts(grid: LevelGrid, genome: ArrayLike<number>): number[] {
  return grid.units.map((u, i) => u.base + genome[i] * grid.quantum);
}

/**
 * The level-switch mutation: `switches` times, one unit with room goes one level down and another one level up.
 * Σ counts is unchanged; returns a new genome (the input is not modified).
 */
export function levelSwitch(grid: LevelGrid, genome: ArrayLike<number>, rng: Rng, switches = 1): Int32Array {
  const g = Int32Array.from(genome);
  const m = g.length;
  for (let s = 0; s < switches; s++) {
    for (let tries = 0; tries < 64; tries++) {
      const a = rng.nextUint32() % m;
      const b = rng.nextUint32() % m;
      if (a === b || g[a] <= grid.units[a].lo || g[b] >= grid.units[b].hi) continue;
      g[a]--;
      g[b]++;
      break;
    }
  }
  return g;
}

/**
 * The genome nearest to wanted pruned counts (one per unit, e.g. from an allocation), with the exact budget: each
 * unit's level is its rounded real level (count − base) / q clamped to [lo, hi]; then, while Σ levels ≠ 0 (the
 * budget), the unit whose level is furthest from its real level in the direction of the excess moves one level back
 * (ties: the lower index). Every step moves Σ levels by one toward 0 inside the bounds, and 0 ∈ [lo, hi] for every
 * unit, so it ends with Σ counts = round(S · W) exactly.
 */
export function snapToGrid(grid: LevelGrid, wanted: ArrayLike<number>): Int32Array {
  const m = grid.units.length;
  if (wanted.length !== m) throw new DsaPruneError(`levels start: ${wanted.length} counts for ${m} units`, { code: 'internal' });
  const real = grid.units.map((u, i) => {
    const w = Number(wanted[i]);
    if (!Number.isFinite(w)) throw new DsaPruneError(`levels start: the count of ${u.name} is not a number (${String(wanted[i])})`);
    return (w - u.base) / grid.quantum;
  });
  const g = Int32Array.from(grid.units, (u, i) => Math.min(u.hi, Math.max(u.lo, Math.round(real[i]))));
  let sum = g.reduce((a, b) => a + b, 0);
  while (sum !== 0) {
    const dir = sum > 0 ? -1 : 1;
    let best = -1;
    let bestGap = -Infinity;
    for (let i = 0; i < m; i++) {
      const u = grid.units[i];
      if (dir < 0 ? g[i] <= u.lo : g[i] >= u.hi) continue;
      // How far the level is past its real value in the direction we move away from.
      const gap = dir < 0 ? g[i] - real[i] : real[i] - g[i];
      if (gap > bestGap) {
        bestGap = gap;
        best = i;
      }
    }
    if (best < 0) throw new DsaPruneError('levels start: no unit can move toward the budget', { code: 'internal' });
    g[best] += dir;
    sum += dir;
  }
  return g;
}

/**
 * Switches of one offspring: `uniform` draws 1..max uniformly (the default), `evopress` the smaller of two such draws
 * (EvoPress's `min(randint(1, 3), randint(1, 3))`: P(1) = 5/9, P(2) = 3/9, P(3) = 1/9 at max 3).
 */
export function drawSwitches(rng: Rng, max: number, distribution: 'uniform' | 'evopress' = 'uniform'): number {
  const a = 1 + (rng.nextUint32() % max);
  if (distribution === 'uniform') return a;
  return Math.min(a, 1 + (rng.nextUint32() % max));
}

/** `n` distinct window indices out of `W`, drawn from `rng` (partial Fisher–Yates), ascending; all of them when n ≥ W. */
export function sampleWindows(rng: Rng, W: number, n: number): number[] {
  const all = Array.from({ length: W }, (_, i) => i);
  if (n >= W) return all;
  for (let i = 0; i < n; i++) {
    const j = i + (rng.nextUint32() % (W - i));
    const t = all[i];
    all[i] = all[j];
    all[j] = t;
  }
  return all.slice(0, n).sort((a, b) => a - b);
}

/** Per-linear sparsities of a genome (each linear prunes exactly its share; Σ over linears = round(S · W)). */
export function genomeAllocation(grid: LevelGrid, genome: ArrayLike<number>): Record<string, number> {
  const counts = unitCounts(grid, genome);
  const out: Record<string, number> = {};
  grid.units.forEach((u, i) => Object.assign(out, unitSparsities(u, counts[i])));
  return out;
}

export interface LevelStage {
  /** Search windows this stage scores on. */
  windows: number;
  /** Offspring kept for the next stage (the last stage keeps 1). */
  keep: number;
}

/**
 * The model, target, fitness and token options are the DSA search's own (searchModel), the evaluation ones (threads,
 * workers + modelDir, redis) the level evaluator's (level-eval.ts), documented there.
 */
export interface LevelSearchOptions extends Pick<
  SearchModelOptions,
  | 'method' | 'sparsity' | 'granularity' | 'fitness' | 'klTopK' | 'budget' | 'calibrationIds' | 'nsamples' | 'seqlen'
  | 'searchIds' | 'searchWindows' | 'searchSeqlen' | 'timeLimitSeconds' | 'structured'
>, Pick<LevelEvaluatorOptions, 'threads' | 'workers' | 'modelDir' | 'redis' | 'runId' | 'redisPrefix'> {
  /** Budget in full-split evaluation equivalents. */
  evaluations: number;
  /** Offspring per generation (λ, default 16). */
  offspring?: number;
  /** Stages (default: λ on ¼ of the windows → 4 on ½ → 1 on all, the parent included in the last). */
  stages?: LevelStage[];
  /** Level switches per offspring (default: 1 to 3, drawn by `switchDistribution`). */
  maxSwitches?: number;
  /** `uniform` (default): 1..maxSwitches uniformly; `evopress`: the smaller of two uniform draws (favours one switch). */
  switchDistribution?: 'uniform' | 'evopress';
  /**
   * Which search windows a stage scores. `fixed` (default): the first `windows` windows every generation, the parent
   * keeps the fitness it was accepted with. `resample` (EvoPress): every stage of every generation draws its own
   * `windows` distinct windows of the search split (from the generation's stream), and the parent is scored again
   * with the last stage's offspring on the same windows, so a candidate is never compared on other text than its rival.
   */
  sampling?: 'fixed' | 'resample';
  /**
   * Starting point (default uniform): an allocator evaluated on the dense statistics (e.g. owl(), a DSA function, a
   * levels result via levelsAllocator); its per-linear counts are snapped to the grid with the exact budget (snapToGrid).
   */
  start?: Allocator;
  step?: number;
  spread?: number;
  /** SparseGPT level database: memory budget (default 1 GiB), parent folder and disk limit (level-db.ts). */
  levelDb?: { maxMemoryBytes?: number; dir?: string; maxDiskBytes?: number };
  onPhase?: (message: string) => void;
  seed?: number;
  dense?: DenseData;
  checkpointPath?: string;
  resume?: LevelCheckpoint;
  onProgress?: (p: { generation: number; evaluations: number; budget: number; best: number }) => void;
  signal?: AbortSignal;
}

export interface LevelCheckpoint {
  version: 1;
  kind: 'levels';
  signature: Record<string, unknown>;
  generation: number;
  evaluations: number;
  parent: number[];
  parentFitness: number | null;
  history: LevelHistoryRow[];
  /** Seconds spent up to this checkpoint (a resumed run's time limit counts them). */
  elapsedSeconds?: number;
}

export interface LevelHistoryRow {
  generation: number;
  evaluations: number;
  fitness: number;
  accepted: boolean;
}

export interface LevelSearchResult {
  strategy: 'levels';
  granularity: 'block' | 'linear';
  fitness: 'ppl' | 'kl';
  /** The model the result belongs to (a levels result is refused elsewhere). */
  modelHash: string;
  best: { fitness: number; linearSparsity: Record<string, number>; blockSparsity: number[]; genome: number[] };
  grid: { quantum: number; total: number; step: number; spread: number; units: number };
  stages: LevelStage[];
  /** How offspring were made and scored (levelSearch options; `start` names the start allocator, absent = uniform). */
  search: { sampling: 'fixed' | 'resample'; switchDistribution: 'uniform' | 'evopress'; maxSwitches: number; start?: string };
  evaluations: number;
  generations: number;
  history: LevelHistoryRow[];
  stoppedBy: 'budget' | 'time' | 'aborted';
  /** Wall time of this run plus the time before its resume. */
  seconds: number;
  /** Where candidates were evaluated, and the full-split equivalents of a generation cut short by the time limit or an abort (not in `evaluations`). */
  evaluator: { where: string; discarded: number };
  /** method `structured`: what was searched (re-applied by `dsa-prune prune --method structured --allocator @result.json`). */
  structured?: { target: 'ffn'; score: 'wanda-sp' | 'magnitude' | 'flap' };
  /** SparseGPT: the level database the candidates were assembled from. */
  levelDb?: { kind: 'memory' | 'disk'; bytes: number; entries: number; seconds: number };
}

/** Run a level-switch search on `pm`. */
export async function levelSearch(pm: PrunableModel, o: LevelSearchOptions): Promise<LevelSearchResult> {
  const t0 = performance.now();
  const budget = o.budget ?? 'exact';
  if (budget !== 'exact') throw new DsaPruneError('the levels strategy counts weights exactly: it needs --budget exact');
  // method structured: one FFN width per block (structured-fitness.ts), so the units are blocks.
  const st = o.method === 'structured'
    ? checkStructuredSearch({ target: o.structured?.target, score: o.structured?.score, granularity: o.granularity ?? 'block' })
    : undefined;
  const granularity = o.granularity ?? (st ? 'block' : 'linear');
  const fitnessKind = o.fitness ?? 'kl';
  const W = o.searchWindows ?? 16;
  const sseq = o.searchSeqlen ?? Math.min(512, o.seqlen);
  const searchIds = o.searchIds.subarray(0, W * sseq);
  const cal = calibrationWindows({ calibration: { nsamples: o.nsamples, seqlen: o.seqlen, sha256: '' } } as SearchSpec, o.calibrationIds);
  const spec: SearchSpec = {
    method: o.method, sparsity: o.sparsity, budget, mode: 'fast', pattern: { kind: 'unstructured' },
    calibration: { nsamples: o.nsamples, seqlen: o.seqlen, sha256: cal.sha256 },
    search: { windows: W, seqlen: sseq, sha256: idsSha256(searchIds) }, seed: o.seed ?? 0, modelHash: pm.modelHash(),
    granularity, fitness: fitnessKind, ...(o.klTopK !== undefined ? { klTopK: o.klTopK } : {}),
    ...(st ? { structured: st } : {}),
  };
  const dense = o.dense ?? (await computeDense(pm, spec, cal.ids, o.threads));
  const linears = searchLinears(pm);
  const nBlocks = Math.max(...linears.map((l) => l.block)) + 1;
  const units = granularity === 'linear'
    ? linears.map((l) => ({ name: l.name, linears: [{ name: l.name, params: l.dIn * l.dOut }] }))
    : Array.from({ length: nBlocks }, (_, b) => ({ name: `block ${b}`, linears: linears.filter((l) => l.block === b).map((l) => ({ name: l.name, params: l.dIn * l.dOut })) }));
  const step = o.step ?? 0.05;
  const spread = o.spread ?? 0.25;
  const grid = levelGrid(units, o.sparsity, { step, spread });
  const lambda = o.offspring ?? 16;
  const sampling = o.sampling ?? 'fixed';
  const switchDistribution = o.switchDistribution ?? 'uniform';
  if (sampling !== 'fixed' && sampling !== 'resample') throw new DsaPruneError(`levels sampling must be fixed or resample, got ${String(sampling)}`);
  if (switchDistribution !== 'uniform' && switchDistribution !== 'evopress') throw new DsaPruneError(`levels switch distribution must be uniform or evopress, got ${String(switchDistribution)}`);
  const stages = o.stages ?? [
    { windows: Math.max(1, Math.floor(W / 4)), keep: Math.max(1, Math.min(lambda, 4)) },
    { windows: Math.max(1, Math.floor(W / 2)), keep: 1 },
    { windows: W, keep: 1 },
  ];
  checkStages(stages, W);
  // The start genome (uniform = all zeros), from the start allocator on the dense statistics.
  let startGenome: Int32Array | undefined;
  if (o.start) {
    const alloc = o.start.allocate({ blocks: dense.blocks, sparsity: o.sparsity, budget });
    const perLinear = new Map(linears.map((l) => [l.name, resolveLinearSparsity(alloc, l, { allocator: `levels start (${o.start!.name})` })]));
    startGenome = snapToGrid(grid, grid.units.map((u) => u.linears.reduce((a, l) => a + perLinear.get(l.name)! * l.params, 0)));
  }
  // New settings enter the signature only when not at their default, so checkpoints of earlier runs still resume.
  const signature = {
    strategy: 'levels', modelHash: spec.modelHash, method: spec.method, sparsity: spec.sparsity, granularity, fitness: fitnessKind, calibration: cal.sha256, search: spec.search.sha256, step, spread, lambda, stages, ...(st ? { structured: st } : {}),
    ...(sampling !== 'fixed' ? { sampling } : {}), ...(switchDistribution !== 'uniform' ? { switchDistribution } : {}),
    ...(o.maxSwitches !== undefined && o.maxSwitches !== 3 ? { maxSwitches: o.maxSwitches } : {}),
    ...(startGenome ? { start: Array.from(startGenome).join(',') } : {}),
  };
  if (o.resume && JSON.stringify(o.resume.signature) !== JSON.stringify(signature)) {
    throw new DsaPruneError(`the levels checkpoint was written by a search with other settings (${signatureDifference(o.resume.signature, signature)})`, {
      code: 'invalid-input', hint: 'resume with the same model, data and options, or start a new search',
    });
  }
  const elapsedBefore = o.resume?.elapsedSeconds ?? 0;
  const elapsed = () => elapsedBefore + (performance.now() - t0) / 1000;
  let db: LevelDb | undefined;
  if (spec.method === 'sparsegpt' && !o.redis) {
    o.onPhase?.('SparseGPT level database: every linear at every level of the grid, once');
    db = await buildLevelDb(pm, dense, grid, linears, { ...o.levelDb, budget, signal: o.signal });
    o.onPhase?.(`level database: ${db.entries} pruned linears, ${(db.bytes / 1024 ** 2).toFixed(1)} MiB in ${db.kind === 'memory' ? 'memory' : 'a temporary folder'}, ${db.seconds.toFixed(1)} s`);
  }
  let evaluator: LevelEvaluator;
  try {
    evaluator = await createLevelEvaluator({
      pm, spec, calibrationIds: cal.ids, searchIds, dense, linears, threads: o.threads, workers: o.workers, modelDir: o.modelDir,
      redis: o.redis, runId: o.runId, redisPrefix: o.redisPrefix, levelDb: db, onLog: o.onPhase, signal: o.signal,
    });
  } catch (e) {
    db?.close();
    throw e;
  }
  o.onPhase?.(`levels search: evaluating in ${evaluator.where}, λ = ${lambda}, stages ${stages.map((s) => `${s.windows}w→${s.keep}`).join(', ')}`);
  const allocOf = (g: ArrayLike<number>) => {
    const linearSparsity = genomeAllocation(grid, g);
    const num = new Array<number>(nBlocks).fill(0);
    const den = new Array<number>(nBlocks).fill(0);
    for (const l of linears) {
      num[l.block] += linearSparsity[l.name] * l.dIn * l.dOut;
      den[l.block] += l.dIn * l.dOut;
    }
    return { linearSparsity, blockSparsity: num.map((x, b) => (den[b] > 0 ? x / den[b] : o.sparsity)) };
  };
  let parent: Int32Array = o.resume ? Int32Array.from(o.resume.parent) : startGenome ?? new Int32Array(grid.units.length);
  let evaluations = o.resume?.evaluations ?? 0;
  let generation = o.resume?.generation ?? 0;
  let discarded = 0;
  const history: LevelHistoryRow[] = o.resume ? o.resume.history.slice() : [];
  let stoppedBy: LevelSearchResult['stoppedBy'] = 'budget';
  /** Thrown inside a generation when the time limit or an abort cuts it short. */
  class Stop extends Error {
    constructor(readonly why: 'time' | 'aborted') {
      super(why);
    }
  }
  const stopReason = (): 'time' | 'aborted' | undefined =>
    o.signal?.aborted ? 'aborted' : o.timeLimitSeconds !== undefined && elapsed() >= o.timeLimitSeconds ? 'time' : undefined;
  // Fitness of genomes on `windows` windows, in chunks of the evaluator's parallelism; the limits are checked before each chunk.
  const evalOn = async (gs: Int32Array[], windows: number | readonly number[]): Promise<number[]> => {
    const n = typeof windows === 'number' ? windows : windows.length;
    const out: number[] = [];
    const step = Number.isFinite(evaluator.parallel) ? evaluator.parallel : gs.length;
    for (let i = 0; i < gs.length; i += step) {
      const why = stopReason();
      if (why) throw new Stop(why);
      const part = gs.slice(i, i + step);
      let f: number[];
      try {
        f = await evaluator.evaluate(part.map(allocOf), windows, o.signal);
      } catch (e) {
        if (o.signal?.aborted) throw new Stop('aborted');
        throw e;
      }
      out.push(...f);
      evaluations += (part.length * n) / W;
    }
    return out;
  };
  try {
    let parentFitness: number;
    if (o.resume) parentFitness = o.resume.parentFitness ?? Infinity;
    else {
      try {
        // resample: the start is scored on a sample of the last stage's size (generation 0's stream); fixed: on all windows.
        [parentFitness] = await evalOn([parent], sampling === 'resample' ? sampleWindows(new Rng(mixSeed(spec.seed, 0)), W, stages[stages.length - 1].windows) : W);
      } catch (e) {
        if (e instanceof Stop) throw abortedError(`levels search ${e.why === 'time' ? 'ran out of time' : 'aborted'} before its first evaluation`);
        throw e;
      }
      history.push({ generation: 0, evaluations, fitness: parentFitness, accepted: true });
    }
    const perGeneration = stages.reduce((a, s, i) => a + (i === 0 ? lambda : stages[i - 1].keep) * (s.windows / W), 0)
      + (sampling === 'resample' ? stages[stages.length - 1].windows / W : 0);
    while (evaluations + perGeneration <= o.evaluations + 1e-9) {
      const why = stopReason();
      if (why) {
        stoppedBy = why;
        break;
      }
      const rng = new Rng(mixSeed(spec.seed, generation + 1));
      const maxSw = o.maxSwitches ?? 3;
      // The uniform distribution draws exactly as before the option existed (same streams, same offspring).
      let pool: { g: Int32Array; f: number; parent?: boolean }[] = Array.from({ length: lambda }, () => ({ g: levelSwitch(grid, parent, rng, drawSwitches(rng, maxSw, switchDistribution)), f: Infinity }));
      const atStart = evaluations;
      try {
        for (let si = 0; si < stages.length; si++) {
          const st = stages[si];
          const last = si === stages.length - 1;
          // resample: the parent joins the last stage first (ties keep it), on the same fresh windows.
          if (sampling === 'resample' && last) pool.unshift({ g: parent, f: Infinity, parent: true });
          const f = await evalOn(pool.map((c) => c.g), sampling === 'resample' ? sampleWindows(rng, W, st.windows) : st.windows);
          pool.forEach((c, i) => (c.f = f[i]));
          // Stable sort: ties keep the offspring order, so the pool and the serial evaluator pick the same survivors.
          pool.sort((a, b) => a.f - b.f);
          pool = pool.slice(0, st.keep);
        }
      } catch (e) {
        if (!(e instanceof Stop)) throw e;
        // The generation is dropped: the result is the state of the last checkpoint, as a resume would see it.
        discarded += evaluations - atStart;
        evaluations = atStart;
        stoppedBy = e.why;
        break;
      }
      generation++;
      const best = pool[0];
      let accepted: boolean;
      if (sampling === 'resample') {
        // The parent was scored with the offspring: the winner of the last stage is the new parent (ties: the parent).
        accepted = !best.parent;
        parent = best.g;
        parentFitness = best.f;
      } else {
        accepted = best.f < parentFitness;
        if (accepted) {
          parent = best.g;
          parentFitness = best.f;
        }
      }
      history.push({ generation, evaluations, fitness: parentFitness, accepted });
      o.onProgress?.({ generation, evaluations, budget: o.evaluations, best: parentFitness });
      if (o.checkpointPath) {
        const ck: LevelCheckpoint = { version: 1, kind: 'levels', signature, generation, evaluations, parent: Array.from(parent), parentFitness: Number.isFinite(parentFitness) ? parentFitness : null, history, elapsedSeconds: elapsed() };
        await writeAtomicJson(o.checkpointPath, ck);
      }
    }
    const a = allocOf(parent);
    return {
      strategy: 'levels', granularity, fitness: fitnessKind, modelHash: spec.modelHash, ...(st ? { structured: st } : {}),
      best: { fitness: parentFitness, linearSparsity: a.linearSparsity, blockSparsity: a.blockSparsity, genome: Array.from(parent) },
      grid: { quantum: grid.quantum, total: grid.total, step, spread, units: grid.units.length },
      stages, search: { sampling, switchDistribution, maxSwitches: o.maxSwitches ?? 3, ...(o.start ? { start: o.start.describe() } : {}) },
      evaluations, generations: generation, history, stoppedBy, seconds: elapsed(),
      evaluator: { where: evaluator.where, discarded },
      ...(db ? { levelDb: { kind: db.kind, bytes: db.bytes, entries: db.entries, seconds: db.seconds } } : {}),
    };
  } finally {
    await evaluator.close();
    db?.close();
  }
}


/** Stages must score 1..W windows and keep ≥ 1 (the last keeps one: the generation's winner). */
function checkStages(stages: LevelStage[], W: number): void {
  if (stages.length === 0) throw new DsaPruneError('levels: at least one stage is needed', { hint: 'e.g. --level-stages 1:4,2:1' });
  for (const [i, st] of stages.entries()) {
    if (!Number.isInteger(st.windows) || st.windows < 1 || st.windows > W) {
      throw new DsaPruneError(`levels stage ${i + 1} scores ${st.windows} windows; it must be an integer in [1, ${W}] (the search windows)`, { hint: 'use fewer windows in --level-stages or more --search-windows' });
    }
    if (!Number.isInteger(st.keep) || st.keep < 1) throw new DsaPruneError(`levels stage ${i + 1} keeps ${st.keep}; it must be an integer ≥ 1`, { hint: 'e.g. --level-stages 1:4,2:1' });
  }
}

/**
 * `--level-stages` as `windows:keep,…` (e.g. `1:8,4:2,16:1`: every offspring on 1 window, the best 8 on 4, the best 2
 * on 16, one kept). The last stage keeps one whatever it says.
 */
export function parseLevelStages(text: string): LevelStage[] {
  const items = String(text).split(',').map((x) => x.trim()).filter((x) => x !== '');
  const out = items.map((it) => {
    const m = /^(\d+):(\d+)$/.exec(it);
    if (!m) throw new DsaPruneError(`--level-stages ${text}: "${it}" is not <windows>:<keep>`, { hint: 'e.g. --level-stages 1:8,4:2,16:1' });
    return { windows: Number(m[1]), keep: Number(m[2]) };
  });
  if (out.length === 0) throw new DsaPruneError('--level-stages is empty', { hint: 'e.g. --level-stages 1:8,4:2,16:1' });
  out[out.length - 1].keep = 1;
  return out;
}

/** What a levels checkpoint (version 1) holds: LevelCheckpoint. */
export const levelCheckpointSchema = obj(
  {
    version: v.literal(1, 'version 1 (the checkpoint format this dsa-prune writes)'),
    kind: v.literal('levels', '"levels" (a levels search checkpoint)'),
    signature: plainObject('an object of settings'),
    generation: count(),
    evaluations: v.pipe(v.number('a number ≥ 0'), v.minValue(0, 'a number ≥ 0')),
    parent: v.array(v.pipe(v.number('an integer level'), v.integer('an integer level')), 'an array of levels, one per unit'),
    parentFitness: v.nullable(v.number('a number (null when not finite)')),
    history: v.array(
      obj(
        { generation: count(), evaluations: v.number('a number'), fitness: v.nullable(v.number('a number (null when not finite)')), accepted: v.boolean('true or false') },
        'a history row { generation, evaluations, fitness, accepted }',
      ),
      'an array of history rows',
    ),
    elapsedSeconds: v.optional(v.number('a number of seconds')),
  },
  'a levels checkpoint object',
);

/** Read a levels checkpoint: checked against levelCheckpointSchema (`invalid-data` naming the file and field). */
export async function readLevelCheckpoint(file: string): Promise<LevelCheckpoint> {
  const hint = 'pass the file written by an earlier `dsa-prune search --strategy levels --checkpoint` run';
  const data = await readCheckpointJson(file, 'levels checkpoint', hint);
  parseSchema(levelCheckpointSchema, data, { file, hint: `not a levels search checkpoint (version 1): ${hint}` });
  const ck = data as LevelCheckpoint;
  // JSON has no Infinity: a non-finite fitness was written as null.
  for (const h of ck.history) if ((h.fitness as number | null) === null) h.fitness = Infinity;
  return ck;
}

const SPARSITY = 'a sparsity in [0, 1]';

/** What `--allocator @levels.json` reads of a levels result (LevelSearchResult; the rest is the search's record). */
export const levelsAllocationSchema = obj(
  {
    strategy: v.optional(v.literal('levels', '"levels"')),
    modelHash: v.pipe(v.string('a model hash'), v.minLength(1, 'a model hash')),
    granularity: v.optional(v.picklist(['block', 'linear'], '"block" or "linear"')),
    best: obj(
      {
        linearSparsity: v.pipe(
          plainObject('an object of linear name → sparsity'),
          v.record(v.string(), v.pipe(v.number(SPARSITY), v.minValue(0, SPARSITY), v.maxValue(1, SPARSITY)), 'an object of linear name → sparsity'),
        ),
        blockSparsity: v.optional(numbers()),
      },
      'the best allocation: { "linearSparsity", … }',
    ),
  },
  'a JSON object',
);

/**
 * The allocator of a levels result: its per-linear sparsities, on the model it was found on only. Refused (before any
 * work) when `modelHash` differs from the result's: a levels result names this model's linears and was selected on
 * this model's weights; it is not a function that transfers (a DSA result is: `--allocator @search.json`).
 * `data` is a LevelSearchResult or its parsed JSON, checked against levelsAllocationSchema (a bad one is a
 * DsaPruneError `invalid-data` naming `source` and the field).
 */
export function levelsAllocator(data: unknown, modelHash: string, source = 'the levels result'): Allocator {
  const checked = checkSchema(levelsAllocationSchema, data);
  if (!checked.ok) {
    throw new DsaPruneError(`${source}: ${checked.problem.text}`, {
      code: 'invalid-data', hint: 'pass the JSON written by `dsa-prune search --strategy levels --out`',
    });
  }
  const result = checked.value;
  if (result.modelHash !== modelHash) {
    throw new DsaPruneError(`${source} was found on another model (model hash ${result.modelHash.slice(0, 16)}…, this model ${modelHash.slice(0, 16)}…): a levels allocation applies only to the model it was searched on`, {
      hint: 'run `dsa-prune search --strategy levels` on this model, or use a DSA search result (a function of the statistics, it transfers to other models)',
    });
  }
  const map = { ...result.best.linearSparsity };
  return {
    name: 'levels',
    describe: () => `levels: per-linear allocation found by the level-switch search (${Object.keys(map).length} linears)`,
    needsStatistics: false,
    granularity: 'linear',
    allocate(input) {
      const linearSparsity: Record<string, number> = {};
      const missing: string[] = [];
      for (const b of input.blocks) for (const l of b.linears) {
        const s = map[l.name];
        if (s === undefined) missing.push(l.name);
        else linearSparsity[l.name] = s;
      }
      if (missing.length) throw new DsaPruneError(`${source} has no sparsity for ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ` and ${missing.length - 3} more` : ''}`);
      const blockSparsity = input.blocks.map((b) => (b.params > 0 ? b.linears.reduce((a, l) => a + linearSparsity[l.name] * l.params, 0) / b.params : input.sparsity));
      const W = input.blocks.reduce((x, b) => x + b.params, 0);
      const mean = W > 0 ? input.blocks.reduce((x, b, i) => x + blockSparsity[i] * b.params, 0) / W : input.sparsity;
      if (Math.abs(mean - input.sparsity) > 1e-3) {
        throw new DsaPruneError(`${source} realises sparsity ${mean.toFixed(4)} on these linears, the request asks ${input.sparsity}`, {
          hint: `a levels allocation is found for one sparsity: prune with --sparsity ${mean.toFixed(4)}, or search again at ${input.sparsity}`,
        });
      }
      return { blockSparsity, linearSparsity };
    },
  };
}
