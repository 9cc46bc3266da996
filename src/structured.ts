/**
 * The structured pipeline (`pruneModel(model, { method: 'structured', target: ['ffn'], score, sparsity, allocator })`):
 * validate → attach → FFN layouts → allocation (any allocator, per-block shares of the block linear parameters) →
 * whole channels per block (exact to one channel) → calibration (sequential by default) scoring each block's channels →
 * graph surgery (smaller dense initializers, FLAP bias) → session swapped in place.
 *
 * During calibration a removed channel is zeroed in the down projection only (an exact stand-in for its removal: its
 * contribution to the block output is W_down[:, j] · h_j), and FLAP's compensation is written into a bias that the
 * sub-graphs read as an input, so block b + 1's statistics see block b as it will be saved. The slicing happens once,
 * after the last block.
 */
import { DsaPruneError, throwIfAborted } from './errors.js';
import type { InputStats, LinearInfo } from './types.js';
import { attachModel, contextLength, type PrunableModel } from './model/index.js';
import { DataType, tensorDims } from './model/onnx.js';
import {
  SurgeryLog, ensureDownBias, ffnLayout, privatizeBiases, readMainInitializer, removeFfnChannels, writeMainInitializer, type FfnLayout,
} from './model/surgery.js';
import {
  attentionLayout, headsConfigPatch, planHeadRewrites, privatizeHeadBiases, removeHeadGroups, zeroGroupColumns, type AttentionLayout,
} from './model/surgery-heads.js';
import { runCalibration, type CalibrationModel } from './calibration/index.js';
import { uniform, FLAP_GLOBAL, type Allocation, type BlockAllocationStats } from './allocators/index.js';
import { denseStatistics } from './calibration/index.js';
import {
  channelCounts, channelMeans, flapGlobalCounts, type FfnChannelInput, channelScores, compensationBias, parseChannelScore, selectChannels, type ChannelScore,
  groupColumns, groupScores, headGroupCount, splitHeadsBudget,
} from './methods/structured/index.js';
import { pruneDepth } from './structured-depth.js';
import { parseDepthScore, parseDepthUnit } from './methods/structured/depth.js';
import {
  calibrationWindows, denseAllocationStats, recordPruneReport, type LinearReport, type PruneOptions, type PruneReport,
} from './prune-common.js';

export const STRUCTURED_TARGETS = ['ffn', 'heads', 'depth'] as const;
export type StructuredTarget = (typeof STRUCTURED_TARGETS)[number];

/** `--target ffn,heads` / ['ffn'] → checked list. */
export function parseTargets(t: string | string[] | undefined): StructuredTarget[] {
  const list = (Array.isArray(t) ? t : [t ?? 'ffn']).flatMap((x) => String(x).split(',')).map((x) => x.trim()).filter(Boolean);
  if (list.length === 0) return ['ffn'];
  for (const x of list) {
    if (!(STRUCTURED_TARGETS as readonly string[]).includes(x)) {
      throw new DsaPruneError(`unknown structured target "${x}" (known: ${STRUCTURED_TARGETS.join(', ')})`, { hint: 'Pass --target ffn.' });
    }
  }
  return [...new Set(list)] as StructuredTarget[];
}

