/**
 * The pipeline, and the one place that knows its order:
 * validate → attach to the model → calibration windows → (dense pass + allocation) → sequential method → write-back.
 */
import { DsaPruneError, throwIfAborted } from './errors.js';
import type { BudgetMode, InputStats, LinearInfo, LinearRole, Pattern } from './types.js';
import { attachModel, type PrunableModel, type WeightSnapshot } from './model/index.js';
import { checkMemory, estimatePeakMemory, type MemoryEstimate } from './model/memory.js';
import { hasExternalData, initializerBytes } from './model/external.js';
import { zerosAreExact, type PruningMethod } from './methods/index.js';
import { countZeros } from './methods/common.js';
import { resolveLinearSparsity } from './allocators/resolve.js';
import { atGranularity, checkGranularity } from './allocators/granularity.js';
import { uniform, FLAP_GLOBAL, type Allocation, type Allocator } from './allocators/index.js';
import { runCalibration } from './calibration/index.js';
import { pruneStructured } from './structured.js';
import {
  calibrationWindows, denseAllocationStats, modelContext, patternName, recordPruneCalibration, recordPruneReport, selectLinears,
  validatePruneOptions, type CalibrationData, type LinearReport, type PruneOptions, type PruneReport,
} from './prune-common.js';

export {
  calibrationFor, calibrationWindows, denseAllocationStats, lastPruneCalibration, lastPruneReport, parsePattern, patternName,
  recordPruneReport, selectLinears, validatePruneOptions,
} from './prune-common.js';
export type {
  CalibrationData, CalibrationSource, LinearReport, PruneCalibration, PruneOptions, PruneReport, StructuredReport,
} from './prune-common.js';

function checkAborted(signal?: AbortSignal): void {
  throwIfAborted(signal, 'pruning was aborted; the model was left unchanged');
}

interface Prepared {
  pm: PrunableModel;
  method: PruningMethod;
  pattern: Pattern;
  budget: BudgetMode;
  allocator: Allocator;
  linears: LinearInfo[];
  cal?: CalibrationData;
  allocation: Allocation;
  targetOf: (l: LinearInfo) => number;
  secondsAllocation: number;
}

/** Everything before the first weight changes: validation, model, linears, calibration windows, allocation. */
async function prepare(model: unknown, options: PruneOptions): Promise<Prepared> {
  const { method, pattern, budget } = validatePruneOptions(options);
  if (options.allocator?.name === FLAP_GLOBAL) options.allocator.allocate({ blocks: [], sparsity: options.sparsity, budget }); // refuses before any work
  const allocator = atGranularity(options.allocator ?? uniform(), checkGranularity(options.granularity));
  const pm = await attachModel(model, options.source ? { source: options.source } : undefined);
  const linears = selectLinears(pm, options);
  if (linears.length === 0) throw new DsaPruneError('no linear layer matches the include/exclude/roles/skip options', { hint: 'Run `dsa-prune inspect <model>` to see the names and roles.' });

  const seqlen = options.seqlen ?? Math.min(2048, modelContext(pm));
  if (seqlen > modelContext(pm)) {
    throw new DsaPruneError(`seqlen ${seqlen} is above the model's context length ${modelContext(pm)}`, { hint: `Use --seqlen ${modelContext(pm)} or less.` });
  }
  const nsamples = options.nsamples ?? 128;
  // Allocators that read no statistics (uniform, ATP, explicit lists) skip the dense pass.
  const statsFree = allocator.needsStatistics === false;
  const needsCalibration = method.needs.sq || method.needs.gram || !statsFree;
  // Refuse before any work when the estimated peak will not fit (calibration buffers: nsamples × seqlen, not context).
  checkMemory(memoryOf(pm, method, linears, needsCalibration ? nsamples : 0, seqlen, options.batchSize, options.blockWeights), options.maxMemoryGB);
  const cal = needsCalibration ? await calibrationWindows(pm, options, seqlen, nsamples) : undefined;
  checkAborted(options.signal);

  // Allocation from a dense pass (once per model + calibration set).
  const tAlloc = performance.now();
  let allocation: Allocation;
  if (statsFree) {
    const blocks = Array.from({ length: pm.blocks }, (_, index) => {
      const ls = linears.filter((l) => l.block === index);
      return {
        index, params: ls.reduce((a, l) => a + l.dIn * l.dOut, 0), z: new Float32Array(0),
        linears: ls.map((l) => ({ name: l.name, role: l.role, params: l.dIn * l.dOut })),
      };
    });
    allocation = allocator.allocate({ blocks, sparsity: options.sparsity, budget });
  } else {
    const dense = await denseAllocationStats(pm, cal!, linears.filter((l) => l.block >= 0), options);
    allocation = allocator.allocate({ blocks: dense.blocks, sparsity: options.sparsity, budget });
  }
  const secondsAllocation = (performance.now() - tAlloc) / 1000;
  // One resolver decides (src/allocators/resolve.ts); checked for every linear here, before any weight changes.
  const targets = new Map(linears.map((l) => [l.name, resolveLinearSparsity(allocation, l, { outside: options.sparsity, allocator: allocator.name })]));
  const targetOf = (l: LinearInfo) => targets.get(l.name)!;
  return { pm, method, pattern, budget, allocator, linears, cal, allocation, targetOf, secondsAllocation };
}

