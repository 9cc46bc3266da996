/**
 * The search's fast path for `--method structured` (FFN channels): a candidate is a vector of per-block shares of the
 * block linear parameters (from a DSA expression over the dense block statistics, or a levels genome), turned into
 * whole channels per block by the pipeline's own budget (`channelCounts`, exact to one channel), and the channels
 * removed are the lowest of each block's channel score computed ONCE on the dense calibration statistics (one-shot).
 *
 * The fast fitness does not slice the graph: it feeds the down projections with the removed channels' columns zeroed
 * to the weights-as-inputs session (model/weight-inputs.ts). That is an exact stand-in for removing them — channel j
 * reaches the block output only through W_down[:, j] · h_j — so it equals the perplexity of the one-shot structured
 * prune with the same shares up to fp32 summation order (test/search/structured.test.ts). The search's result is
 * re-applied with the faithful structured prune (channels removed, sequential by default) at the end.
 *
 * `--score flap`: FLAP's bias compensation is in the fast path too. The session is built from the graph with an output
 * bias on every down projection (`ensureDownBias`, the Add the faithful prune inserts; an existing bias is made the
 * block's own first, `privatizeBiases`), fed as an input like the weights: dense bias + Σ_{j removed} mean(h_j) ·
 * W_down[:, j] (`compensationBias`, the means from the dense Σh), so it equals the one-shot FLAP prune with the channels
 * removed. The model's own graph is restored right after the session is built (the surgery's undo log).
 *
 * Not in the fast path, refused before any work: `--target heads` (the kept head count must be the same in
 * every block, so there is no per-block allocation to search) and `depth` (a global ranking, no per-block shares),
 * `--mode faithful` (a faithful structured prune per candidate cannot be undone in place), `--granularity linear`.
 * On the Redis queue (`--redis`) a `dsa-prune worker` builds this same fitness from the run's spec (its `structured`
 * part); the dense statistics are shared under their own key when flap adds Σx (protocol.ts `denseKind`).
 */
import { DsaPruneError } from '../errors.js';
import type { InputStats, LinearInfo } from '../types.js';
import type { PrunableModel } from '../model/index.js';
import { ensureDownBias, ffnLayout, privatizeBiases, readMainInitializer, SurgeryLog, type FfnLayout } from '../model/surgery.js';
import { weightFedSession, type WeightFedSession } from '../model/weight-inputs.js';
import type { Allocator } from '../allocators/types.js';
import { channelCounts, channelMeans, channelScores, compensationBias, type ChannelBlock } from '../methods/structured/index.js';

/** The structured part of a search spec. */
export interface StructuredSearch {
  target: 'ffn';
  score: 'wanda-sp' | 'magnitude' | 'flap';
}

/** Refusals of a structured search request, before any work (`method: 'structured'`). */
export function checkStructuredSearch(o: { target?: string | string[]; score?: string; mode?: string; granularity?: string }): StructuredSearch {
  const targets = (Array.isArray(o.target) ? o.target : [o.target ?? 'ffn']).flatMap((t) => String(t).split(',')).map((t) => t.trim()).filter(Boolean);
  const t = targets.length ? targets : ['ffn'];
  if (t.length !== 1 || t[0] !== 'ffn') {
    const why = t.includes('heads')
      ? 'heads keep the same KV-group count in every block (transformers.js builds the cache from one config value), so there is no per-block allocation to search'
      : t.includes('depth') ? 'depth ranks sub-layers globally by their score; it has no per-block shares to search' : `unknown target ${t.join(',')}`;
    throw new DsaPruneError(`search --method structured searches per-block FFN widths (--target ffn); --target ${t.join(',')}: ${why}`, {
      code: 'invalid-input', hint: 'Use --target ffn (prune heads or depth with `dsa-prune prune --method structured`).',
    });
  }
  const score = o.score ?? 'wanda-sp';
  if (score !== 'wanda-sp' && score !== 'magnitude' && score !== 'flap') {
    throw new DsaPruneError(`unknown structured score "${score}" for the search (known: wanda-sp, flap, magnitude)`, { code: 'invalid-input', hint: 'Pass --score wanda-sp, flap or magnitude.' });
  }
  if (o.mode !== undefined && o.mode !== 'fast') {
    throw new DsaPruneError('search --method structured evaluates candidates with the fast fitness only (--mode fast); the best one is re-applied with the faithful structured prune at the end', {
      code: 'invalid-input', hint: 'Drop --mode faithful.',
    });
  }
  if (o.granularity !== undefined && o.granularity !== 'block') {
    throw new DsaPruneError('search --method structured allocates one FFN width per block; --granularity linear does not apply', { code: 'invalid-input', hint: 'Drop --granularity.' });
  }
  return { target: 'ffn', score };
}

