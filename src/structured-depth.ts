/**
 * The depth pipeline (`pruneModel(model, { method: 'structured', target: ['depth'], depthScore, depthUnit, sparsity })`):
 * attach → sub-layer layouts (refused before any work when the layout cannot take it) → budget check → calibration
 * windows → scores from onnxruntime on the dense model (block influence, or the calibration-loss increase of each unit
 * removed alone) → the lowest-scoring prefix nearest the budget → graph surgery (each removed sub-layer is the
 * identity on the residual stream; a removed attention keeps its KV-cache I/O as a pass-through) → session swapped.
 * Scores are one-shot (every unit scored on the dense model), as in ShortGPT.
 */
import { DsaPruneError, throwIfAborted } from './errors.js';
import { PROTOBUF_LIMIT, attachModel, contextLength, initializerBytes, type PrunableModel } from './model/index.js';
import { SurgeryLog } from './model/surgery.js';
import { depthScoringGraph, removeSubLayers, subLayers, type ScoringUnit, type SubLayer } from './model/surgery-depth.js';
import { depthStatistics } from './calibration/depth.js';
import { checkDepthBudget, parseDepthScore, parseDepthUnit, selectDepthUnits } from './methods/structured/depth.js';
import {
  calibrationWindows, recordPruneReport, type DepthReport, type LinearReport, type PruneOptions, type PruneReport,
} from './prune-common.js';

/** Float parameters of the main graph (every float / float16 initializer). */
type ParamsOf = (pm: PrunableModel) => number;

interface Unit extends ScoringUnit {
  block: number;
  kind: 'attention' | 'mlp' | 'block';
  params: number;
}

function unitsOf(subs: SubLayer[], unit: 'sublayer' | 'block'): Unit[] {
  if (unit === 'sublayer') {
    return subs.map((s, i) => ({ block: s.block, kind: s.kind, params: s.params, members: [i], input: s.residual, output: s.output }));
  }
  const blocks = [...new Set(subs.map((s) => s.block))];
  return blocks.map((b) => {
    const idx = subs.map((s, i) => (s.block === b ? i : -1)).filter((i) => i >= 0);
    const attn = subs[idx.find((i) => subs[i]!.kind === 'attention')!]!;
    const mlp = subs[idx.find((i) => subs[i]!.kind === 'mlp')!]!;
    return { block: b, kind: 'block' as const, params: attn.params + mlp.params, members: idx, input: attn.residual, output: mlp.output };
  });
}