/** Refuse a bad structured request before any work. */
export function validateStructuredOptions(o: PruneOptions): { targets: StructuredTarget[]; score: ChannelScore } {
  const targets = parseTargets(o.target);
  const score = parseChannelScore(o.score ?? 'wanda-sp');
  if (score === 'flap' && targets.includes('depth')) {
    throw new DsaPruneError('--score flap scores channels; it cannot score whole sub-layers (--target depth)', {
      hint: 'Use --target ffn with --score flap; depth pruning ranks sub-layers by block influence instead.',
    });
  }
  if (o.allocator?.name === FLAP_GLOBAL && (targets.length !== 1 || targets[0] !== 'ffn')) {
    throw new DsaPruneError(`--allocator flap-global ranks FFN channels only; it cannot allocate --target ${targets.join(',')}`, {
      hint: 'Use --target ffn alone with flap-global (FLAP\'s joint heads + channels ranking is not implemented), or another allocator.',
    });
  }
  if (targets.includes('depth')) {
    validateDepthRequest(o, targets);
  } else if (o.depthScore !== undefined || o.depthUnit !== undefined) {
    throw new DsaPruneError('--depth-score and --depth-unit apply to --target depth only', { hint: 'Add --target depth, or drop them.' });
  }
  const todo = targets.filter((t) => t !== 'ffn' && t !== 'heads' && t !== 'depth');
  if (todo.length) {
    throw new DsaPruneError(`structured target ${todo.join(', ')} is not implemented yet (ffn and heads are)`, { hint: 'Use --target ffn and/or heads.' });
  }
  if (typeof o.sparsity !== 'number' || !(o.sparsity >= 0 && o.sparsity < 1)) {
    throw new DsaPruneError(`sparsity must be a number in [0, 1), got ${String(o.sparsity)}`, { hint: 'For structured pruning it is the fraction of all decoder-block linear parameters removed.' });
  }
  if (o.pattern !== undefined && o.pattern !== 'unstructured') {
    throw new DsaPruneError('structured pruning removes whole channels; --pattern N:M does not apply', { hint: 'Drop --pattern.' });
  }
  if (o.budget === 'reference') throw new DsaPruneError("structured pruning uses the exact budget; budget 'reference' does not apply");
  if (o.nsamples !== undefined && (!Number.isInteger(o.nsamples) || o.nsamples < 1)) throw new DsaPruneError(`nsamples must be a positive integer, got ${o.nsamples}`);
  if (o.seqlen !== undefined && (!Number.isInteger(o.seqlen) || o.seqlen < 2)) throw new DsaPruneError(`seqlen must be an integer ≥ 2, got ${o.seqlen}`);
  for (const k of ['include', 'exclude', 'roles', 'skipFirstBlocks', 'skipLastBlocks', 'lmHead'] as const) {
    if (o[k] !== undefined && o[k] !== 0 && o[k] !== false) throw new DsaPruneError(`option ${k} is not supported by structured pruning yet`);
  }
  return { targets, score };
}

/** Float parameters of the main graph (every float / float16 initializer). */
export function graphParams(pm: PrunableModel): number {
  let n = 0;
  for (const t of pm.proto.graph.initializer) {
    if (t.data_type === DataType.FLOAT || t.data_type === DataType.FLOAT16) n += tensorDims(t).reduce((a, b) => a * b, 1);
  }
  return n;
}

function checkAborted(signal?: AbortSignal): void {
  throwIfAborted(signal, 'pruning was aborted; the model was left unchanged');
}

