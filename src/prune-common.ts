/**
 * What the pruning pipelines share (the unstructured one in prune.ts and the structured one in structured.ts):
 * options and reports, the report registry savePruned reads, calibration windows and the dense statistics.
 * A module of its own so that the two pipelines stand on it without importing each other.
 */
import { createHash } from 'node:crypto';
import { AutoTokenizer } from '@huggingface/transformers';
import { DsaPruneError } from './errors.js';
import type { BudgetMode, InputStats, LinearInfo, LinearRole, Pattern, ProgressCallback } from './types.js';
import { attachModel, contextLength, type PrunableModel } from './model/index.js';
import { getMethod, validateMethodRequest, type PruningMethod } from './methods/index.js';
import { type Granularity } from './allocators/granularity.js';
import { type Allocation, type Allocator, type BlockAllocationStats } from './allocators/index.js';
import { wandaMetric } from './methods/metrics.js';
import { denseStatistics } from './calibration/index.js';
import { readTextFile, takeWindows, tokenizeText } from './data/text.js';

/** Where calibration tokens come from. A string is the calibration text itself. */
export type CalibrationSource =
  | string
  | {
      /** Calibration text (tokenized as one string, like the reference). */
      text?: string;
      /** Text files, concatenated with a newline. */
      files?: string[];
      /** Token ids, used as they are. */
      ids?: Int32Array;
      /** Sample windows at random positions with this seed instead of taking the first ones. */
      seed?: number;
    };

export interface PruneOptions {
  /** `magnitude`, `wanda`, `sparsegpt`, `structured` (whole channels removed: see docs/structured.md), or your own PruningMethod. */
  method: string | PruningMethod;
  /** method `structured`: what to remove (`ffn`: MLP intermediate channels). */
  target?: string | string[];
  /** method `structured`: channel score `wanda-sp` (default), `flap` (with bias compensation) or `magnitude`. */
  score?: string;
  /** method `structured`, score `flap`: add FLAP's bias compensation (default true); false scores with the metric alone. */
  biasCompensation?: boolean;
  /** method `structured`, target `depth`: sub-layer score `bi` (block influence, default) or `loss` (calibration loss increase). */
  depthScore?: string;
  /** method `structured`, target `depth`: remove `sublayer`s (attention or MLP, default) or whole `block`s. */
  depthUnit?: string;
  /** Global target sparsity in [0, 1). */
  sparsity: number;
  /** `unstructured` (default) or N:M such as `'2:4'` / `{ kind: 'nm', n: 2, m: 4 }`. */
  pattern?: Pattern | string;
  /** Layer-wise allocation (default: uniform). */
  allocator?: Allocator;
  /**
   * `block` (default): one sparsity per decoder block; `linear`: the allocator runs on each linear (OWL's outlier
   * ratio per linear, a DSA expression on each linear's statistics), exact in parameters over the linears.
   */
  granularity?: Granularity;
  /** `exact` (default): realised sparsity = target; `reference`: the reference code's rounding (reproduces reference.json). */
  budget?: BudgetMode;
  /** Calibration data; required by wanda, sparsegpt and every non-uniform allocator. */
  calibration?: CalibrationSource;
  /** Calibration sequences (default 128, as in the papers). */
  nsamples?: number;
  /** Tokens per calibration sequence (default min(2048, the model's context)). */
  seqlen?: number;
  /** `sequential` (default: block b sees the outputs of the already pruned blocks 0..b-1) or `oneshot`. */
  mode?: 'sequential' | 'oneshot';
  /** Only linears whose name matches one of these (substring or RegExp). */
  include?: (string | RegExp)[];
  /** Skip linears whose name matches one of these. */
  exclude?: (string | RegExp)[];
  /** Only these roles (q, k, v, o, gate, up, down, …). */
  roles?: LinearRole[];
  /** Leave the first / last n blocks dense. */
  skipFirstBlocks?: number;
  skipLastBlocks?: number;
  /** Also prune lm_head (off by default: it is often tied to the embeddings). */
  lmHead?: boolean;
  /** Model folder, for a model loaded before dsa-prune was imported. */
  source?: string;
  /** onnxruntime intra-op threads for the calibration sessions. */
  threads?: number;
  /** Calibration batch size (sequences per onnxruntime run, default 8). */
  batchSize?: number;
  /**
   * How the calibration block sessions get the weights: `inputs` (default, bit-for-bit the reference) or
   * `initializers` (pre-packed MatMuls, a session per pass; statistics differ in the last bits, so masks at ties
   * may differ: docs/calibration.md).
   */
  blockWeights?: 'inputs' | 'initializers';
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
  /** Memory the prune may use, in GB (CLI --max-memory); default: the machine's available memory. Checked before any work. */
  maxMemoryGB?: number;
}

