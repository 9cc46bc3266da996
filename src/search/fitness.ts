/**
 * Fitness of a candidate allocation function = perplexity, on a fixed subset of the search split, of the model pruned
 * with the candidate's allocation.
 *
 * `fast` (default): one-shot pruning from the cached DENSE statistics, through the method's fast path
 * (`PruningMethod.prepare`, src/methods/fast.ts): Wanda and magnitude keep each linear's pruning order, so a candidate
 * only re-masks; SparseGPT runs its one-shot solver per linear from the dense Gram; a method without a fast path
 * (a user's) prunes a copy of the dense weight with `prune()`. Methods come from the registry by name (a user's
 * through registerMethod / `--plugin`), this module names none. The pruned weights are fed to ONE onnxruntime session
 * whose prunable weights are graph inputs (model/weight-inputs.ts), so no session is rebuilt per candidate.
 *
 * `faithful`: the sequential prune of src/prune.ts (pruneModel with a dsa() allocator), then the perplexity through the
 * model's own session, then the dense weights are restored. Slow; the search always re-applies its best candidate this
 * way at the end.
 *
 * Determinism: the same candidate gives the same masks, the same feeds and — measured on bench-12l, onnxruntime-node
 * 1.30 CPU — the same NLL sums bit for bit with 1 or 2 intra-op threads, so workers with any thread count agree.
 */
import { createHash } from 'node:crypto';
import { DsaPruneError } from '../errors.js';
import type { InputStats, LinearInfo } from '../types.js';
import type { PrunableModel } from '../model/index.js';
import { weightFedSession } from '../model/weight-inputs.js';
import { transpose } from '../kernels/dense.js';
import type { BlockAllocationStats } from '../allocators/types.js';
import { dsa } from '../allocators/dsa-allocator.js';
import { resolveLinearSparsity } from '../allocators/resolve.js';
import { atGranularity } from '../allocators/granularity.js';
import { getMethod, prepareLinear, type PreparedLinear, type PruningMethod } from '../methods/index.js';
import { denseAllocationStats, pruneModel } from '../prune.js';
import { denseStatistics } from '../calibration/index.js';
import { perplexity } from '../eval/perplexity.js';
import { createTopKCache, klToCache, type TopKCache } from '../eval/kl.js';
import { sessionOf } from '../eval/forward.js';
import type { DecoderSession } from '../eval/forward.js';
import { takeWindows } from '../data/text.js';
import { candidateKey, type Candidate, type Evaluation, type SearchSpec } from './types.js';
import { checkStructuredSearch, structuredFastPath } from './structured-fitness.js';

/** Dense statistics a fitness can be given instead of computing them (the pool shares the main thread's). */
export interface DenseData {
  blocks: BlockAllocationStats[];
  stats: Map<string, InputStats>;
}

/** Options of createFitness(). */
export interface FitnessOptions {
  /** onnxruntime intra-op threads of the evaluation session (default 1). */
  threads?: number;
  /** Dense statistics already computed for this model and calibration set (skips the dense pass). */
  dense?: DenseData;
  /** Sequences per onnxruntime run for the perplexity (default 2, or fewer when there are fewer search windows). */
  batchSize?: number;
  /** Name reported in Evaluation.worker. */
  worker?: string;
  /** SparseGPT, fast mode: a linear's weights [dOut × dIn] already pruned at `sparsity` (the level database, level-db.ts), or undefined to prune here. */
  prunedWeight?: (l: LinearInfo, sparsity: number) => Float32Array | undefined | Promise<Float32Array | undefined>;
}

/** The fitness number of one pruned model: perplexity, or mean KL to the dense model's cached top-k (spec.fitness). */
async function score(session: DecoderSession, config: Record<string, unknown> | undefined, ids: Int32Array, seqlen: number, batchSize: number, kl: TopKCache | undefined, signal?: AbortSignal, rows?: number | readonly number[]): Promise<number> {
  const windows = typeof rows === 'object' ? rows : undefined;
  const v = kl
    ? (await klToCache(session, ids, kl, { batchSize, config, signal, ...(windows ? { windows } : { rows: rows as number | undefined }) })).kl
    : (await perplexity({ sessions: { model: session }, config }, windows ? pickWindows(ids, seqlen, windows) : rows ? ids.subarray(0, (rows as number) * seqlen) : ids, { seqlen, batchSize, signal })).ppl;
  return Number.isFinite(v) ? v : Infinity;
}