export async function pruneStructured(model: unknown, options: PruneOptions): Promise<PruneReport> {
  const t0 = performance.now();
  const { targets, score } = validateStructuredOptions(options);
  if (targets.includes('depth')) return pruneDepth(model, options, graphParams);
  const allocator = options.allocator ?? uniform();
  const pm = await attachModel(model, options.source ? { source: options.source } : undefined);
  const layouts: FfnLayout[] = Array.from({ length: pm.blocks }, (_, b) => ffnLayout(pm, b));
  const blockLinears = pm.linears.filter((l) => l.block >= 0);
  const blockParams = layouts.map((_, b) => blockLinears.filter((l) => l.block === b).reduce((a, l) => a + l.dIn * l.dOut, 0));
  const mode = options.mode ?? 'sequential';
  // heads: every block's attention, refused here (before any work) when a layout cannot take it.
  const ffnOn = targets.includes('ffn');
  const attn: AttentionLayout[] | undefined = targets.includes('heads') ? Array.from({ length: pm.blocks }, (_, b) => attentionLayout(pm, b)) : undefined;

  const ctx = contextLength(pm.config as Record<string, unknown>) ?? 2048;
  const seqlen = options.seqlen ?? Math.min(2048, ctx);
  if (seqlen > ctx) throw new DsaPruneError(`seqlen ${seqlen} is above the model's context length ${ctx}`, { hint: `Use --seqlen ${ctx} or less.` });
  const nsamples = options.nsamples ?? 128;
  const statsFree = allocator.needsStatistics === false;
  const needsCalibration = score !== 'magnitude' || !statsFree;
  const cal = needsCalibration ? await calibrationWindows(pm, options, seqlen, nsamples) : undefined;
  checkAborted(options.signal);

  // Per-block shares from the allocator (weights = every linear of the block), then whole channels.
  const tAlloc = performance.now();
  let blocks: BlockAllocationStats[];
  const ffnInput = (lay: FfnLayout, s?: InputStats): FfnChannelInput => ({
    width: lay.width, down: pm.readWeight(lay.down), downOut: lay.down.dOut,
    up: lay.inputs.map((i) => ({ w: pm.readWeight(i.linear), dIn: i.linear.dIn, offsets: i.offsets })),
    ...(s ? { sq: s.sq, tokens: s.tokens, ...(s.sum ? { sum: s.sum } : {}) } : {}),
  });
  const flapGlobalOn = allocator.name === FLAP_GLOBAL;
  let flapCapped: number[] = [];
  if (statsFree) {
    blocks = layouts.map((_, index) => {
      const ls = blockLinears.filter((l) => l.block === index);
      return { index, params: blockParams[index]!, z: new Float32Array(0), linears: ls.map((l) => ({ name: l.name, role: l.role, params: l.dIn * l.dOut })) };
    });
  } else {
    blocks = (await denseAllocationStats(pm, cal!, blockLinears, options)).blocks;
  }
  let allocation: Allocation;
  let globalCounts: number[] | undefined;
  if (flapGlobalOn) {
    // FLAP AL-AM: every block's channel scores from the dense model (one-shot statistics), z-scored per block, ranked
    // globally; the total is the exact budget round(S·ΣP/c).
    const c0 = layouts[0]!.paramsPerChannel;
    if (!layouts.every((l) => l.paramsPerChannel === c0)) throw new DsaPruneError('--allocator flap-global needs the same parameters per FFN channel in every block');
    const dense = cal && score !== 'magnitude'
      ? await denseStatistics(pm, cal.ids, {
        nsamples: cal.nsamples, seqlen: cal.seqlen, needs: { sq: true, gram: false, sum: true },
        threads: options.threads, batchSize: options.batchSize, onProgress: options.onProgress, signal: options.signal,
      })
      : undefined;
    const scores = layouts.map((l) => channelScores(score, ffnInput(l, dense?.get(l.down.name))));
    const total = Math.round((options.sparsity * blockParams.reduce((a, b) => a + b, 0)) / c0);
    const r = flapGlobalCounts(scores, total);
    globalCounts = r.counts;
    flapCapped = r.capped;
    allocation = { blockSparsity: r.counts.map((n, b) => (n * c0) / blockParams[b]!) };
  } else {
    allocation = allocator.allocate({ blocks, sparsity: options.sparsity, budget: 'exact' });
  }
  // heads: the same number of KV groups removed in every block; with ffn too, the FFN takes the rest of each share.
  let groupsRemoved = 0;
  let ffnShares = allocation.blockSparsity;
  let ffnSparsity = options.sparsity;
  if (attn) {
    const hb = attn.map((a, b) => ({ index: b, params: blockParams[b]!, kvHeads: a.kvHeads, paramsPerGroup: a.paramsPerGroup }));
    if (ffnOn) ({ groups: groupsRemoved, ffnShares, ffnSparsity } = splitHeadsBudget(hb, allocation.blockSparsity, options.sparsity));
    else groupsRemoved = headGroupCount(hb, allocation.blockSparsity, options.sparsity);
    if (groupsRemoved > 0) for (const a of attn) planHeadRewrites(pm, a, a.kvHeads - groupsRemoved); // refuses unknown shape constants now
  }
  const removeCount = globalCounts ?? (ffnOn ? channelCounts(
    layouts.map((l, b) => ({ index: b, params: blockParams[b]!, width: l.width, paramsPerChannel: l.paramsPerChannel })),
    ffnShares, ffnSparsity,
  ) : layouts.map(() => 0));
  const headsBefore = attn?.map((a) => ({ heads: a.heads, kvHeads: a.kvHeads }));
  const attnParamsBefore = new Map<LinearInfo, number>();
  for (const a of attn ?? []) for (const l of [a.q, a.k, a.v, a.qkv, a.o]) if (l) attnParamsBefore.set(l, l.dIn * l.dOut);
  const configPatch = attn && groupsRemoved > 0 ? headsConfigPatch(pm.config, attn[0]!.kvHeads - groupsRemoved) : undefined;
  const keptGroups: Int32Array[] = (attn ?? []).map((a) => Int32Array.from({ length: a.kvHeads }, (_, g) => g));
  const secondsAllocation = (performance.now() - tAlloc) / 1000;
  const paramsBefore = graphParams(pm);
  const widthsBefore = layouts.map((l) => l.width);

  const log = new SurgeryLog();
  const keeps: Int32Array[] = layouts.map((l) => Int32Array.from({ length: l.width }, (_, j) => j));
  const flap = score === 'flap';
  /** FLAP's bias compensation (default on with flap; `biasCompensation: false` keeps the metric alone). */
  const compensate = flap && options.biasCompensation !== false;
  let secondsPrune = 0;
  let secondsCalibration = 0;
  const tCal = performance.now();
  try {
    // FLAP: every block that loses channels gets a down bias before calibration plans its sub-graphs.
    const added = new Set<string>();
    if (ffnOn) for (const l of layouts) for (const n of privatizeBiases(pm, l, log)) added.add(n);
    const biasNames: (string | undefined)[] = layouts.map((l, b) => {
      if (!compensate || removeCount[b]! === 0) return undefined;
      if (l.downBias) return l.downBias;
      const name = ensureDownBias(pm, l, log);
      added.add(name);
      return name;
    });
    if (attn && groupsRemoved > 0) {
      for (const a of attn) {
        for (const n of privatizeHeadBiases(pm, a, log)) added.add(n);
        if (compensate && !a.oBias) {
          const ffnLike: FfnLayout = { block: a.block, width: a.o.dIn, inputs: [], down: a.o, paramsPerChannel: 0 };
          a.oBias = ensureDownBias(pm, ffnLike, log);
          added.add(a.oBias);
        }
      }
    }
    const scoreBlock = (b: number, stats?: Map<string, InputStats>): void => {
      const t = performance.now();
      checkAborted(options.signal);
      const lay = layouts[b]!;
      const r = removeCount[b]!;
      if (attn && groupsRemoved > 0) scoreHeads(b, stats);
      if (r === 0) {
        secondsPrune += (performance.now() - t) / 1000;
        return;
      }
      const s = stats?.get(lay.down.name);
      const input = ffnInput(lay, s);
      const down = input.down;
      const scores = channelScores(score, input);
      const { keep, removed } = selectChannels(scores, r);
      keeps[b] = keep;
      if (compensate) {
        const comp = compensationBias(down, lay.down.dOut, lay.width, removed, channelMeans(s!.sum!, s!.tokens));
        const name = biasNames[b]!;
        const cur = readMainInitializer(pm, name);
        const next = new Float32Array(cur.length);
        for (let o = 0; o < cur.length; o++) next[o] = cur[o]! + comp[o]!;
        writeMainInitializer(pm, name, next, undefined, log);
      }
      // Zero the removed channels' down columns: the block output is now what the sliced graph computes.
      const t0 = pm.proto.graph.initializer.find((x) => x.name === lay.down.weight)!;
      log.tensor(t0);
      for (const j of removed) for (let o = 0; o < lay.down.dOut; o++) down[o * lay.width + j] = 0;
      pm.writeWeight(lay.down, down);
      secondsPrune += (performance.now() - t) / 1000;
    };
    // heads of block b: score the KV groups, FLAP's bias on o, zero the removed groups' o columns.
    function scoreHeads(b: number, stats?: Map<string, InputStats>): void {
      const a = attn![b]!;
      const oW = pm.readWeight(a.o);
      const s = stats?.get(a.o.name);
      const H = a.heads;
      const d = a.headDim;
      let qkvW: { q: Float32Array; k: Float32Array; v: Float32Array; dIn: number } | undefined;
      if (score === 'magnitude') {
        if (a.qkv) {
          const w = pm.readWeight(a.qkv);
          const n = a.qkv.dIn;
          qkvW = { q: w.subarray(0, H * d * n), k: w.subarray(H * d * n, (H + a.kvHeads) * d * n), v: w.subarray((H + a.kvHeads) * d * n), dIn: n };
        } else {
          qkvW = { q: pm.readWeight(a.q!), k: pm.readWeight(a.k!), v: pm.readWeight(a.v!), dIn: a.q!.dIn };
        }
      }
      const gs = groupScores(score, {
        kvHeads: a.kvHeads, nRep: a.nRep, headDim: d, o: oW, oOut: a.o.dOut, ...(qkvW ?? {}),
        ...(s ? { sq: s.sq, tokens: s.tokens, ...(s.sum ? { sum: s.sum } : {}) } : {}),
      });
      const { keep, removed } = selectChannels(gs, groupsRemoved);
      keptGroups[b] = keep;
      const cols = groupColumns(removed, a.nRep, d);
      if (compensate) {
        const comp = compensationBias(oW, a.o.dOut, a.o.dIn, cols, channelMeans(s!.sum!, s!.tokens));
        const cur = readMainInitializer(pm, a.oBias!);
        writeMainInitializer(pm, a.oBias!, cur.map((x, o) => x + comp[o]!), undefined, log);
      }
      log.tensor(pm.proto.graph.initializer.find((x) => x.name === a.o.weight)!);
      zeroGroupColumns(oW, a.o.dOut, a.o.dIn, removed, a.nRep, d);
      pm.writeWeight(a.o, oW);
    }
    if (cal && score !== 'magnitude') {
      const calModel: CalibrationModel = {
        proto: pm.proto, linears: pm.linears, source: pm.source, config: pm.config,
        readInitializer: (name) => (added.has(name) ? readMainInitializer(pm, name) : pm.readInitializer(name)),
      };
      await runCalibration(calModel, cal.ids, {
        nsamples: cal.nsamples, seqlen: cal.seqlen, needs: { sq: true, gram: false, sum: flap }, mode,
        threads: options.threads, batchSize: options.batchSize, onProgress: options.onProgress, signal: options.signal,
      }, (b, stats) => scoreBlock(b, stats));
    } else {
      for (let b = 0; b < pm.blocks; b++) scoreBlock(b);
    }
    secondsCalibration = (performance.now() - tCal) / 1000 - secondsPrune;
    checkAborted(options.signal);
    const tS = performance.now();
    for (let b = 0; b < pm.blocks; b++) removeFfnChannels(pm, layouts[b]!, keeps[b]!, log);
    if (attn && groupsRemoved > 0) for (let b = 0; b < pm.blocks; b++) removeHeadGroups(pm, attn[b]!, keptGroups[b]!, log);
    secondsPrune += (performance.now() - tS) / 1000;
  } catch (e) {
    log.undo();
    throw e;
  }
  const tCommit = performance.now();
  try {
    await pm.commit();
  } catch (e) {
    log.undo();
    throw e;
  }
  const secondsCommit = (performance.now() - tCommit) / 1000;
  if (configPatch) applyConfigPatch(model, pm.config, configPatch);

  // Reports: per linear, the fraction of its original parameters removed.
  const linears: LinearReport[] = [];
  const removedPerBlock = new Array<number>(pm.blocks).fill(0);
  for (const l of blockLinears) {
    const lay = layouts[l.block]!;
    const F0 = widthsBefore[l.block]!;
    const inp = lay.inputs.find((i) => i.linear === l);
    const isFfn = inp !== undefined || lay.down === l;
    const before = attnParamsBefore.get(l) ?? (isFfn ? (inp ? inp.offsets.length * F0 * l.dIn : F0 * l.dOut) : l.dIn * l.dOut);
    const after = l.dIn * l.dOut;
    removedPerBlock[l.block] += before - after;
    linears.push({ name: l.name, block: l.block, role: l.role, params: before, target: allocation.blockSparsity[l.block]!, sparsity: (before - after) / before });
  }
  const totalBlockParams = blockParams.reduce((a, b) => a + b, 0);
  const report: PruneReport = {
    method: 'structured',
    pattern: 'structured',
    budget: 'exact',
    sparsity: options.sparsity,
    realizedSparsity: removedPerBlock.reduce((a, b) => a + b, 0) / totalBlockParams,
    blockSparsity: removedPerBlock.map((r, b) => r / blockParams[b]!),
    targetBlockSparsity: allocation.blockSparsity,
    allocator: {
      name: allocator.name, description: allocator.describe(),
      ...(allocation.scores ? { scores: allocation.scores } : {}),
      ...(allocation.expression ? { expression: allocation.expression } : {}),
    },
    linears,
    ...(cal ? { calibration: { nsamples: cal.nsamples, seqlen: cal.seqlen, tokens: cal.ids.length, sha256: cal.sha256, source: cal.source } } : {}),
    seconds: {
      total: (performance.now() - t0) / 1000, allocation: secondsAllocation, prune: secondsPrune,
      calibration: Math.max(0, secondsCalibration), commit: secondsCommit,
    },
    notes: flapCapped.length
      ? [`flap-global: block${flapCapped.length > 1 ? 's' : ''} ${flapCapped.join(', ')} kept one FFN channel (capped); the next lowest standardized channels elsewhere were removed instead`]
      : [],
    structured: {
      target: targets, score, mode, biasCompensation: compensate,
      blocks: layouts.map((l, b) => ({
        block: b, ffnBefore: widthsBefore[b]!, ffnAfter: l.width, kept: Array.from(keeps[b]!),
        ...(attn ? {
          headsBefore: headsBefore![b]!.heads, headsAfter: attn[b]!.heads, kvHeadsBefore: headsBefore![b]!.kvHeads,
          kvHeadsAfter: attn[b]!.kvHeads, keptGroups: Array.from(keptGroups[b]!),
        } : {}),
      })),
      ...(configPatch ? { config: configPatch } : {}),
      params: { before: paramsBefore, after: graphParams(pm) },
    },
  };
  recordPruneReport(model as object, report);
  return report;
}