export interface PrunePlan {
  method: string;
  pattern: string;
  budget: BudgetMode;
  sparsity: number;
  allocator: string;
  blockSparsity: number[];
  linears: { name: string; block: number; role: LinearRole; dOut: number; dIn: number; target: number }[];
  params: number;
  zeros: number;
  memory: { peakBytes: number; explanation: string };
}

/** What pruneModel would do (layers, sparsities, memory), without changing the model. Runs the dense pass if the allocator needs it. */
export async function planPrune(model: unknown, options: PruneOptions): Promise<PrunePlan> {
  const p = await prepare(model, options);
  const ls = p.linears.map((l) => ({ name: l.name, block: l.block, role: l.role, dOut: l.dOut, dIn: l.dIn, target: p.targetOf(l) }));
  const params = ls.reduce((a, l) => a + l.dOut * l.dIn, 0);
  const zeros = Math.round(ls.reduce((a, l) => a + l.target * l.dOut * l.dIn, 0));
  const mem = memoryOf(p.pm, p.method, p.linears, p.cal?.nsamples ?? 0, p.cal?.seqlen ?? 0, options.batchSize, options.blockWeights);
  return {
    method: p.method.name, pattern: patternName(p.pattern), budget: p.budget, sparsity: options.sparsity,
    allocator: p.allocator.describe(), blockSparsity: p.allocation.blockSparsity, linears: ls, params, zeros,
    memory: { peakBytes: mem.peakBytes, explanation: mem.explanation },
  };
}

/** Peak memory estimate of pruning `linears` with `method` on nsamples × seqlen calibration tokens (src/model/memory.ts). */
function memoryOf(
  pm: PrunableModel, method: { needs: { gram?: boolean } }, linears: LinearInfo[], nsamples: number, seqlen: number, batch?: number,
  blockWeights?: 'inputs' | 'initializers',
): MemoryEstimate {
  const cfg = pm.config as Record<string, unknown>;
  const num = (...keys: string[]): number => Number(keys.map((k) => cfg[k]).find((v) => typeof v === 'number') ?? 0);
  return estimatePeakMemory({
    weightBytes: initializerBytes(pm.proto),
    external: hasExternalData(pm.proto),
    hidden: num('hidden_size', 'n_embd', 'dim'),
    heads: num('num_attention_heads', 'n_head', 'n_heads'),
    ffn: num('intermediate_size', 'n_inner', 'hidden_dim'),
    batch,
    nsamples, seqlen,
    blockBytes: Math.max(0, ...Array.from({ length: pm.blocks }, (_, b) => linears.filter((l) => l.block === b).reduce((a, l) => a + l.dIn * l.dOut * 4, 0))),
    gramDim: method.needs.gram ? Math.max(0, ...linears.map((l) => l.dIn)) : 0,
    gramDims: method.needs.gram ? blockGramDims(linears) : undefined,
    maxDOut: Math.max(0, ...linears.map((l) => l.dOut)),
    // All of a block's linears, pruned or not, are initializers of its sessions.
    blockSessionWeightBytes: blockWeights === 'initializers' && nsamples > 0
      ? Math.max(0, ...Array.from({ length: pm.blocks }, (_, b) => pm.linears.filter((l) => l.block === b).reduce((a, l) => a + l.dIn * l.dOut * (l.dtype === 'float16' ? 2 : 4), 0)))
      : 0,
  });
}

/** Input widths of the distinct inputs (q/k/v and gate/up share one) of the block with the most Gram entries. */
function blockGramDims(linears: LinearInfo[]): number[] {
  const shared: Partial<Record<string, string>> = { q: 'attn', k: 'attn', v: 'attn', qkv: 'attn', gate: 'mlp', up: 'mlp', gate_up: 'mlp' };
  const byBlock = new Map<number, Map<string, number>>();
  for (const l of linears) {
    const inputs = byBlock.get(l.block) ?? new Map<string, number>();
    inputs.set(shared[l.role] ?? l.name, l.dIn);
    byBlock.set(l.block, inputs);
  }
  let best: number[] = [];
  for (const inputs of byBlock.values()) {
    const dims = [...inputs.values()];
    if (dims.reduce((a, d) => a + d * d, 0) > best.reduce((a, d) => a + d * d, 0)) best = dims;
  }
  return best;
}

/**
 * Prune a transformers.js causal LM in place. The model keeps working (`generate`, pipelines) and `savePruned`
 * writes it to a folder that `from_pretrained` loads again.
 */
