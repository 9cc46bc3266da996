/**
 * `savePruned(model, dir, { quantize: 'q4', gptq: true })`: validate the request, find the calibration windows (the
 * ones pruneModel used, or `calibration`), and run GPTQ (src/compress/gptq.ts) so the q4 writer stores GPTQ codes.
 */
import { DsaPruneError } from './errors.js';
import { gptqModel, type GptqModelResult } from './compress/gptq.js';
import { q4HeadBlockSize, type QuantizeKind } from './compress/quantize.js';
import { quantizeKinds } from './compress/files.js';
import { attachModel, checkOutDir } from './model/index.js';
import { calibrationFor, lastPruneCalibration, type CalibrationSource, type PruneCalibration } from './prune.js';
import type { ProgressCallback } from './types.js';

export interface GptqSaveOptions {
  /** Shrunken ranges tried per group (default 6, as round-to-nearest q4). */
  rangeSearch?: number;
  /** Hessian damping as a fraction of mean(diag H) (default 0.1, GPTQ_PERCDAMP). */
  percdamp?: number;
  /** Sweep columns by decreasing diag(H) with static groups (GPTQ's act_order + static_groups). Default false. */
  actOrder?: boolean;
  /** `sequential` (default): later blocks' Hessians see the quantized earlier blocks. */
  mode?: 'sequential' | 'oneshot';
  /**
   * GPTQ the lm_head too, on the final norm's output Gram matrix (default false: round-to-nearest lm_head).
   * `'tied'` (= true): a 4-bit embedding table tied to the lm_head reads the lm_head's GPTQ codes (file size unchanged);
   * `'untied'`: the table gets its own round-to-nearest codes (4-bit: +0.67 MB on bench-12l; int8 with
   * `quantizeOptions.embedding: 'q8'`, where the table is never tied).
   */
  lmHead?: boolean | 'tied' | 'untied';
  /**
   * Asymmetric calibration (GPTAQ): fit the quantized model's outputs to the unquantized pruned model's (target
   * W·x̃, x̃ = inputs in the unquantized model) instead of W·x. Sequential mode only; one more hidden-state stream
   * during the pass. Default: true when GPTQ runs sequentially (the default), false in one-shot mode; `false` gives
   * plain sequential GPTQ (the default before 2026-12-03 session 6).
   */
  asymmetric?: boolean;
  threads?: number;
  batchSize?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export interface GptqRequest {
  gptq?: boolean | GptqSaveOptions;
  /** Calibration for GPTQ when the model was not pruned with calibration data by pruneModel (e.g. magnitude). */
  calibration?: CalibrationSource;
  nsamples?: number;
  seqlen?: number;
  quantize?: QuantizeKind | QuantizeKind[];
  quantizeOptions?: { blockSize?: number; rangeSearch?: number; headBlockSize?: number; embedding?: 'q4' | 'q8' };
  overwrite?: boolean;
}

/** What savePruned reports (and writes into pruning.json) about a GPTQ run. */
export interface GptqSaveSummary {
  method: 'gptq';
  blockSize: number;
  /** The lm_head / embedding pair's block size, when it differs from `blockSize` (quantizeOptions.headBlockSize). */
  headBlockSize?: number;
  linears: number;
  seconds: number;
  /** lm_head GPTQ (absent: round-to-nearest lm_head) and whether the calibration was asymmetric. */
  lmHead?: 'tied' | 'untied';
  asymmetric: boolean;
  calibration: { nsamples: number; seqlen: number; sha256: string; reused: boolean };
}

/** Throws before any work when `gptq` is asked for without q4 or without calibration; returns undefined when not asked. */
export async function runGptqForSave(
  model: unknown, outDir: string, o: GptqRequest,
): Promise<{ codes: GptqModelResult['codes']; tieCodes: boolean; summary: GptqSaveSummary } | undefined> {
  if (!o.gptq) return undefined;
  const kinds = quantizeKinds(o.quantize);
  if (!kinds.includes('q4')) {
    throw new DsaPruneError(
      kinds.length ? `gptq applies to q4 only; this save asks for ${kinds.join(', ')}` : 'gptq needs a quantized output: nothing was asked to be quantized',
      { hint: "Add quantize: 'q4' (CLI: --quantize q4). q8 is nearly lossless with round-to-nearest (+0.16 % ppl on bench-12l) and is written without GPTQ." },
    );
  }
  const g: GptqSaveOptions = typeof o.gptq === 'object' ? o.gptq : {};
  if (g.lmHead !== undefined && ![true, false, 'tied', 'untied'].includes(g.lmHead)) {
    throw new DsaPruneError(`gptq.lmHead must be true, false, 'tied' or 'untied', got ${JSON.stringify(g.lmHead)}`, { hint: "Use 'tied' (the embedding reads the lm_head's GPTQ codes) or 'untied'." });
  }
  const lmHead = g.lmHead === true ? 'tied' : g.lmHead || undefined;
  if (g.asymmetric === true && (g.mode ?? 'sequential') !== 'sequential') {
    throw new DsaPruneError("gptq.asymmetric needs mode 'sequential' (in one-shot mode every input is the unquantized model's)", { hint: 'Leave gptq.mode out.' });
  }
  const pm = await attachModel(model);
  if (pm.source.dir) checkOutDir(pm.source.dir, outDir, o.overwrite ?? false); // fail on the folder before the long part
  let cal: PruneCalibration | undefined;
  let reused = false;
  if (o.calibration !== undefined) {
    cal = await calibrationFor(model, { calibration: o.calibration, nsamples: o.nsamples, seqlen: o.seqlen, mode: g.mode, threads: g.threads, batchSize: g.batchSize });
  } else {
    cal = lastPruneCalibration(model as object);
    reused = !!cal;
  }
  if (!cal) {
    throw new DsaPruneError('gptq needs calibration data: this model was not pruned with calibration data in this process', {
      hint: 'Pass calibration (the text you pruned with, e.g. { files: [...] }; CLI: --calibration <file>), or prune with wanda / sparsegpt first.',
    });
  }
  const blockSize = o.quantizeOptions?.blockSize ?? 32;
  // resolved with the writer's own options, so GPTQ's groups match the file the writer makes
  const headBlockSize = q4HeadBlockSize(pm.proto.graph, o.quantizeOptions ?? {});
  const mode = g.asymmetric === true ? 'sequential' : g.mode ?? cal.mode ?? 'sequential';
  const asymmetric = g.asymmetric ?? mode === 'sequential';
  const res = await gptqModel(model, {
    windows: cal.ids, nsamples: cal.nsamples, seqlen: cal.seqlen, blockSize, rangeSearch: g.rangeSearch ?? o.quantizeOptions?.rangeSearch, percdamp: g.percdamp, actOrder: g.actOrder,
    lmHead: lmHead !== undefined, asymmetric, headBlockSize,
    mode, threads: g.threads ?? cal.threads, batchSize: g.batchSize ?? cal.batchSize, onProgress: g.onProgress, signal: g.signal,
  });
  return {
    codes: res.codes,
    tieCodes: lmHead === 'tied',
    summary: {
      method: 'gptq', blockSize, ...(headBlockSize !== blockSize ? { headBlockSize } : {}), linears: res.linears.length, seconds: res.seconds,
      ...(lmHead ? { lmHead } : {}), asymmetric,
      calibration: { nsamples: cal.nsamples, seqlen: cal.seqlen, sha256: cal.sha256, reused },
    },
  };
}