export async function pruneDepth(model: unknown, options: PruneOptions, graphParams: ParamsOf): Promise<PruneReport> {
  const t0 = performance.now();
  const score = parseDepthScore(options.depthScore);
  const unit = parseDepthUnit(options.depthUnit);
  const pm = await attachModel(model, options.source ? { source: options.source } : undefined);
  const subs = subLayers(pm);
  if (initializerBytes(pm.proto) >= PROTOBUF_LIMIT) {
    throw new DsaPruneError(`--target depth cannot score ${pm.source.onnxPath || 'this model'} yet: its weights are over the 2 GB of one ONNX protobuf, and the scoring graph is built in memory`, {
      hint: 'Use --target ffn for models this size (its calibration runs block by block).',
    });
  }
  const units = unitsOf(subs, unit);
  const unitName = unit === 'block' ? 'block' : 'sub-layer';
  checkDepthBudget(units.map((u) => u.params), options.sparsity, unitName);
  const ctx = contextLength(pm.config as Record<string, unknown>) ?? 2048;
  const seqlen = options.seqlen ?? Math.min(2048, ctx);
  if (seqlen > ctx) throw new DsaPruneError(`seqlen ${seqlen} is above the model's context length ${ctx}`, { hint: `Use --seqlen ${ctx} or less.` });
  const cal = await calibrationWindows(pm, options, seqlen, options.nsamples ?? 128);
  throwIfAborted(options.signal, 'pruning was aborted; the model was left unchanged');

  const tCal = performance.now();
  const sg = depthScoringGraph(pm, subs, units, { bi: score === 'bi', loss: score === 'loss' });
  const stats = await depthStatistics(sg, units.map((u) => u.members), cal.ids, {
    nsamples: cal.nsamples, seqlen: cal.seqlen, batchSize: options.batchSize, threads: options.threads, config: pm.config,
    onProgress: options.onProgress, signal: options.signal,
  });
  const scores = score === 'bi' ? stats.bi! : stats.lossIncrease!;
  const secondsCalibration = (performance.now() - tCal) / 1000;
  throwIfAborted(options.signal, 'pruning was aborted; the model was left unchanged');

  const tAlloc = performance.now();
  const removedUnits = selectDepthUnits(scores, units.map((u) => u.params), options.sparsity, unitName);
  const gone = new Set(removedUnits);
  const removedSubs = removedUnits.flatMap((k) => units[k]!.members).sort((a, b) => a - b).map((i) => subs[i]!);
  const secondsAllocation = (performance.now() - tAlloc) / 1000;

  const paramsBefore = graphParams(pm);
  const blockLinears = pm.linears.filter((l) => l.block >= 0);
  const blockParams = Array.from({ length: pm.blocks }, (_, b) => blockLinears.filter((l) => l.block === b).reduce((a, l) => a + l.dIn * l.dOut, 0));
  const ffnBefore = Array.from({ length: pm.blocks }, (_, b) => blockLinears.find((l) => l.block === b && l.role === 'down')?.dIn ?? 0);
  const removedLinears = new Set(removedSubs.flatMap((s) => s.linears));

  const log = new SurgeryLog();
  const tPrune = performance.now();
  let undoLinears: (() => void) | undefined;
  try {
    undoLinears = removeSubLayers(pm, removedSubs, log);
  } catch (e) {
    log.undo();
    undoLinears?.();
    throw e;
  }
  const secondsPrune = (performance.now() - tPrune) / 1000;
  const tCommit = performance.now();
  try {
    await pm.commit();
  } catch (e) {
    log.undo();
    undoLinears();
    throw e;
  }
  const secondsCommit = (performance.now() - tCommit) / 1000;

  const linears: LinearReport[] = blockLinears.map((l) => ({
    name: l.name, block: l.block, role: l.role, params: l.dIn * l.dOut, target: options.sparsity, sparsity: removedLinears.has(l) ? 1 : 0,
  }));
  const removedPerBlock = blockParams.map((_, b) => removedSubs.filter((s) => s.block === b).reduce((a, s) => a + s.params, 0));
  const P = blockParams.reduce((a, b) => a + b, 0);
  const removedParams = removedPerBlock.reduce((a, b) => a + b, 0);
  const depth: DepthReport = {
    score, unit,
    units: units.map((u, k) => ({ block: u.block, kind: u.kind, params: u.params, score: scores[k]!, removed: gone.has(k) })),
    removed: removedSubs.map((s) => `${s.block}.${s.kind}`),
    targetParams: options.sparsity * P,
    removedParams,
    ...(stats.denseLoss !== undefined ? { denseLoss: stats.denseLoss } : {}),
  };
  const mlpGone = new Set(removedSubs.filter((s) => s.kind === 'mlp').map((s) => s.block));
  const report: PruneReport = {
    method: 'structured',
    pattern: 'structured',
    budget: 'exact',
    sparsity: options.sparsity,
    realizedSparsity: removedParams / P,
    blockSparsity: removedPerBlock.map((r, b) => r / blockParams[b]!),
    targetBlockSparsity: blockParams.map(() => options.sparsity),
    allocator: { name: `depth-${score}`, description: `global ranking of ${unitName}s by ${score === 'bi' ? 'block influence (1 − cos)' : 'calibration loss increase'}` },
    linears,
    calibration: { nsamples: cal.nsamples, seqlen: cal.seqlen, tokens: cal.ids.length, sha256: cal.sha256, source: cal.source },
    seconds: { total: (performance.now() - t0) / 1000, allocation: secondsAllocation, prune: secondsPrune, calibration: secondsCalibration, commit: secondsCommit },
    notes: [],
    structured: {
      target: ['depth'], score, mode: 'oneshot', biasCompensation: false,
      blocks: ffnBefore.map((f, b) => ({ block: b, ffnBefore: f, ffnAfter: mlpGone.has(b) ? 0 : f, kept: [] })),
      params: { before: paramsBefore, after: graphParams(pm) },
      depth,
    },
  };
  recordPruneReport(model as object, report);
  return report;
}