/** The FFN width of every block of a model as it is now (for inspect and tests). */
export function ffnWidths(linears: LinearInfo[], blocks: number): number[] {
  return Array.from({ length: blocks }, (_, b) => linears.find((l) => l.block === b && l.role === 'down')?.dIn ?? 0);
}

/**
 * After head pruning: the model's config objects say the new head counts (transformers.js reads
 * num_key_value_heads / head_dim, and its normalized_config, when it builds the cache); savePruned writes the same
 * fields into config.json.
 */
function applyConfigPatch(model: unknown, config: Record<string, unknown>, patch: Record<string, number>): void {
  Object.assign(config, patch);
  const mc = (model as { config?: Record<string, unknown> } | undefined)?.config;
  if (!mc || typeof mc !== 'object') return;
  Object.assign(mc, patch);
  const nc = mc.normalized_config as Record<string, unknown> | undefined;
  if (nc && typeof nc === 'object') {
    const kv = patch.num_key_value_heads ?? patch.n_head_kv ?? patch.num_kv_heads;
    const heads = patch.num_attention_heads ?? patch.n_head ?? patch.num_heads;
    if ('num_heads' in nc) nc.num_heads = ('num_key_value_heads' in patch || 'n_head_kv' in patch || 'num_kv_heads' in patch) ? kv : heads;
    if ('num_attention_heads' in nc) nc.num_attention_heads = heads;
    if ('dim_kv' in nc && patch.head_dim !== undefined) nc.dim_kv = patch.head_dim;
  }
}