/** The windows `windows` (indices) of `ids` [n × seqlen], concatenated in that order; each index checked. */
function pickWindows(ids: Int32Array, seqlen: number, windows: readonly number[]): Int32Array {
  const n = Math.floor(ids.length / seqlen);
  const out = new Int32Array(windows.length * seqlen);
  windows.forEach((w, i) => {
    if (!Number.isInteger(w) || w < 0 || w >= n) throw new DsaPruneError(`search window ${w} is not one of the ${n} search windows`, { code: 'internal' });
    out.set(ids.subarray(w * seqlen, (w + 1) * seqlen), i * seqlen);
  });
  return out;
}

export interface Fitness {
  /**
   * Fitness of a candidate. `blockSparsity`, when given, is the candidate's allocation already computed by the caller
   * (candidateAllocation on the same dense blocks): a worker thread then skips scoring the block vectors again.
   */
  evaluate(c: Candidate, signal?: AbortSignal, blockSparsity?: number[]): Promise<Evaluation>;
  /** Dense block statistics (z vectors): the search space checks candidates on them. */
  denseBlocks: BlockAllocationStats[];
  /** Dense input statistics per linear (sq, and gram for SparseGPT). */
  denseStats: Map<string, InputStats>;
  /** Block sparsities a candidate gets (no evaluation). */
  allocation(c: Candidate): number[];
  /** Perplexity of the model pruned with a given block allocation (e.g. uniform or OWL, for comparison). Fast mode only. */
  evaluateAllocation?(blockSparsity: number[], signal?: AbortSignal): Promise<Evaluation>;
  /**
   * Fitness of the model pruned with a given allocation (per-linear entries resolved by resolveLinearSparsity), on the
   * first `windows` search windows (default all), or on the windows listed in `windowIndices` (0-based, in that
   * order; overrides `windows`): the level-switch search's multi-stage evaluation. Fast mode only.
   */
  evaluateLinears?(alloc: { blockSparsity: number[]; linearSparsity?: Record<string, number> }, o?: { windows?: number; windowIndices?: readonly number[]; signal?: AbortSignal }): Promise<Evaluation>;
  close(): Promise<void>;
}

/** sha256 of int32 ids (little-endian), as the reference and the pipeline hash token windows. */
export function idsSha256(ids: Int32Array): string {
  return createHash('sha256').update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength)).digest('hex');
}

/** The linears a search prunes: every prunable linear inside the decoder blocks. */
export function searchLinears(pm: PrunableModel): LinearInfo[] {
  return pm.linears.filter((l) => l.block >= 0 && l.role !== 'lm_head');
}

/** Calibration windows [nsamples × seqlen] and their hash, cut like the pipeline cuts them. */
export function calibrationWindows(spec: SearchSpec, calibrationIds: Int32Array): { ids: Int32Array; nsamples: number; seqlen: number; sha256: string; source: string } {
  const { nsamples, seqlen } = spec.calibration;
  const ids = calibrationIds.length === nsamples * seqlen ? calibrationIds : takeWindows(calibrationIds, seqlen, nsamples, { purpose: 'calibration' });
  return { ids, nsamples, seqlen, sha256: idsSha256(ids), source: 'search' };
}

/** Dense statistics of the search (sq for every linear, gram too when the method needs it) and the block vectors. */
export async function computeDense(pm: PrunableModel, spec: SearchSpec, calibrationIds: Int32Array, threads?: number): Promise<DenseData> {
  // structured (wanda-sp / magnitude channel scores): Σx² of every linear is all it reads; flap adds Σx.
  const gram = spec.method === 'structured' ? false : searchMethod(spec.method).needs.gram;
  const cal = calibrationWindows(spec, calibrationIds);
  const linears = searchLinears(pm);
  const dense = await denseAllocationStats(pm, cal, linears, { threads });
  if (spec.method === 'structured' && spec.structured?.score === 'flap') {
    // FLAP's score and bias compensation read Σx too (the structured pipeline's one-shot pass asks the same).
    const withSum = await denseStatistics(pm, cal.ids, { nsamples: cal.nsamples, seqlen: cal.seqlen, needs: { sq: true, gram: false, sum: true }, threads });
    return { blocks: dense.blocks, stats: withSum };
  }
  if (!gram) return dense;
  const withGram = await denseStatistics(pm, cal.ids, { nsamples: cal.nsamples, seqlen: cal.seqlen, needs: { sq: true, gram: true }, threads });
  return { blocks: dense.blocks, stats: withGram };
}