export interface LinearReport {
  name: string;
  block: number;
  role: LinearRole;
  params: number;
  target: number;
  sparsity: number;
  notes?: string[];
}

export interface PruneReport {
  method: string;
  pattern: string;
  budget: BudgetMode;
  sparsity: number;
  /** Zeros / parameters over the pruned linears. */
  realizedSparsity: number;
  /** Realised sparsity per block (zeros / params over the block's pruned linears). */
  blockSparsity: number[];
  /** What the allocator granted each block. */
  targetBlockSparsity: number[];
  allocator: { name: string; description: string; scores?: number[]; expression?: Allocation['expression'] };
  linears: LinearReport[];
  calibration?: { nsamples: number; seqlen: number; tokens: number; sha256: string; source: string };
  /**
   * Wall seconds per phase. `calibration` is everything calibration took outside the method; when it ran through
   * the block sub-graphs, `calibrationPrefix` / `calibrationBuild` / `calibrationStatistics` / `calibrationOutput`
   * split it (CalibrationReport.seconds: prefix pass, sub-graph and session builds, statistics passes, output passes).
   */
  seconds: {
    total: number; allocation: number; prune: number; calibration: number; commit: number;
    calibrationPrefix?: number; calibrationBuild?: number; calibrationStatistics?: number; calibrationOutput?: number;
    /** CPU seconds (user + system, every thread of the process) spent in the method phase (`prune`). */
    pruneCpu?: number;
  };
  notes: string[];
  /** method `structured`: what was kept per block, and the model's parameters before / after. */
  structured?: StructuredReport;
}

/** What structured pruning removed (pruning.json `structured`). */
export interface StructuredReport {
  target: string[];
  score: string;
  mode: 'sequential' | 'oneshot';
  /** FLAP bias compensation applied (score flap). */
  biasCompensation: boolean;
  /** FFN intermediate width per block before / after. */
  blocks: {
    block: number; ffnBefore: number; ffnAfter: number; kept: number[];
    /** `heads` target: query heads and KV heads (groups) before / after, and the kept KV groups (original indices). */
    headsBefore?: number; headsAfter?: number; kvHeadsBefore?: number; kvHeadsAfter?: number; keptGroups?: number[];
  }[];
  /** `heads` target: the config.json fields written with the model (head counts, head_dim). */
  config?: Record<string, number>;
  /** Float parameters of the whole graph (every float initializer) before / after. */
  params: { before: number; after: number };
  /** target `depth`: the units scored and the ones removed. */
  depth?: DepthReport;
}

/** What depth pruning scored and removed (pruning.json `structured.depth`). */
export interface DepthReport {
  score: 'bi' | 'loss';
  unit: 'sublayer' | 'block';
  /** Every unit with its linear parameters and score (BI, or the loss increase), and whether it was removed. */
  units: { block: number; kind: 'attention' | 'mlp' | 'block'; params: number; score: number; removed: boolean }[];
  /** Removed sub-layers as `block.kind` (`"3.attention"`, `"7.mlp"`); a removed block lists both. */
  removed: string[];
  /** Parameters the budget asked for (S · ΣP) and the ones removed (block linears). */
  targetParams: number;
  removedParams: number;
  /** Mean calibration cross-entropy of the dense model (score loss). */
  denseLoss?: number;
}

const lastReports = new WeakMap<object, PruneReport>();
/** Calibration windows of the last pruneModel call per model (GPTQ at save time reuses them). */
const lastCalibrations = new WeakMap<object, PruneCalibration>();

/** Calibration windows (nsamples × seqlen token ids) and how they were run. */
export interface PruneCalibration {
  ids: Int32Array;
  nsamples: number;
  seqlen: number;
  sha256: string;
  mode: 'sequential' | 'oneshot';
  threads?: number;
  batchSize?: number;
}

/** The calibration windows of the last pruneModel call on this model, when it used calibration data. */
export function lastPruneCalibration(model: object): PruneCalibration | undefined {
  return lastCalibrations.get(model);
}

/**
 * Calibration windows for `model` from a CalibrationSource, exactly as pruneModel builds them (tokenized with the
 * model's tokenizer; nsamples default 128, seqlen default min(2048, context)). For tools that calibrate after pruning.
 */