export async function pruneModel(model: unknown, options: PruneOptions): Promise<PruneReport> {
  if (options && options.method === 'structured') return pruneStructured(model, options);
  const t0 = performance.now();
  const { pm, method, pattern, budget, allocator, linears, cal, allocation, targetOf, secondsAllocation } = await prepare(model, options);

  // Undo steps so an abort or a failure leaves the model as it was. They hold no weight copy (see snapshotWeight): a
  // float32 copy of every pruned linear would add ≈ 1× the model to the peak, held through commit.
  const undo: WeightSnapshot[] = [];
  const reports = new Map<string, LinearReport>();
  let secondsPrune = 0;
  let cpuPrune = 0;
  const pruneBlock = async (block: number, stats?: Map<string, InputStats>) => {
    const t = performance.now();
    const c = process.cpuUsage();
    for (const l of linears) {
      if (l.block !== block) continue;
      checkAborted(options.signal);
      undo.push(pm.snapshotWeight(l));
      const weight = pm.readWeight(l);
      const target = targetOf(l);
      const res = await method.prune({
        weight, dOut: l.dOut, dIn: l.dIn, stats: stats?.get(l.name), sparsity: target, pattern, budget,
        signal: options.signal, name: l.name,
      });
      pm.writeWeight(l, weight);
      // A built-in's count is countZeros(weight) already: a second pass over every weight was ~5 % of the method phase.
      const zeros = zerosAreExact(method) ? res.zeros : countZeros(weight);
      reports.set(l.name, {
        name: l.name, block: l.block, role: l.role, params: l.dIn * l.dOut, target,
        sparsity: zeros / weight.length, ...(res.notes.length ? { notes: res.notes } : {}),
      });
    }
    secondsPrune += (performance.now() - t) / 1000;
    const dc = process.cpuUsage(c);
    cpuPrune += (dc.user + dc.system) / 1e6;
  };

  const tCal = performance.now();
  let calSplit: Partial<PruneReport['seconds']> = {};
  try {
    if (method.needs.sq || method.needs.gram) {
      const cr = await runCalibration(pm, cal!.ids, {
        nsamples: cal!.nsamples, seqlen: cal!.seqlen, needs: method.needs, mode: options.mode ?? 'sequential',
        threads: options.threads, batchSize: options.batchSize, onProgress: options.onProgress, signal: options.signal,
        blockWeights: options.blockWeights,
      }, (block, stats) => pruneBlock(block, stats));
      calSplit = {
        calibrationPrefix: cr.seconds.prefix, calibrationBuild: cr.seconds.build,
        calibrationStatistics: cr.seconds.statistics, calibrationOutput: cr.seconds.output,
      };
    } else {
      for (let b = 0; b < pm.blocks; b++) await pruneBlock(b);
    }
    // lm_head is outside the blocks.
    if (linears.some((l) => l.block < 0)) await pruneBlock(-1);
  } catch (e) {
    for (let i = undo.length - 1; i >= 0; i--) undo[i]!();
    for (const u of undo) u.release();
    throw e;
  }
  for (const u of undo) u.release(); // scratch-file regions of the replaced weights may be reused
  undo.length = 0; // inline sources: do not hold the replaced bytes through commit
  const secondsCalibration = (performance.now() - tCal) / 1000 - secondsPrune;

  const tCommit = performance.now();
  await pm.commit();
  const secondsCommit = (performance.now() - tCommit) / 1000;

  const linReports = linears.map((l) => reports.get(l.name)!).filter(Boolean);
  let zeros = 0;
  let params = 0;
  const bz = new Array<number>(pm.blocks).fill(0);
  const bp = new Array<number>(pm.blocks).fill(0);
  for (const r of linReports) {
    const z = Math.round(r.sparsity * r.params);
    zeros += z;
    params += r.params;
    if (r.block >= 0) {
      bz[r.block] += z;
      bp[r.block] += r.params;
    }
  }
  const notes = [...new Set(linReports.flatMap((r) => r.notes ?? []))];
  const report: PruneReport = {
    method: method.name,
    pattern: patternName(pattern),
    budget,
    sparsity: options.sparsity,
    realizedSparsity: params ? zeros / params : 0,
    blockSparsity: bz.map((z, b) => (bp[b] ? z / bp[b] : 0)),
    targetBlockSparsity: allocation.blockSparsity,
    allocator: {
      name: allocator.name, description: allocator.describe(),
      ...(allocation.scores ? { scores: allocation.scores } : {}),
      ...(allocation.expression ? { expression: allocation.expression } : {}),
    },
    linears: linReports,
    ...(cal ? { calibration: { nsamples: cal.nsamples, seqlen: cal.seqlen, tokens: cal.ids.length, sha256: cal.sha256, source: cal.source } } : {}),
    seconds: {
      total: (performance.now() - t0) / 1000, allocation: secondsAllocation, prune: secondsPrune,
      calibration: Math.max(0, secondsCalibration), commit: secondsCommit, ...calSplit, pruneCpu: cpuPrune,
    },
    notes,
  };
  recordPruneReport(model as object, report);
  recordPruneCalibration(model as object, cal ? {
    ids: cal.ids, nsamples: cal.nsamples, seqlen: cal.seqlen, sha256: cal.sha256, mode: options.mode ?? 'sequential',
    threads: options.threads, batchSize: options.batchSize,
  } : undefined);
  return report;
}