/**
 * The registered method a search prunes with: a built-in or one registered through registerMethod(). Unknown →
 * DsaPruneError `invalid-input` naming the known ones; in a worker thread or a Redis worker the module that registers
 * it must be loaded there too (`plugins` / `--plugin`).
 */
export function searchMethod(name: string): PruningMethod {
  try {
    return getMethod(name);
  } catch (e) {
    throw new DsaPruneError(`search: ${(e as Error).message}`, {
      code: 'invalid-input',
      hint: 'a user method must be registered (registerMethod) in every process and thread that evaluates: pass its module with --plugin <module.js> (search, worker), or as `plugins` to searchModel / createPool',
    });
  }
}

function checkSpec(spec: SearchSpec): PruningMethod | undefined {
  if (spec.method === 'structured') {
    if (!spec.structured) throw new DsaPruneError('search: a structured spec needs its `structured` part ({ target, score })', { code: 'invalid-input' });
    checkStructuredSearch({ ...spec.structured, mode: spec.mode, granularity: spec.granularity });
    if (!(spec.sparsity > 0 && spec.sparsity < 1)) throw new DsaPruneError(`search: sparsity must be in (0, 1), got ${spec.sparsity}`);
    if (spec.budget !== 'exact') throw new DsaPruneError('search --method structured uses the exact budget (whole channels, exact to one channel)', { code: 'invalid-input', hint: 'Drop --budget reference.' });
    if (spec.fitness !== undefined && spec.fitness !== 'ppl' && spec.fitness !== 'kl') throw new DsaPruneError(`search: fitness must be ppl or kl, got ${String(spec.fitness)}`);
    return undefined;
  }
  const method = searchMethod(spec.method);
  if (spec.pattern && spec.pattern.kind === 'nm') {
    throw new DsaPruneError(`search: an N:M pattern (${spec.pattern.n}:${spec.pattern.m}) prunes the same fraction of every layer, so there is no allocation to search`, {
      hint: 'search with the unstructured pattern',
    });
  }
  if (!(spec.sparsity > 0 && spec.sparsity < 1)) throw new DsaPruneError(`search: sparsity must be in (0, 1), got ${spec.sparsity}`);
  if (spec.mode !== 'fast' && spec.mode !== 'faithful') throw new DsaPruneError(`search: mode must be fast or faithful, got ${String(spec.mode)}`);
  if (spec.fitness !== undefined && spec.fitness !== 'ppl' && spec.fitness !== 'kl') throw new DsaPruneError(`search: fitness must be ppl or kl, got ${String(spec.fitness)}`);
  method.validate?.({ sparsity: spec.sparsity, pattern: { kind: 'unstructured' }, budget: spec.budget });
  return method;
}

/** Calls of `fn` one after the other (the session / the model is one resource); concurrent callers queue. */
function serial<A extends unknown[], R>(fn: (...a: A) => Promise<R>): (...a: A) => Promise<R> {
  let queue: Promise<unknown> = Promise.resolve();
  return (...a: A) => {
    const p = queue.then(() => fn(...a));
    queue = p.catch(() => undefined);
    return p;
  };
}

/** A fitness run: a candidate, an allocation or a per-linear allocation, on all windows, the first n or a list. */
type GivenAllocation = { blockSparsity: number[]; linearSparsity?: Record<string, number> };
type FitnessRun = (c: Candidate | number[] | GivenAllocation, signal?: AbortSignal, given?: number[], rows?: number | readonly number[]) => Promise<Evaluation>;

/**
 * The evaluator entry points shared by the unstructured and the structured fitness, one after the other on one
 * session: one place maps the options (window lists included) onto a run.
 */