export async function calibrationFor(
  model: unknown,
  o: Pick<PruneOptions, 'calibration' | 'nsamples' | 'seqlen' | 'source' | 'mode' | 'threads' | 'batchSize'>,
): Promise<PruneCalibration> {
  const pm = await attachModel(model, o.source ? { source: o.source } : undefined);
  const seqlen = o.seqlen ?? Math.min(2048, modelContext(pm));
  if (seqlen > modelContext(pm)) {
    throw new DsaPruneError(`seqlen ${seqlen} is above the model's context length ${modelContext(pm)}`, { hint: `Use seqlen ${modelContext(pm)} or less.` });
  }
  const cal = await calibrationWindows(pm, { method: 'magnitude', sparsity: 0, ...o }, seqlen, o.nsamples ?? 128);
  return { ids: cal.ids, nsamples: cal.nsamples, seqlen: cal.seqlen, sha256: cal.sha256, mode: o.mode ?? 'sequential', threads: o.threads, batchSize: o.batchSize };
}

/** Record (or, with undefined, forget) the calibration windows of the last prune of `model`. */
export function recordPruneCalibration(model: object, cal: PruneCalibration | undefined): void {
  if (cal) lastCalibrations.set(model, cal);
  else lastCalibrations.delete(model);
}

/** Record the report savePruned writes (used by the structured pipeline). */
export function recordPruneReport(model: object, report: PruneReport): void {
  lastReports.set(model, report);
}

/** The report of the last pruneModel call on this model (savePruned writes it into pruning.json). */
export function lastPruneReport(model: object): PruneReport | undefined {
  return lastReports.get(model);
}

export function parsePattern(p: Pattern | string | undefined): Pattern {
  if (p === undefined || p === 'unstructured') return { kind: 'unstructured' };
  if (typeof p !== 'string') return p;
  const m = /^(\d+):(\d+)$/.exec(p.trim());
  if (!m) throw new DsaPruneError(`pattern "${p}" is not understood`, { hint: "Use 'unstructured' or N:M such as '2:4' or '4:8'." });
  return { kind: 'nm', n: Number(m[1]), m: Number(m[2]) };
}

export function patternName(p: Pattern): string {
  return p.kind === 'unstructured' ? 'unstructured' : `${p.n}:${p.m}`;
}

function matches(name: string, pats: (string | RegExp)[]): boolean {
  return pats.some((p) => (typeof p === 'string' ? name.includes(p) : p.test(name)));
}

/** Which linears this request prunes. */
export function selectLinears(pm: PrunableModel, o: Pick<PruneOptions, 'include' | 'exclude' | 'roles' | 'skipFirstBlocks' | 'skipLastBlocks' | 'lmHead'>): LinearInfo[] {
  const first = o.skipFirstBlocks ?? 0;
  const last = pm.blocks - (o.skipLastBlocks ?? 0);
  return pm.linears.filter((l) => {
    if (l.role === 'lm_head') return !!o.lmHead;
    if (l.block < first || l.block >= last) return false;
    if (o.roles && !o.roles.includes(l.role)) return false;
    if (o.include && !matches(l.name, o.include)) return false;
    if (o.exclude && matches(l.name, o.exclude)) return false;
    return true;
  });
}

export function modelContext(pm: PrunableModel): number {
  return contextLength(pm.config as Record<string, unknown>) ?? 2048;
}

/** Reject a bad request before any work starts. */
export function validatePruneOptions(o: PruneOptions): { method: PruningMethod; pattern: Pattern; budget: BudgetMode } {
  if (!o || typeof o !== 'object') throw new DsaPruneError('pruneModel needs options: { method, sparsity, … }');
  const method = typeof o.method === 'string' ? getMethod(o.method) : o.method;
  if (!method || typeof method.prune !== 'function') throw new DsaPruneError('option method must be a method name or a PruningMethod');
  const pattern = parsePattern(o.pattern);
  const budget = o.budget ?? 'exact';
  if (budget !== 'exact' && budget !== 'reference') throw new DsaPruneError(`budget must be 'exact' or 'reference', got ${String(budget)}`);
  if (typeof o.sparsity !== 'number' || !Number.isFinite(o.sparsity)) throw new DsaPruneError(`sparsity must be a number in [0, 1), got ${String(o.sparsity)}`);
  validateMethodRequest({ method, sparsity: o.sparsity, pattern, budget });
  if (o.nsamples !== undefined && (!Number.isInteger(o.nsamples) || o.nsamples < 1)) throw new DsaPruneError(`nsamples must be a positive integer, got ${o.nsamples}`);
  if (o.seqlen !== undefined && (!Number.isInteger(o.seqlen) || o.seqlen < 2)) throw new DsaPruneError(`seqlen must be an integer ≥ 2, got ${o.seqlen}`);
  return { method, pattern, budget };
}

