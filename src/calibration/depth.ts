/**
 * Depth-pruning statistics on the calibration windows, computed by onnxruntime on the scoring graph
 * (model/surgery-depth.ts `depthScoringGraph`: the model with a gate on every sub-layer's branch, per-unit cosine
 * outputs and the summed next-token log-likelihood). No forward in TypeScript: JS only feeds the windows and adds up
 * the graph's float32 outputs in float64.
 *
 * - Block Influence (ShortGPT, Men et al. 2024): BI = 1 − mean over calibration tokens of cos(x_in, x_out), x_in / x_out
 *   the residual stream entering / leaving the unit, from one pass of the dense model (every gate 1).
 * - Loss: the mean next-token cross-entropy with that unit alone removed (its gates 0) minus the dense one; one pass
 *   per unit.
 *
 * Memory: the scoring session is a second onnxruntime copy of the graph next to the model's own session (as
 * `commit()` builds one for graphs under 2 GB); it is released before the function returns.
 */
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import { DsaPruneError, throwIfAborted } from '../errors.js';
import type { ProgressCallback } from '../types.js';
import { encodeModel, float32ToFp16, DataType } from '../model/onnx.js';
import { buildFeeds, type DecoderSession } from '../model/feeds.js';
import type { ScoringGraph } from '../model/surgery-depth.js';

export interface DepthStatsOptions {
  nsamples: number;
  seqlen: number;
  /** Windows per onnxruntime run (default 8). */
  batchSize?: number;
  threads?: number;
  /** model config (KV-cache shapes when the graph leaves them symbolic). */
  config?: Record<string, unknown>;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export interface DepthStats {
  /** Per unit: 1 − mean cos(x_in, x_out) over the calibration tokens (when BI was built into the graph). */
  bi?: number[];
  /** Mean next-token cross-entropy of the dense model (when loss was built into the graph). */
  denseLoss?: number;
  /** Per unit: mean cross-entropy with the unit removed minus denseLoss. */
  lossIncrease?: number[];
  /** Calibration tokens the cosines were averaged over / next-token predictions the loss was averaged over. */
  tokens: number;
  predictions: number;
  seconds: number;
}

/**
 * Run the scoring graph over `windows` (nsamples × seqlen ids). `units[k]` lists the gates unit k closes.
 */
export async function depthStatistics(sg: ScoringGraph, units: number[][], windows: Int32Array, opts: DepthStatsOptions): Promise<DepthStats> {
  const t0 = performance.now();
  const { nsamples, seqlen } = opts;
  if (windows.length !== nsamples * seqlen) throw new DsaPruneError(`depth statistics: ${windows.length} ids for ${nsamples} × ${seqlen} windows`);
  const batch = Math.max(1, Math.min(opts.batchSize ?? 8, nsamples));
  const nBatches = Math.ceil(nsamples / batch);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(encodeModel(sg.model), {
      intraOpNumThreads: opts.threads ?? os.availableParallelism(), interOpNumThreads: 1, executionMode: 'sequential',
      graphOptimizationLevel: 'all', logSeverityLevel: 3,
    });
  } catch (e) {
    throw new DsaPruneError(`depth statistics: onnxruntime rejected the scoring graph: ${(e as Error).message}`, {
      hint: 'this graph layout is not supported by the depth target yet (see docs/structured.md)', cause: e,
    });
  }
  const ours = new Set([...sg.gates, ...(sg.labels ? [sg.labels] : [])]);
  const view: DecoderSession = {
    inputNames: session.inputNames.filter((n) => !ours.has(n)), outputNames: [], run: session.run.bind(session),
    inputMetadata: (session as unknown as DecoderSession).inputMetadata,
  };
  const gateTensor = (v: number): ort.Tensor => (sg.gateElemType === DataType.FLOAT16
    ? new ort.Tensor('float16', float32ToFp16(Float32Array.of(v)), [1])
    : new ort.Tensor('float32', Float32Array.of(v), [1]));
  const one = gateTensor(1);
  const zero = gateTensor(0);
  const passes = 1 + (sg.logprob ? units.length : 0);
  let done = 0;
  /** One pass over every batch with the gates of `closed` at 0: Σ log p and (dense pass) Σ cos per unit. */
  const pass = async (closed: Set<number>, withCos: boolean): Promise<{ logprob: number; cos: number[] }> => {
    const cos = new Array<number>(sg.cos.length).fill(0);
    let logprob = 0;
    const fetches = [...(sg.logprob ? [sg.logprob] : []), ...(withCos ? sg.cos : [])];
    for (let i = 0; i < nBatches; i++) {
      throwIfAborted(opts.signal, 'pruning was aborted; the model was left unchanged');
      const rows = Math.min(batch, nsamples - i * batch);
      const ids = windows.subarray(i * batch * seqlen, (i * batch + rows) * seqlen);
      const feeds: Record<string, ort.Tensor> = buildFeeds(view, ids, rows, seqlen, { config: opts.config });
      sg.gates.forEach((g, k) => {
        feeds[g] = closed.has(k) ? zero : one;
      });
      if (sg.labels) {
        const lab = new BigInt64Array(rows * (seqlen - 1));
        for (let r = 0; r < rows; r++) for (let t = 0; t < seqlen - 1; t++) lab[r * (seqlen - 1) + t] = BigInt(ids[r * seqlen + t + 1]!);
        feeds[sg.labels] = new ort.Tensor('int64', lab, [rows, seqlen - 1]);
      }
      const out = await session.run(feeds, fetches);
      if (sg.logprob) logprob += Number((out[sg.logprob]!.data as Float32Array)[0]);
      if (withCos) {
        sg.cos.forEach((name, k) => {
          const d = out[name]!.data as Float32Array;
          let s = 0;
          for (let j = 0; j < d.length; j++) s += d[j]!;
          cos[k] += s;
        });
      }
    }
    done++;
    opts.onProgress?.({ phase: 'depth-scores', fraction: done / passes });
    return { logprob, cos };
  };
  const tokens = nsamples * seqlen;
  const predictions = nsamples * (seqlen - 1);
  try {
    const dense = await pass(new Set(), sg.cos.length > 0);
    const result: DepthStats = { tokens, predictions, seconds: 0 };
    if (sg.cos.length > 0) result.bi = dense.cos.map((c) => 1 - c / tokens);
    if (sg.logprob) {
      const denseLoss = -dense.logprob / predictions;
      result.denseLoss = denseLoss;
      result.lossIncrease = [];
      for (const members of units) result.lossIncrease.push(-(await pass(new Set(members), false)).logprob / predictions - denseLoss);
    }
    result.seconds = (performance.now() - t0) / 1000;
    return result;
  } finally {
    await session.release();
  }
}