function entryPoints(run: FitnessRun, dense: DenseData, spec: SearchSpec): Pick<Fitness, 'denseBlocks' | 'denseStats' | 'allocation' | 'evaluate' | 'evaluateAllocation' | 'evaluateLinears'> {
  const serialRun = serial(run);
  return {
    denseBlocks: dense.blocks,
    denseStats: dense.stats,
    allocation: (c) => allocate(c, dense.blocks, spec).blockSparsity,
    evaluate: (c, signal, blockSparsity) => serialRun(c, signal, blockSparsity),
    evaluateAllocation: (blockSparsity, signal) => serialRun(blockSparsity, signal),
    evaluateLinears: (alloc, o = {}) => serialRun(alloc, o.signal, undefined, o.windowIndices ?? o.windows),
  };
}

/** The allocator of a candidate at the spec's granularity. */
export function candidateAllocator(c: Candidate, spec: Pick<SearchSpec, 'granularity'>) {
  return atGranularity(dsa(c.expression, { lambda: c.lambda }), spec.granularity ?? 'block');
}

/** The block sparsities (and per-linear sparsities at linear granularity) of a candidate on the dense blocks. */
function allocate(c: Candidate, blocks: BlockAllocationStats[], spec: SearchSpec) {
  return candidateAllocator(c, spec).allocate({ blocks, sparsity: spec.sparsity, budget: spec.budget });
}

/** A candidate's block sparsities (what evaluate() prunes with); cheap where the search already scored it. */
export function candidateAllocation(c: Candidate, blocks: BlockAllocationStats[], spec: SearchSpec): number[] {
  return allocate(c, blocks, spec).blockSparsity;
}

/**
 * Build the fitness of `spec` on `pm`: dense statistics once (or `options.dense`), then `evaluate(candidate)`.
 * `data.searchIds` are the search-split tokens (the first `spec.search.windows` windows of `spec.search.seqlen` are used).
 */