/** The per-block view the budget needs, from the FFN layouts and the block linear parameters. */
function channelBlocks(pm: PrunableModel, layouts: FfnLayout[], linears: LinearInfo[]): ChannelBlock[] {
  return layouts.map((l, b) => ({
    index: b, width: l.width, paramsPerChannel: l.paramsPerChannel,
    params: linears.filter((x) => x.block === b).reduce((a, x) => a + x.dIn * x.dOut, 0),
  }));
}

/** The structured fast path of one fitness: masks a candidate's shares into the down projections of `fed`. */
export interface StructuredFastPath {
  fed: WeightFedSession;
  /** Channels removed per block for the shares (the pipeline's channelCounts); throws when a block would be emptied. */
  counts(blockSparsity: number[]): number[];
  /** Channels kept per block (ascending), as the one-shot structured prune keeps them. */
  kept(blockSparsity: number[]): Int32Array[];
  /** Feed the down projections with the removed channels zeroed (flap: and the compensated down biases). */
  mask(blockSparsity: number[]): void;
  /** Feed the dense down projections (flap: and the dense down biases). */
  setDense(): void;
  release(): Promise<void>;
}

/**
 * Build the fast path: FFN layouts (refusing a layout the ffn target cannot take), channel scores of every block on
 * the dense statistics (once), their ascending order (ties by index, as selectChannels), and a session whose down
 * projections are inputs.
 */