export interface CalibrationData {
  ids: Int32Array;
  nsamples: number;
  seqlen: number;
  sha256: string;
  source: string;
}

export async function calibrationWindows(pm: PrunableModel, o: PruneOptions, seqlen: number, nsamples: number): Promise<CalibrationData> {
  const src = o.calibration;
  if (src === undefined) {
    throw new DsaPruneError('this method or allocator needs calibration data', {
      hint: 'Pass calibration: a text string, { files: [...] } or { ids }, e.g. the first part of your training text.',
    });
  }
  let ids: Int32Array;
  let source: string;
  let seed: number | undefined;
  if (typeof src === 'string') {
    ids = await tokenize(pm, src);
    source = 'text';
  } else if (src.ids) {
    ids = src.ids;
    source = 'ids';
    seed = src.seed;
  } else {
    const text = src.text ?? (await Promise.all((src.files ?? []).map((f) => readTextFile(f)))).join('\n');
    ids = await tokenize(pm, text);
    source = src.files ? src.files.join(',') : 'text';
    seed = src.seed;
  }
  const windows = takeWindows(ids, seqlen, nsamples, { purpose: 'calibration', ...(seed !== undefined ? { seed } : {}) });
  const sha256 = createHash('sha256').update(new Uint8Array(windows.buffer, windows.byteOffset, windows.byteLength)).digest('hex');
  return { ids: windows, nsamples, seqlen, sha256, source };
}

const tokenizers = new Map<string, Promise<unknown>>();
/** Token ids of recent texts per tokenizer folder: tokenizing a long text is slow and calibration text is reused a lot. */
const tokenCache = new Map<string, Int32Array>();
const TOKEN_CACHE_ENTRIES = 8;

async function tokenize(pm: PrunableModel, text: string): Promise<Int32Array> {
  const dir = pm.source.dir;
  const key = `${dir}|${createHash('sha256').update(text).digest('hex')}`;
  const hit = tokenCache.get(key);
  if (hit) return hit;
  let tok = tokenizers.get(dir);
  if (!tok) tokenizers.set(dir, (tok = AutoTokenizer.from_pretrained(dir)));
  const ids = tokenizeText((await tok) as Parameters<typeof tokenizeText>[0], text);
  if (tokenCache.size >= TOKEN_CACHE_ENTRIES) tokenCache.delete(tokenCache.keys().next().value!);
  tokenCache.set(key, ids);
  return ids;
}

/** Dense allocation statistics, cached per model and calibration set: many allocators / candidates reuse them. */
const denseCache = new WeakMap<PrunableModel, Map<string, { blocks: BlockAllocationStats[]; stats: Map<string, InputStats> }>>();

export async function denseAllocationStats(
  pm: PrunableModel,
  cal: CalibrationData,
  linears: LinearInfo[],
  o: Pick<PruneOptions, 'threads' | 'batchSize' | 'onProgress' | 'signal'> = {},
): Promise<{ blocks: BlockAllocationStats[]; stats: Map<string, InputStats> }> {
  let perModel = denseCache.get(pm);
  if (!perModel) denseCache.set(pm, (perModel = new Map()));
  const key = `${cal.sha256}|${linears.map((l) => l.name).join(',')}`;
  const hit = perModel.get(key);
  if (hit) return hit;
  const stats = await denseStatistics(pm, cal.ids, {
    nsamples: cal.nsamples, seqlen: cal.seqlen, needs: { sq: true, gram: false },
    threads: o.threads, batchSize: o.batchSize, onProgress: o.onProgress, signal: o.signal,
  });
  const blocks: BlockAllocationStats[] = [];
  for (let b = 0; b < pm.blocks; b++) {
    const ls = linears.filter((l) => l.block === b);
    const params = ls.reduce((a, l) => a + l.dIn * l.dOut, 0);
    const z = new Float32Array(params);
    let off = 0;
    for (const l of ls) {
      const s = stats.get(l.name);
      if (!s) throw new DsaPruneError(`no calibration statistics for ${l.name}`);
      wandaMetric(pm.readWeight(l), l.dOut, l.dIn, s.sq, s.nsamples, z.subarray(off, off + l.dIn * l.dOut));
      off += l.dIn * l.dOut;
    }
    blocks.push({ index: b, params, linears: ls.map((l) => ({ name: l.name, role: l.role, params: l.dIn * l.dOut })), z });
  }
  const result = { blocks, stats };
  perModel.set(key, result);
  return result;
}