export async function createFitness(
  pm: PrunableModel,
  spec: SearchSpec,
  data: { calibrationIds: Int32Array; searchIds: Int32Array },
  options: FitnessOptions = {},
): Promise<Fitness> {
  const method = checkSpec(spec);
  const { windows, seqlen } = spec.search;
  const need = windows * seqlen;
  if (data.searchIds.length < need) {
    throw new DsaPruneError(`search split too short: ${windows} windows of ${seqlen} tokens need ${need} tokens, it has ${data.searchIds.length}`, {
      hint: 'use a longer --search-text, fewer --search-windows or a shorter --search-seqlen',
    });
  }
  const searchIds = data.searchIds.subarray(0, need);
  const sha = idsSha256(searchIds);
  if (spec.search.sha256 && spec.search.sha256 !== sha) {
    throw new DsaPruneError('search split tokens differ from the ones the search was started with (sha256 mismatch)', {
      hint: 'workers must tokenize the same --search-text with the same tokenizer',
    });
  }
  if (spec.modelHash && spec.modelHash !== pm.modelHash()) {
    throw new DsaPruneError(`model ${pm.source.dir} differs from the one the search runs on (model hash mismatch)`, {
      hint: 'every worker must load the same model files',
    });
  }
  const dense = options.dense ?? (await computeDense(pm, spec, data.calibrationIds, options.threads));
  const linears = searchLinears(pm);
  if (!method) return structuredFitness(pm, spec, searchIds, dense, linears, options);
  // The search prunes block linears only (searchLinears): every one needs an entry, no fallback (src/allocators/resolve.ts).
  const sparsityOf = (alloc: { blockSparsity: number[]; linearSparsity?: Record<string, number> }, l: LinearInfo) => resolveLinearSparsity(alloc, l, { allocator: 'search' });
  // 2 sequences per run: measured fastest on bench-12l (the activations stay in cache), and it leaves the cores to
  // parallel workers rather than to one big matrix product (docs/search.md, "Parallel").
  const batchSize = options.batchSize ?? Math.min(2, windows);

  if (spec.mode === 'faithful') {
    const originals = new Map(linears.map((l) => [l.name, pm.readWeight(l)]));
    // The dense top-k, from the model as it is now (dense), once.
    const klCache = spec.fitness === 'kl'
      ? await createTopKCache(sessionOf(pm.model as never), searchIds, windows, seqlen, { k: spec.klTopK, batchSize, config: pm.config })
      : undefined;
    return {
      denseBlocks: dense.blocks,
      denseStats: dense.stats,
      allocation: (c) => allocate(c, dense.blocks, spec).blockSparsity,
      evaluate: serial(async (c, signal) => {
        const t0 = performance.now();
        const report = await pruneModel(pm.model, {
          method: spec.method, sparsity: spec.sparsity, budget: spec.budget, allocator: candidateAllocator(c, spec),
          calibration: { ids: data.calibrationIds }, nsamples: spec.calibration.nsamples, seqlen: spec.calibration.seqlen,
          source: pm.source.dir, threads: options.threads, signal,
        });
        let ppl: number;
        try {
          ppl = await score(sessionOf(pm.model as never), pm.config, searchIds, seqlen, batchSize, klCache, signal);
        } finally {
          for (const l of linears) pm.writeWeight(l, originals.get(l.name)!);
          await pm.commit();
        }
        return {
          key: candidateKey(c), fitness: Number.isFinite(ppl) ? ppl : Infinity, blockSparsity: report.targetBlockSparsity,
          seconds: (performance.now() - t0) / 1000, ...(options.worker ? { worker: options.worker } : {}),
        };
      }),
      async close() {},
    };
  }

  // fast: one session whose prunable weights are inputs (model/weight-inputs.ts), fed each candidate's weights.
  const fed = await weightFedSession(pm, linears.map((l) => l.weight), { threads: options.threads });
  const wrapped = fed.session;

  // Per linear: the method's prepared fast path (it keeps what it needs of the dense weight) and the feed buffer in
  // the initializer's stored layout. A prepared linear that writes another layout goes through one shared scratch.
  // `fed`: the sparsity the feed buffer holds now (a candidate that gives a linear the same sparsity as the previous
  // one skips it: the method's fast path and the level database are deterministic, so the buffer would be rewritten
  // with the same values — a level-switch offspring changes 2–6 of the linears).
  interface Slot { l: LinearInfo; layout: 'in_out' | 'out_in'; prepared: PreparedLinear; buf: Float32Array<ArrayBuffer>; fed?: number }
  const slots: Slot[] = [];
  let scratch = new Float32Array(0);
  try {
    for (const l of linears) {
      const layout = pm.layout.get(l.name) ?? 'in_out';
      const stats = dense.stats.get(l.name);
      if ((method.needs.sq || method.needs.gram) && !stats) throw new DsaPruneError(`no dense statistics for ${l.name}`, { code: 'internal' });
      const prepared = await prepareLinear(method, { weight: pm.readWeight(l), dOut: l.dOut, dIn: l.dIn, stats, budget: spec.budget, layout, name: l.name });
      if ((prepared.layout ?? 'out_in') !== layout && scratch.length < l.dOut * l.dIn) scratch = new Float32Array(l.dOut * l.dIn);
      slots.push({ l, layout, prepared, buf: new Float32Array(l.dOut * l.dIn) });
    }
  } catch (e) {
    await fed.release();
    throw e;
  }

  // KL fitness: the dense model's top-k from this same session, fed the dense weights, once.
  let klCache: TopKCache | undefined;
  if (spec.fitness === 'kl') {
    for (const s of slots) fed.setWeight(s.l.weight, pm.readInitializer(s.l.weight));
    klCache = await createTopKCache(wrapped, searchIds, windows, seqlen, { k: spec.klTopK, batchSize, config: pm.config });
  }

  const maskCandidate = async (alloc: { blockSparsity: number[]; linearSparsity?: Record<string, number> }, signal?: AbortSignal) => {
    for (const s of slots) {
      const sp = sparsityOf(alloc, s.l);
      if (s.fed === sp) continue;
      s.fed = undefined; // until the buffer is whole again (an abort may stop apply() half way)
      // A weight pruned ahead of time ([dOut × dIn], e.g. the SparseGPT level database of a levels search).
      const pre = await options.prunedWeight?.(s.l, sp);
      if (pre) {
        if (s.layout === 'out_in') s.buf.set(pre);
        else transpose(pre, s.l.dOut, s.l.dIn, s.buf);
      } else if ((s.prepared.layout ?? 'out_in') === s.layout) await s.prepared.apply(sp, s.buf, signal);
      else {
        // [dOut × dIn] from the method, stored as [dIn × dOut] (or the other way round).
        const n = s.l.dOut * s.l.dIn;
        const tmp = scratch.subarray(0, n);
        await s.prepared.apply(sp, tmp, signal);
        if (s.layout === 'in_out') transpose(tmp, s.l.dOut, s.l.dIn, s.buf);
        else transpose(tmp, s.l.dIn, s.l.dOut, s.buf);
      }
      fed.setWeight(s.l.weight, s.buf);
      s.fed = sp;
    }
  };

  // One evaluation at a time on this session (callers may fire several; they queue).
  type Given = GivenAllocation;
  const run: FitnessRun = async (c, signal, given, rows) => {
    const t0 = performance.now();
    const isCandidate = !Array.isArray(c) && 'expression' in c;
    // A caller's block sparsities stand for the allocation only at block granularity.
    const alloc = Array.isArray(c) ? { blockSparsity: c } : !isCandidate ? (c as Given) : given && spec.granularity !== 'linear' ? { blockSparsity: given } : allocate(c as Candidate, dense.blocks, spec);
    await maskCandidate(alloc, signal);
    const fitness = await score(wrapped, pm.config, searchIds, seqlen, batchSize, klCache, signal, rows);
    return {
      key: Array.isArray(c) ? `allocation:${c.join(',')}` : isCandidate ? candidateKey(c as Candidate) : 'linears', fitness,
      blockSparsity: alloc.blockSparsity, seconds: (performance.now() - t0) / 1000, ...(options.worker ? { worker: options.worker } : {}),
    };
  };
  return {
    ...entryPoints(run, dense, spec),
    async close() {
      await fed.release();
    },
  };
}