export async function structuredFastPath(
  pm: PrunableModel, st: StructuredSearch, dense: { stats: Map<string, InputStats> }, linears: LinearInfo[], sparsity: number, threads?: number,
): Promise<StructuredFastPath> {
  const layouts = Array.from({ length: pm.blocks }, (_, b) => ffnLayout(pm, b));
  const blocks = channelBlocks(pm, layouts, linears);
  const flap = st.score === 'flap';
  const orders = layouts.map((lay) => {
    const s = dense.stats.get(lay.down.name);
    if (st.score !== 'magnitude' && !s) throw new DsaPruneError(`no dense statistics for ${lay.down.name}`, { code: 'internal' });
    if (flap && !s!.sum) throw new DsaPruneError(`no dense Σh for ${lay.down.name} (flap needs computeDense with the flap score)`, { code: 'internal' });
    const scores = channelScores(st.score, {
      width: lay.width, down: pm.readWeight(lay.down), downOut: lay.down.dOut,
      up: lay.inputs.map((i) => ({ w: pm.readWeight(i.linear), dIn: i.linear.dIn, offsets: i.offsets })),
      ...(s ? { sq: s.sq, tokens: s.tokens, ...(s.sum ? { sum: s.sum } : {}) } : {}),
    });
    return Int32Array.from({ length: lay.width }, (_, j) => j).sort((a, b) => scores[a]! - scores[b]! || a - b);
  });
  const denseW = layouts.map((lay) => pm.readInitializer(lay.down.weight));
  const bufs = denseW.map((w) => new Float32Array(w.length));
  const layoutOf = layouts.map((lay) => pm.layout.get(lay.down.name) ?? 'in_out');
  // flap: a bias on every down projection, as the faithful prune adds it, then the model's graph restored.
  const log = new SurgeryLog();
  let biasNames: string[] = [];
  let denseBias: Float32Array[] = [];
  let means: Float64Array[] = [];
  let pending: Promise<WeightFedSession>;
  try {
    if (flap) {
      for (const lay of layouts) privatizeBiases(pm, lay, log);
      biasNames = layouts.map((lay) => lay.downBias ?? ensureDownBias(pm, lay, log));
      denseBias = biasNames.map((n) => readMainInitializer(pm, n));
      means = layouts.map((lay) => { const s = dense.stats.get(lay.down.name)!; return channelMeans(s.sum!, s.tokens); });
    }
    // weightFedSession reads (encodes) the graph before it first yields, so the graph is restored before anything
    // else can run on this model (a Redis worker builds several fitnesses on one model concurrently).
    pending = weightFedSession(pm, [...layouts.map((l) => l.down.weight), ...biasNames], { threads });
  } finally {
    log.undo();
  }
  const fed = await pending;
  const biasBufs = denseBias.map((b) => new Float32Array(b.length));
  const counts = (bs: number[]): number[] => {
    if (bs.length !== blocks.length) throw new DsaPruneError(`structured search: ${bs.length} block shares for ${blocks.length} blocks`, { code: 'internal' });
    // The total is the search's sparsity's round(S · ΣP / c), as the pipeline computes it with --sparsity S.
    return channelCounts(blocks, bs, sparsity);
  };
  return {
    fed,
    counts,
    kept(bs) {
      const r = counts(bs);
      return orders.map((o, b) => Int32Array.from(o.subarray(r[b]!)).sort());
    },
    mask(bs) {
      const r = counts(bs);
      layouts.forEach((lay, b) => {
        const buf = bufs[b]!;
        buf.set(denseW[b]!);
        const F = lay.width;
        const D = lay.down.dOut;
        const o = orders[b]!;
        for (let k = 0; k < r[b]!; k++) {
          const j = o[k]!;
          // Stored [dIn × dOut] (MatMul): row j; stored [dOut × dIn] (Gemm transB): column j.
          if (layoutOf[b] === 'in_out') buf.fill(0, j * D, (j + 1) * D);
          else for (let d = 0; d < D; d++) buf[d * F + j] = 0;
        }
        fed.setWeight(lay.down.weight, buf);
        if (flap) {
          // FLAP's compensation as the one-shot prune computes it: removed ascending, float64, then the bias's float32.
          const removed = Int32Array.from(o.subarray(0, r[b]!)).sort();
          const comp = compensationBias(pm.readWeight(lay.down), D, F, removed, means[b]!);
          const bias = biasBufs[b]!;
          const cur = denseBias[b]!;
          for (let k = 0; k < bias.length; k++) bias[k] = cur[k]! + comp[k]!;
          fed.setWeight(biasNames[b]!, bias);
        }
      });
    },
    setDense() {
      layouts.forEach((lay, b) => {
        fed.setWeight(lay.down.weight, denseW[b]!);
        if (flap) fed.setWeight(biasNames[b]!, denseBias[b]!);
      });
    },
    release: () => fed.release(),
  };
}

/**
 * An allocator that returns the given per-block shares as they are (a structured search's result re-applied: the
 * shares are what was searched, so no budget step moves them).
 */