// ---- target depth (whole sub-layers; the pipeline is structured-depth.ts) ----

/** Refusals of a depth request, before any work. */
function validateDepthRequest(o: PruneOptions, targets: StructuredTarget[]): void {
  if (targets.length > 1) {
    throw new DsaPruneError(`--target depth cannot be combined with ${targets.filter((t) => t !== 'depth').join(', ')} yet`, {
      hint: 'The one sparsity cannot be split exactly between removed sub-layers and removed channels: prune with --target depth, save, then prune the saved model with --target ffn (its own budget).',
    });
  }
  if (o.score !== undefined) {
    throw new DsaPruneError(`--score ${o.score} scores channels; --target depth scores sub-layers with --depth-score bi|loss`, { hint: 'Drop --score, or pass --depth-score.' });
  }
  parseDepthScore(o.depthScore);
  parseDepthUnit(o.depthUnit);
  if (o.allocator && o.allocator.name !== 'uniform') {
    throw new DsaPruneError(`--allocator ${o.allocator.name} does not apply to --target depth: sub-layers are ranked globally by their score`, { hint: 'Drop --allocator.' });
  }
  if (o.calibration === undefined) {
    throw new DsaPruneError('--target depth needs calibration data (both depth scores run the calibration windows)', { hint: 'Pass --calibration <file>.' });
  }
}