/**
 * The fast fitness of a structured search (`spec.method === 'structured'`): the candidate's block shares → whole FFN
 * channels per block (the pipeline's budget) → the down projections fed with the removed channels zeroed
 * (structured-fitness.ts), on one weights-as-inputs session; perplexity or KL on the search split.
 */
async function structuredFitness(
  pm: PrunableModel, spec: SearchSpec, searchIds: Int32Array, dense: DenseData, linears: LinearInfo[], options: FitnessOptions,
): Promise<Fitness & { kept(blockSparsity: number[]): Int32Array[] }> {
  const { windows, seqlen } = spec.search;
  const batchSize = options.batchSize ?? Math.min(2, windows);
  const fast = await structuredFastPath(pm, spec.structured!, dense, linears, spec.sparsity, options.threads);
  let klCache: TopKCache | undefined;
  try {
    if (spec.fitness === 'kl') {
      fast.setDense();
      klCache = await createTopKCache(fast.fed.session, searchIds, windows, seqlen, { k: spec.klTopK, batchSize, config: pm.config });
    }
  } catch (e) {
    await fast.release();
    throw e;
  }
  type Given = GivenAllocation;
  const run: FitnessRun = async (c, signal, given, rows) => {
    const t0 = performance.now();
    const isCandidate = !Array.isArray(c) && 'expression' in c;
    const blockSparsity = Array.isArray(c) ? c : !isCandidate ? (c as Given).blockSparsity : given ?? allocate(c as Candidate, dense.blocks, spec).blockSparsity;
    // A share that would empty a block's FFN (the budget refuses it, as the faithful prune would): never the best,
    // not an error that stops the search.
    let feasible = true;
    try {
      fast.counts(blockSparsity);
    } catch (e) {
      if (!(e instanceof DsaPruneError)) throw e;
      feasible = false;
    }
    let fitness = Infinity;
    if (feasible) {
      fast.mask(blockSparsity);
      fitness = await score(fast.fed.session, pm.config, searchIds, seqlen, batchSize, klCache, signal, rows);
    }
    return {
      key: Array.isArray(c) ? `allocation:${c.join(',')}` : isCandidate ? candidateKey(c as Candidate) : 'linears', fitness,
      blockSparsity, seconds: (performance.now() - t0) / 1000, ...(options.worker ? { worker: options.worker } : {}),
    };
  };
  return {
    ...entryPoints(run, dense, spec),
    kept: (bs) => fast.kept(bs),
    close: () => fast.release(),
  };
}