export function searchedShares(shares: number[], source = 'the search result'): Allocator {
  const values = shares.slice();
  return {
    name: 'search',
    describe: () => `searched per-block shares from ${source}: [${values.map((x) => x.toFixed(4)).join(', ')}]`,
    needsStatistics: false,
    allocate(input) {
      if (values.length !== input.blocks.length) {
        throw new DsaPruneError(`${source} has ${values.length} block shares, the model has ${input.blocks.length} blocks`, { code: 'invalid-input', hint: 'Apply it to the model it was searched on.' });
      }
      const P = input.blocks.reduce((a, b) => a + b.params, 0);
      const mean = values.reduce((a, s, i) => a + s * input.blocks[i]!.params, 0) / P;
      if (Math.abs(mean - input.sparsity) > 1e-6) {
        throw new DsaPruneError(`${source} removes ${(mean * 100).toFixed(4)}% of the block parameters, but --sparsity is ${(input.sparsity * 100).toFixed(4)}%`, {
          code: 'invalid-input', hint: `Pass --sparsity ${+mean.toFixed(6)} (the search's), or search again at this sparsity.`,
        });
      }
      return { blockSparsity: values.slice() };
    },
  };
}

/** What `--allocator @result.json` needs to re-apply a structured search (checked by structuredResultAllocator). */
export interface StructuredResultCheck {
  modelHash: string;
  method?: string;
  target: string[];
  score: string;
  sparsity: number;
}

/**
 * The allocator of a structured search result (DSA or levels strategy): its best per-block shares, refused (before any
 * work) on another model (by hash), with another target or score, or at another sparsity.
 */
export function structuredResultAllocator(raw: unknown, file: string, want: StructuredResultCheck): Allocator {
  const r = raw as { best?: { blockSparsity?: unknown }; sparsity?: unknown; modelHash?: unknown; spec?: { modelHash?: unknown; structured?: { target?: unknown; score?: unknown } }; structured?: { target?: unknown; score?: unknown } };
  const st = r.structured ?? r.spec?.structured;
  const hash = r.spec?.modelHash ?? r.modelHash;
  const shares = r.best?.blockSparsity;
  if (!st || typeof st !== 'object' || typeof hash !== 'string' || !Array.isArray(shares) || !shares.every((x) => typeof x === 'number' && x >= 0 && x < 1) || typeof r.sparsity !== 'number') {
    throw new DsaPruneError(`${file} is not a structured search result (it needs structured, the model hash, sparsity and best.blockSparsity)`, {
      code: 'invalid-data', hint: 'Pass the JSON written by `dsa-prune search --method structured --out`.',
    });
  }
  if (want.method !== undefined && want.method !== 'structured') {
    throw new DsaPruneError(`${file} is a structured search result (per-block FFN widths); it applies to --method structured only, not --method ${want.method}`, {
      code: 'invalid-input', hint: 'Add --method structured --target ffn.',
    });
  }
  if (hash !== want.modelHash) {
    throw new DsaPruneError(`${file} was searched on another model (model hash ${hash.slice(0, 16)}…, this model ${want.modelHash.slice(0, 16)}…): searched FFN widths apply only to the model they were searched on`, {
      code: 'invalid-input', hint: 'Search this model (dsa-prune search --method structured), or prune the model the result came from.',
    });
  }
  if (want.target.length !== 1 || want.target[0] !== st.target) {
    throw new DsaPruneError(`${file} searched --target ${String(st.target)}; this prune asks --target ${want.target.join(',')}`, { code: 'invalid-input', hint: `Pass --target ${String(st.target)}.` });
  }
  if (want.score !== st.score) {
    throw new DsaPruneError(`${file} searched the widths for --score ${String(st.score)}; this prune asks --score ${want.score}`, { code: 'invalid-input', hint: `Pass --score ${String(st.score)}.` });
  }
  if (Math.abs(r.sparsity - want.sparsity) > 1e-9) {
    throw new DsaPruneError(`${file} was searched at sparsity ${r.sparsity}; this prune asks --sparsity ${want.sparsity}`, { code: 'invalid-input', hint: `Pass --sparsity ${r.sparsity}.` });
  }
  return searchedShares(shares as number[], file);
}

/** Whether a parsed result file is a structured search's. */
export function isStructuredResult(raw: unknown): boolean {
  if (!raw || typeof raw !== 'object') return false;
  const r = raw as { method?: unknown; spec?: { method?: unknown } };
  return r.method === 'structured' || r.spec?.method === 'structured';
}

