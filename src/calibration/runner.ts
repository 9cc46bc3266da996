/**
 * The calibration runner: token windows → per-linear input statistics, computed inside onnxruntime on per-block
 * sub-graphs over cached hidden states (see graph.ts), accumulated in float64 in JS.
 *
 * Sequential (default, the reference protocol): for each block b, a statistics pass on the hidden states entering b,
 * then `onBlock(b, stats)` (the pipeline prunes block b there), then an output pass of block b with the weights as they
 * are now, whose outputs are the hidden states entering b + 1. The block's linear weights are session inputs, read
 * through `readInitializer` at the time of each pass, so the pruned weights are picked up without touching the graph.
 * One-shot: one pass per block computes the statistics and the dense outputs together.
 */
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { DsaPruneError, throwIfAborted } from '../errors.js';
import type { InputStats, LinearInfo, ProgressCallback } from '../types.js';
import { DataType, createNode, createTensor, decodeModel, encodeModel, float32ToFp16, pointAtExternal, type ModelProto } from '../model/onnx.js';
import { buildFeeds, type DecoderSession } from '../model/feeds.js';
import { releaseBuffers } from '../model/release.js';
import { blockOutputs, buildBlock, buildHead, buildPrefix, headInput, planGraph, type GraphPlan, type StatsInput, type SubgraphSpec } from './graph.js';

/**
 * What calibration needs from a model (PrunableModel from src/model satisfies it): the graph, its linears, and the
 * current value of an initializer in ONNX layout (reflecting weights written since loading).
 */
export interface CalibrationModel {
  proto: ModelProto;
  linears: LinearInfo[];
  /** Current values of an initializer, ONNX layout, float32. */
  readInitializer(name: string): Float32Array;
  /**
   * Free the memory of readInitializer results that are no longer used now rather than at the next GC (PrunableModel:
   * src/model/release.ts). Optional: without it they are left to the GC.
   */
  releaseReads?(values: Iterable<Float32Array>): Promise<void>;
  /** Where the graph came from: external data files are resolved next to `onnxPath` (PrunableModel.source). */
  source?: { dir: string; onnxPath?: string };
  /** config.json (KV-cache shapes when the graph leaves them symbolic). */
  config?: Record<string, unknown>;
}

/** Options of runCalibration / denseStatistics. */
export interface CalibrationOptions {
  /** Number of calibration windows (sequences). */
  nsamples: number;
  /** Tokens per window. */
  seqlen: number;
  /** Windows per onnxruntime run (default 8). Larger is faster until memory runs out. */
  batchSize?: number;
  /** onnxruntime intra-op threads (default: the number of cores). */
  threads?: number;
  /**
   * `sequential` (default): block b's statistics see the outputs of blocks 0..b-1 after they were pruned.
   * `oneshot`: every statistic from the dense model, then `onBlock` for each block in order.
   */
  mode?: 'sequential' | 'oneshot';
  /**
   * Which statistics to compute: `sq` (per-feature Σx², Wanda) is always computed; `gram` (XᵀX, SparseGPT) on request.
   * `cross` (sequential mode only): also carry a *reference stream* — the hidden states of the model as it was before
   * any `onBlock` changed it (each block's reference outputs are computed before `onBlock(b)` runs) — and return
   * `InputStats.cross` = Σ_t x̃_tᵀ x_t (x̃ the reference stream's input, x the current stream's), for asymmetric GPTQ.
   * Costs one more hidden-state store (nsamples × seqlen × hidden float32, e.g. 67 MB at bench-12l 128 × 512) and
   * one more block run per batch.
   */
  needs: { sq: boolean; gram: boolean; sum?: boolean; cross?: boolean };
  /**
   * A linear outside the blocks that reads what the last block hands on (the lm_head, from discoverLinears with
   * includeLmHead): its input statistics (the final norm's output) are computed after the last block and passed to
   * `onBlock(nBlocks, Map{ head.name → stats })`, after every block's callback.
   */
  head?: LinearInfo;
  /**
   * Progress: phase `statistics` / `output` (and `prefix`), the block, and `fraction` = share of the whole run done.
   */
  onProgress?: ProgressCallback;
  /** Abort between onnxruntime runs; the promise rejects with a DsaPruneError (exit code 130). */
  signal?: AbortSignal;
  /**
   * Sequential mode's block graphs (onnxruntime runs every node of a session's graph whatever is fetched):
   * - `gated` (default): one graph with the block and its statistics, the statistics nodes inside an `If` on a bool
   *   input: the statistics pass turns them on, the output pass off. One session, one arena; the statistics pass
   *   still runs the block's tail (down_proj and the last residual), the output pass no reductions.
   * - `split`: a statistics-only graph (the block up to its last linear input, plus the reductions) and an
   *   outputs-only graph, one session each, both open across identical blocks: the least compute, two arenas.
   * - `combined`: one graph with the statistics and the outputs serving both passes (the design before the split):
   *   each pass also runs the other's nodes (for SparseGPT the XᵀX Gemms in the output pass too).
   * The statistics and the outputs are the same bits with all three. One-shot mode always uses `combined` (one pass
   * needs both).
   */
  blockGraphs?: 'gated' | 'split' | 'combined';
  /**
   * How a block session gets the block's weights:
   * - `inputs` (default): as graph inputs, fed on every run; one session serves all structurally identical blocks and
   *   both passes (see blockGraphs).
   * - `initializers`: as initializers (handed to onnxruntime from memory as external data, float16 weights as
   *   float16), so onnxruntime pre-packs the MatMul weights; a session can then serve one pass of one block only: the
   *   statistics pass gets a statistics-only session with the dense weights, the output pass an outputs-only session
   *   with the pruned ones, each created for the pass and released right after it (one block session open at a
   *   time). Pre-packed MatMuls accumulate in another order: the statistics and outputs differ from `inputs` in the
   *   last bits (docs/calibration.md), so this is opt-in. `blockGraphs` is ignored.
   */
  blockWeights?: 'inputs' | 'initializers';
  /**
   * For tests and tools: called after each output run with the tensors block `block` hands to later blocks for batch
   * `batch` (by their names in the model). Called in one-shot mode too; not for the last block, whose outputs are
   * never computed in sequential mode.
   */
  onCarried?: (block: number, batch: number, tensors: Record<string, ort.Tensor>) => void;
}

/** Per-block timings (seconds) and the hidden state entering the block. */
export interface BlockReport {
  block: number;
  statistics: number;
  prune: number;
  output: number;
  /** Σ and Σ² of the hidden state entering the block (float64), when it is one tensor. */
  inputSum?: number;
  inputSumSq?: number;
}

/** What a calibration run measured. */
export interface CalibrationReport {
  mode: 'sequential' | 'oneshot';
  nsamples: number;
  seqlen: number;
  batchSize: number;
  threads: number;
  /** Seconds per phase: prefix (embedding + shared tensors), build (sub-graphs + sessions), statistics, prune (inside onBlock), output, total. */
  seconds: { prefix: number; build: number; statistics: number; prune: number; output: number; total: number };
  blocks: BlockReport[];
  /** Peak resident memory of the process so far (bytes). */
  peakRssBytes: number;
  /**
   * onnxruntime sessions built for the blocks. Structurally identical blocks share one session per graph kind, so
   * this is the number of runs of identical blocks times the graph kinds: sequential `split` → 2 when all blocks are
   * identical (statistics graph + outputs graph), one-shot or `combined` → 1.
   */
  blockSessions?: number;
  /** The same count by graph kind (statistics-only, outputs-only, combined). */
  blockSessionsByKind?: Record<GraphKind, number>;
}

/** What a block sub-graph computes: statistics only, the carried outputs only, or both. */
export type GraphKind = 'statistics' | 'output' | 'combined' | 'gated';

type Store = Map<string, ort.Tensor>;

interface OpenBlock {
  kind: GraphKind;
  spec: SubgraphSpec;
  session: ort.InferenceSession;
  gram: boolean;
  sum: boolean;
  /** The session belongs to this pass (blockWeights 'initializers'): blockPass releases it. */
  owned?: boolean;

}

/** A block graph with its weights as external initializers, and their bytes (onnxruntime `externalData`). */
interface ExternalWeights {
  bytes: Uint8Array;
  files: { path: string; data: Uint8Array }[];
}

/** A block session kept open for the next blocks whose canonical sub-graph has the same bytes. */
interface SharedSession {
  bytes: Uint8Array;
  session: ort.InferenceSession;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

const ORT_TO_ONNX: Record<string, number> = {
  float32: DataType.FLOAT, float16: DataType.FLOAT16, int64: DataType.INT64, int32: DataType.INT32,
  bool: DataType.BOOL, uint8: DataType.UINT8, int8: DataType.INT8, float64: DataType.DOUBLE,
};

function now(): number {
  return performance.now() / 1000;
}

function checkAbort(signal?: AbortSignal): void {
  throwIfAborted(signal, 'calibration aborted');
}

/** Shared machinery of both modes. */
class Runner {
  readonly plan: GraphPlan;
  readonly batch: number;
  readonly threads: number;
  readonly nBatches: number;
  readonly stores: Store[] = [];
  readonly report: CalibrationReport;
  /** The reference stream's stores (needs.cross): the hidden states of the model before onBlock changed it. */
  readonly refStores: Store[] = [];
  private readonly t0 = now();

  constructor(readonly pm: CalibrationModel, readonly windows: Int32Array, readonly opts: CalibrationOptions) {
    const { nsamples, seqlen } = opts;
    if (!Number.isInteger(nsamples) || nsamples < 1) throw new DsaPruneError(`calibration: nsamples must be an integer ≥ 1, got ${nsamples}`);
    if (!Number.isInteger(seqlen) || seqlen < 1) throw new DsaPruneError(`calibration: seqlen must be an integer ≥ 1, got ${seqlen}`);
    if (windows.length !== nsamples * seqlen) {
      throw new DsaPruneError(`calibration: got ${windows.length} token ids, expected nsamples × seqlen = ${nsamples} × ${seqlen} = ${nsamples * seqlen}`, {
        hint: 'cut the windows with takeWindows(ids, seqlen, nsamples) from src/data/text.ts',
      });
    }
    if (opts.blockGraphs !== undefined && !['gated', 'split', 'combined'].includes(opts.blockGraphs)) {
      throw new DsaPruneError(`calibration: blockGraphs must be 'gated', 'split' or 'combined', got ${String(opts.blockGraphs)}`, {
        hint: "leave it out for 'gated' (one session per block structure, statistics skipped in the output pass)",
      });
    }
    if (opts.blockWeights !== undefined && !['inputs', 'initializers'].includes(opts.blockWeights)) {
      throw new DsaPruneError(`calibration: blockWeights must be 'inputs' or 'initializers', got ${String(opts.blockWeights)}`, {
        hint: "leave it out for 'inputs' (weights fed as inputs; one session serves all identical blocks)",
      });
    }
    this.batch = Math.max(1, Math.min(opts.batchSize ?? 8, nsamples));
    this.threads = opts.threads ?? os.availableParallelism();
    this.nBatches = Math.ceil(nsamples / this.batch);
    this.plan = planGraph(pm.proto, pm.linears, pm.source?.onnxPath ? path.dirname(pm.source.onnxPath) : undefined);
    this.report = {
      mode: opts.mode ?? 'sequential', nsamples, seqlen, batchSize: this.batch, threads: this.threads,
      seconds: { prefix: 0, build: 0, statistics: 0, prune: 0, output: 0, total: 0 },
      blocks: Array.from({ length: this.plan.nBlocks }, (_, block) => ({ block, statistics: 0, prune: 0, output: 0 })),
      peakRssBytes: 0,
    };
  }

  private sessionOptions(): ort.InferenceSession.SessionOptions {
    return {
      intraOpNumThreads: this.threads, interOpNumThreads: 1, executionMode: 'sequential',
      graphOptimizationLevel: 'all', logSeverityLevel: 3,
      // Each new session's arena is filled with fresh pages on its first runs (≈ 1 CPU s per bench-12l block at
      // batch 8 on the test machine); the memory-pattern planner adds a second such run. Without it only the first
      // run of a block session pays; later runs are ≈ 10× cheaper.
      enableMemPattern: false,
    };
  }

  async session(spec: SubgraphSpec, external?: ExternalWeights): Promise<ort.InferenceSession> {
    const t = now();
    try {
      if (external) return await ort.InferenceSession.create(external.bytes, { ...this.sessionOptions(), externalData: external.files } as ort.InferenceSession.SessionOptions);
      return await ort.InferenceSession.create(spec.bytes, this.sessionOptions());
    } catch (e) {
      throw new DsaPruneError(`calibration: onnxruntime rejected a block sub-graph: ${(e as Error).message}`, {
        hint: 'this graph layout is not supported by the calibration engine yet (see docs/calibration.md)', cause: e,
      });
    } finally {
      this.report.seconds.build += now() - t;
    }
  }

  rows(i: number): number {
    return Math.min(this.batch, this.opts.nsamples - i * this.batch);
  }

  /** Feeds for the original graph inputs a sub-graph reads (ids, mask, positions, empty past KV). */
  graphFeeds(session: ort.InferenceSession, spec: SubgraphSpec, i: number): Record<string, ort.Tensor> {
    if (spec.graphInputs.length === 0) return {};
    const rows = this.rows(i);
    const { seqlen } = this.opts;
    // buildFeeds looks inputs up by their names in the model; a canonical sub-graph calls them dsa_t<k>.
    const original = new Map(spec.graphInputs.map((t) => [spec.rename.get(t) ?? t, t]));
    const view: DecoderSession = {
      inputNames: spec.graphInputs, outputNames: [], run: session.run.bind(session),
      inputMetadata: (session as unknown as DecoderSession).inputMetadata?.map((m) => ({ ...m, name: original.get(m.name) ?? m.name })),
    };
    const ids = this.windows.subarray(i * this.batch * seqlen, (i * this.batch + rows) * seqlen);
    const feeds = buildFeeds(view, ids, rows, seqlen, { config: this.pm.config });
    if (spec.rename.size === 0) return feeds;
    const out: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) out[spec.rename.get(k) ?? k] = v;
    return out;
  }

  /** The arrays behind the weight feeds of a pass (readInitializer results, float16 conversions), by feeds object. */
  private readonly feedArrays = new WeakMap<object, { reads: Float32Array[]; own: ArrayBuffer[] }>();

  weightFeeds(spec: SubgraphSpec): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    const arrays = { reads: [] as Float32Array[], own: [] as ArrayBuffer[] };
    for (const w of spec.weightInputs) {
      const v = this.pm.readInitializer(w.name);
      arrays.reads.push(v);
      let t: ort.Tensor;
      if (w.fp16) {
        const h = float32ToFp16(v);
        arrays.own.push(h.buffer as ArrayBuffer);
        t = new ort.Tensor('float16', h, w.dims);
      } else {
        t = new ort.Tensor('float32', v, w.dims);
      }
      feeds[spec.rename.get(w.name) ?? w.name] = t;
    }
    this.feedArrays.set(feeds, arrays);
    return feeds;
  }

  /**
   * Free the arrays behind `feeds` (weightFeeds) once the pass no longer runs with them: now, not at the next GC. The
   * prefix's embedding table (108 MiB at SmolLM2-135M) left as garbage was resident while the first block session
   * was created and ran, the peak of the prune (docs/scale.md). The feeds are unusable afterwards.
   */
  async releaseFeeds(feeds: Record<string, ort.Tensor>): Promise<void> {
    const arrays = this.feedArrays.get(feeds);
    if (!arrays) return;
    this.feedArrays.delete(feeds);
    await releaseBuffers(arrays.own);
    await this.pm.releaseReads?.(arrays.reads);
  }

  async runPrefix(): Promise<void> {
    const t = now();
    const spec = buildPrefix(this.plan);
    const s = await this.session(spec);
    const weights = this.weightFeeds(spec);
    try {
      for (let i = 0; i < this.nBatches; i++) {
        checkAbort(this.opts.signal);
        const out = await s.run({ ...weights, ...this.graphFeeds(s, spec, i) });
        const store: Store = new Map();
        for (const name of spec.storeOutputs) store.set(name, out[name]!);
        this.stores.push(store);
        if (this.opts.needs.cross) this.refStores.push(new Map(store));
      }
    } finally {
      await s.release();
      await this.releaseFeeds(weights);
    }
    this.report.seconds.prefix += now() - t;
    this.progress('prefix', undefined);
  }

  storeTypes(): Map<string, number> {
    const m = new Map<string, number>();
    for (const [k, v] of this.stores[0] ?? []) m.set(k, ORT_TO_ONNX[v.type] ?? DataType.FLOAT);
    return m;
  }

  /**
   * Σ and Σ² of the hidden state entering block b (float64): the largest float32 tensor handed to the block (others
   * are rotary tables and the like); skipped when two tie (a residual handed over in two parts).
   */
  hiddenSums(b: number): void {
    const first = this.stores[0];
    if (!first) return;
    const sized = this.plan.hiddenIn[b]!
      .map((n) => ({ n, size: first.get(n)?.type === 'float32' ? first.get(n)!.data.length : 0 }))
      .sort((x, y) => y.size - x.size);
    if (sized.length === 0 || sized[0]!.size === 0 || (sized.length > 1 && sized[1]!.size === sized[0]!.size)) return;
    const name = sized[0]!.n;
    let s = 0;
    let s2 = 0;
    for (const store of this.stores) {
      const t = store.get(name);
      if (!t || t.type !== 'float32') return;
      const d = t.data as Float32Array;
      for (let i = 0; i < d.length; i++) {
        const x = d[i]!;
        s += x;
        s2 += x * x;
      }
    }
    this.report.blocks[b]!.inputSum = s;
    this.report.blocks[b]!.inputSumSq = s2;
  }

  private units = 0;
  private totalUnits = 1;
  setTotalUnits(n: number): void {
    this.totalUnits = n;
  }
  progress(phase: string, block: number | undefined): void {
    this.units++;
    this.opts.onProgress?.({ phase, block, fraction: Math.min(1, this.units / this.totalUnits) });
  }

  /** Open sessions by graph kind: at most one per kind (sequential split: a statistics and an outputs session). */
  private readonly shared = new Map<GraphKind, SharedSession>();
  /** Block sessions created by kind (for the report and the tests). */
  readonly sessionsCreated: Record<GraphKind, number> = { statistics: 0, output: 0, combined: 0, gated: 0 };

  /**
   * The sub-graph session of block b for one kind of pass (onnxruntime runs every node of a session's graph whatever
   * is fetched, so each kind holds only what its passes need): `gated` (default: the statistics in the then branch of
   * an If, the block's tail in its else branch; serves both sequential passes), `statistics` / `output` (split), or
   * `combined` (one-shot). With weights as inputs the sub-graph is canonical, so consecutive structurally identical
   * blocks reuse one session per kind: a new session's first run costs ≈ 1 CPU s of arena warm-up on bench-12l, paid
   * once per kind instead of once per block; a block that differs gets its own session of that kind (the previous
   * one is released first). With blockWeights 'initializers' every call builds a session holding the current weights,
   * owned by the pass that uses it (blockPass releases it).
   */
  async openBlock(b: number, kind: GraphKind, gram: boolean, expose = false): Promise<OpenBlock> {
    const stats = kind !== 'output';
    const outputs = kind !== 'statistics' && blockOutputs(this.plan, b).length > 0;
    const sum = stats && this.opts.needs.sum === true;
    gram = stats && gram;
    const spec = buildBlock(this.plan, b, { stats, gram, sum, outputs, canonical: true, gate: kind === 'gated', expose: stats && expose }, this.storeTypes());
    if (this.opts.blockWeights === 'initializers') {
      // A session of its own with the weights as they are now, released after the pass (blockPass).
      await this.release(kind);
      const external = this.externalWeights(spec);
      const session = await this.session(spec, external);
      this.sessionsCreated[kind]++;
      // onnxruntime copies external data held in memory into the session (measured: +1.13 × the bytes), so the
      // buffers of `external` are not needed after this.
      return { kind, spec, session, gram, sum, owned: true };
    }
    const prev = this.shared.get(kind);
    if (prev && sameBytes(prev.bytes, spec.bytes)) return { kind, spec, session: prev.session, gram, sum };
    await this.release(kind);
    const session = await this.session(spec);
    this.sessionsCreated[kind]++;
    this.shared.set(kind, { bytes: spec.bytes, session });
    return { kind, spec, session, gram, sum };
  }

  /** The converted graph of the last structure seen (weights as external initializers), by the spec's bytes. */
  private externalGraph?: { key: Uint8Array; bytes: Uint8Array };

  /**
   * `spec` with its weight inputs turned into initializers whose data onnxruntime takes from memory (external data
   * files `dsa_w<k>`, one per weight), and those files: the current values, float16 weights as float16. The graph
   * depends on the structure only, so it is converted once for a run of identical blocks.
   */
  externalWeights(spec: SubgraphSpec): ExternalWeights {
    const files = spec.weightInputs.map((w, k) => {
      const v = this.pm.readInitializer(w.name);
      const data = w.fp16 ? float32ToFp16(v) : v;
      return { path: `dsa_w${k}`, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    });
    if (!this.externalGraph || !sameBytes(this.externalGraph.key, spec.bytes)) {
      const m = decodeModel(spec.bytes, 'block sub-graph');
      const weights = new Map(spec.weightInputs.map((w, k) => [spec.rename.get(w.name) ?? w.name, { w, k }]));
      m.graph.input = m.graph.input.filter((i) => !weights.has(i.name ?? ''));
      for (const [name, { w, k }] of weights) {
        const t = createTensor({ name, dims: w.dims, data_type: w.fp16 ? DataType.FLOAT16 : DataType.FLOAT });
        pointAtExternal(t, `dsa_w${k}`, 0, files[k]!.data.byteLength);
        m.graph.initializer.push(t);
      }
      this.externalGraph = { key: spec.bytes, bytes: encodeModel(m) };
    }
    return { bytes: this.externalGraph.bytes, files };
  }

  private async release(kind: GraphKind): Promise<void> {
    const s = this.shared.get(kind);
    this.shared.delete(kind);
    if (s) await s.session.release();
  }

  async releaseShared(): Promise<void> {
    for (const kind of [...this.shared.keys()]) await this.release(kind);
  }

  /**
   * One pass of block b over every batch: statistics (when fetched) accumulated into float64 arrays, store outputs
   * (when fetched) written back. Returns the stats per distinct input (in plan.statsInputs[b] order).
   */
  async blockPass(b: number, open: OpenBlock, fetch: { stats: boolean; outputs: boolean }, phase: 'statistics' | 'output'): Promise<InputStats[]> {
    const { spec, session: s } = open;
    // The last block computes its outputs only to share the other blocks' session; nothing reads them (but the head).
    const outputs = fetch.outputs && (b < this.plan.nBlocks - 1 || this.opts.head !== undefined) && spec.storeOutputs.length > 0;
    if (fetch.stats && open.kind === 'output') throw new DsaPruneError('calibration: internal error: statistics fetched from an outputs-only block graph');
    const gram = fetch.stats && open.gram;
    const sum = fetch.stats && open.sum;
    if (!fetch.stats && !outputs) return [];
    const t = now();
    const sIn = this.plan.statsInputs[b]!;
    const tokens = this.opts.nsamples * this.opts.seqlen;
    const acc: InputStats[] = fetch.stats
      ? sIn.map((x) => ({
        sq: new Float64Array(x.dIn),
        gram: gram ? new Float64Array(x.dIn * x.dIn) : undefined,
        ...(sum ? { sum: new Float64Array(x.dIn) } : {}),
        nsamples: this.opts.nsamples,
        tokens,
      }))
      : [];
    const name = (t: string): string => spec.rename.get(t) ?? t;
    const fetches = [
      ...(outputs ? spec.storeOutputs : []),
      ...(fetch.stats ? sIn.flatMap((x) => [x.sqOutput, ...(gram ? [x.gramOutput] : []), ...(sum ? [x.sumOutput] : [])]) : []),
    ].map(name);
    // blockWeights 'initializers': the session holds the weights and is this pass's own, released after it.
    const weights = open.owned ? {} : this.weightFeeds(spec);
    try {
      for (let i = 0; i < this.nBatches; i++) {
        checkAbort(this.opts.signal);
        const store = this.stores[i]!;
        const feeds: Record<string, ort.Tensor> = { ...weights, ...this.graphFeeds(s, spec, i) };
        for (const t of spec.storeInputs) feeds[name(t)] = store.get(t)!;
        if (spec.gateInput) feeds[name(spec.gateInput)] = new ort.Tensor('bool', new Uint8Array([fetch.stats ? 1 : 0]), []);
        const out = await s.run(feeds, fetches);
        if (fetch.stats) {
          for (let k = 0; k < sIn.length; k++) {
            addInto(acc[k]!.sq, out[name(sIn[k]!.sqOutput)]!.data as Float32Array);
            if (gram) addInto(acc[k]!.gram!, out[name(sIn[k]!.gramOutput)]!.data as Float32Array);
            if (sum) addInto(acc[k]!.sum!, out[name(sIn[k]!.sumOutput)]!.data as Float32Array);
          }
        }
        if (outputs) {
          for (const t of spec.storeOutputs) store.set(t, out[name(t)]!);
          this.opts.onCarried?.(b, i, Object.fromEntries(spec.storeOutputs.map((t) => [t, out[name(t)]!])));
          // Free what no later block reads.
          for (const t of spec.storeInputs) if ((this.plan.lastReader.get(t) ?? -1) <= b) store.delete(t);
        }
        this.progress(phase, b);
      }
    } finally {
      if (open.owned) await s.release();
      await this.releaseFeeds(weights);
    }
    const dt = now() - t;
    if (phase === 'statistics') {
      this.report.seconds.statistics += dt;
      this.report.blocks[b]!.statistics += dt;
    } else {
      this.report.seconds.output += dt;
      this.report.blocks[b]!.output += dt;
    }
    this.sampleMemory();
    return acc;
  }

  /** Cross-Gram sessions by width: Gemm(Reshape(a, [-1, k]), Reshape(b, [-1, k]), transA) = aᵀb, [k × k]. */
  private readonly crossSessions = new Map<number, ort.InferenceSession>();

  private async crossSession(k: number): Promise<ort.InferenceSession> {
    const have = this.crossSessions.get(k);
    if (have) return have;
    const shape = createTensor({ name: 'shape', dims: [2], data_type: DataType.INT64, raw_data: new Uint8Array(BigInt64Array.from([-1n, BigInt(k)]).buffer) });
    const io = (name: string) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT } } });
    const bytes = encodeModel({
      ir_version: 8, opset_import: [{ domain: '', version: 17 }], producer_name: 'dsa-prune calibration',
      graph: {
        name: 'cross_gram', initializer: [shape], input: [io('a'), io('b')], output: [io('c')], value_info: [],
        node: [
          createNode({ op_type: 'Reshape', name: 'ra', input: ['a', 'shape'], output: ['a2'] }),
          createNode({ op_type: 'Reshape', name: 'rb', input: ['b', 'shape'], output: ['b2'] }),
          createNode({ op_type: 'Gemm', name: 'gemm', input: ['a2', 'b2'], output: ['c'], attribute: [{ name: 'transA', type: 2, i: 1 }] }),
        ],
      },
    } as ModelProto);
    const s = await this.session({ bytes, storeInputs: [], graphInputs: [], weightInputs: [], storeOutputs: [], rename: new Map() });
    this.crossSessions.set(k, s);
    return s;
  }

  /** acc += x̃ᵀx over one batch (x̃ from the reference stream). */
  private async addCross(acc: Float64Array, k: number, ref: ort.Tensor, cur: ort.Tensor): Promise<void> {
    const s = await this.crossSession(k);
    const out = await s.run({ a: ref, b: cur });
    addInto(acc, out.c!.data as Float32Array);
  }

  async releaseCross(): Promise<void> {
    for (const s of this.crossSessions.values()) await s.release();
    this.crossSessions.clear();
  }

  /**
   * needs.cross, sequential: the statistics pass of block b on the current stream (statistics + X) and on the
   * reference stream (X̃, and the block's outputs with its weights as they are now, i.e. before onBlock(b) changes
   * them), with Σ x̃ᵀx per distinct input. `open` is a gated graph built with `expose`.
   */
  async dualStatsPass(b: number, open: OpenBlock): Promise<InputStats[]> {
    const { spec, session: s } = open;
    const t = now();
    const sIn = this.plan.statsInputs[b]!;
    const tokens = this.opts.nsamples * this.opts.seqlen;
    const gram = open.gram;
    const acc: InputStats[] = sIn.map((x) => ({
      sq: new Float64Array(x.dIn), gram: gram ? new Float64Array(x.dIn * x.dIn) : undefined, cross: new Float64Array(x.dIn * x.dIn),
      ...(open.sum ? { sum: new Float64Array(x.dIn) } : {}), nsamples: this.opts.nsamples, tokens,
    }));
    const name = (t: string): string => spec.rename.get(t) ?? t;
    const outputs = (b < this.plan.nBlocks - 1 || this.opts.head !== undefined) && spec.storeOutputs.length > 0;
    const statsFetch = sIn.flatMap((x) => [x.sqOutput, ...(gram ? [x.gramOutput] : []), ...(open.sum ? [x.sumOutput] : []), x.exposeOutput]).map(name);
    const refFetch = [...(outputs ? spec.storeOutputs : []), ...sIn.map((x) => x.exposeOutput)].map(name);
    const weights = this.weightFeeds(spec);
    for (let i = 0; i < this.nBatches; i++) {
      checkAbort(this.opts.signal);
      const run = async (store: Store, stats: boolean, fetches: string[]) => {
        const feeds: Record<string, ort.Tensor> = { ...weights, ...this.graphFeeds(s, spec, i) };
        for (const x of spec.storeInputs) feeds[name(x)] = store.get(x)!;
        if (spec.gateInput) feeds[name(spec.gateInput)] = new ort.Tensor('bool', new Uint8Array([stats ? 1 : 0]), []);
        return s.run(feeds, fetches);
      };
      const cur = await run(this.stores[i]!, true, statsFetch);
      const ref = await run(this.refStores[i]!, false, refFetch);
      for (let k = 0; k < sIn.length; k++) {
        const x = sIn[k]!;
        addInto(acc[k]!.sq, cur[name(x.sqOutput)]!.data as Float32Array);
        if (gram) addInto(acc[k]!.gram!, cur[name(x.gramOutput)]!.data as Float32Array);
        if (open.sum) addInto(acc[k]!.sum!, cur[name(x.sumOutput)]!.data as Float32Array);
        await this.addCross(acc[k]!.cross!, x.dIn, ref[name(x.exposeOutput)]!, cur[name(x.exposeOutput)]!);
      }
      if (outputs) {
        const store = this.refStores[i]!;
        for (const x of spec.storeOutputs) store.set(x, ref[name(x)]!);
        for (const x of spec.storeInputs) if ((this.plan.lastReader.get(x) ?? -1) <= b) store.delete(x);
      }
      this.progress('statistics', b);
    }
    await this.releaseFeeds(weights);
    const dt = now() - t;
    this.report.seconds.statistics += dt;
    this.report.blocks[b]!.statistics += dt;
    this.sampleMemory();
    return acc;
  }

  /** The head's input statistics (options.head), from the stores the last block's output pass filled. */
  async headPass(head: StatsInput, gram: boolean, cross: boolean): Promise<InputStats> {
    const t = now();
    const spec = buildHead(this.plan, head, { gram, expose: cross }, this.storeTypes());
    const s = await this.session(spec);
    const acc: InputStats = {
      sq: new Float64Array(head.dIn), gram: gram ? new Float64Array(head.dIn * head.dIn) : undefined,
      ...(cross ? { cross: new Float64Array(head.dIn * head.dIn) } : {}), nsamples: this.opts.nsamples, tokens: this.opts.nsamples * this.opts.seqlen,
    };
    try {
      const fetches = [head.sqOutput, ...(gram ? [head.gramOutput] : []), ...(cross ? [head.exposeOutput] : [])];
      for (let i = 0; i < this.nBatches; i++) {
        checkAbort(this.opts.signal);
        const run = (store: Store, f: string[]) => {
          const feeds: Record<string, ort.Tensor> = this.graphFeeds(s, spec, i);
          for (const x of spec.storeInputs) feeds[x] = store.get(x)!;
          return s.run(feeds, f);
        };
        const cur = await run(this.stores[i]!, fetches);
        addInto(acc.sq, cur[head.sqOutput]!.data as Float32Array);
        if (gram) addInto(acc.gram!, cur[head.gramOutput]!.data as Float32Array);
        if (cross) {
          const ref = await run(this.refStores[i]!, [head.exposeOutput]);
          await this.addCross(acc.cross!, head.dIn, ref[head.exposeOutput]!, cur[head.exposeOutput]!);
        }
        this.progress('statistics', this.plan.nBlocks);
      }
    } finally {
      await s.release();
    }
    this.report.seconds.statistics += now() - t;
    this.sampleMemory();
    return acc;
  }

  /** Stats of block b keyed by linear name (linears sharing an input share one InputStats object). */
  byLinear(b: number, acc: InputStats[]): Map<string, InputStats> {
    const m = new Map<string, InputStats>();
    const sIn = this.plan.statsInputs[b]!;
    for (let k = 0; k < sIn.length; k++) for (const l of sIn[k]!.linears) m.set(l, acc[k]!);
    return m;
  }

  sampleMemory(): void {
    this.report.peakRssBytes = Math.max(this.report.peakRssBytes, process.resourceUsage().maxRSS * 1024);
  }

  async finish(): Promise<CalibrationReport> {
    await this.releaseShared();
    const c = this.sessionsCreated;
    this.report.blockSessions = c.statistics + c.output + c.combined + c.gated;
    this.report.blockSessionsByKind = { ...c };
    await this.releaseCross();
    this.stores.length = 0;
    this.refStores.length = 0;
    this.sampleMemory();
    this.report.seconds.total = now() - this.t0;
    return this.report;
  }
}

function addInto(acc: Float64Array, v: Float32Array): void {
  if (v.length !== acc.length) throw new DsaPruneError(`calibration: statistics output has ${v.length} entries, expected ${acc.length}`);
  for (let j = 0; j < acc.length; j++) acc[j] += v[j]!;
}

/**
 * Run calibration over `windows` (nsamples × seqlen token ids, row-major) and call `onBlock(b, stats)` for each block
 * in order — between the statistics pass and the output pass of block b in sequential mode, after all statistics in
 * one-shot mode. Linears reading the same input (q/k/v, gate/up) share one InputStats object: treat it as read-only.
 */
export async function runCalibration(
  pm: CalibrationModel,
  windows: Int32Array,
  opts: CalibrationOptions,
  onBlock?: (block: number, stats: Map<string, InputStats>) => Promise<void> | void,
): Promise<CalibrationReport> {
  const cross = opts.needs.cross === true;
  if (cross && (opts.mode ?? 'sequential') === 'oneshot') {
    throw new DsaPruneError('calibration: needs.cross needs sequential mode (in one-shot mode both streams are the same model)', {
      hint: "use mode 'sequential', or leave cross out (one-shot: Σ x̃ᵀx = XᵀX)",
    });
  }
  const r = new Runner(pm, windows, opts);
  const L = r.plan.nBlocks;
  const gram = opts.needs.gram;
  const head = opts.head ? headInput(r.plan, opts.head) : undefined;
  const headUnits = head ? r.nBatches : 0;
  const runHead = async (): Promise<Map<string, InputStats> | undefined> => {
    if (!head) return undefined;
    const st = await r.headPass(head, gram, cross);
    r.stores.length = 0;
    r.refStores.length = 0;
    return new Map([[opts.head!.name, st]]);
  };
  const callHead = async (st: Map<string, InputStats> | undefined): Promise<void> => {
    if (!st) return;
    checkAbort(opts.signal);
    const t = now();
    await onBlock?.(L, st);
    r.report.seconds.prune += now() - t;
  };
  if ((opts.mode ?? 'sequential') === 'oneshot') {
    r.setTotalUnits(1 + L * r.nBatches + headUnits);
    await r.runPrefix();
    const all: Map<string, InputStats>[] = [];
    try {
      for (let b = 0; b < L; b++) {
        r.hiddenSums(b);
        const open = await r.openBlock(b, 'combined', gram);
        all.push(r.byLinear(b, await r.blockPass(b, open, { stats: true, outputs: true }, 'statistics')));
      }
    } finally {
      await r.releaseShared();
    }
    const headStats = await runHead();
    r.stores.length = 0;
    for (let b = 0; b < L; b++) {
      checkAbort(opts.signal);
      const t = now();
      await onBlock?.(b, all[b]!);
      all[b] = new Map();
      r.report.blocks[b]!.prune = now() - t;
      r.report.seconds.prune += now() - t;
    }
    await callHead(headStats);
    return r.finish();
  }
  const outputBlocks = head ? L : L - 1;
  r.setTotalUnits(1 + L * r.nBatches + outputBlocks * r.nBatches + headUnits);
  // cross: one gated graph that also returns X serves the statistics pass of both streams. Weights as initializers: a
  // session per pass, so each pass gets the graph with only what it needs.
  const graphs = cross ? 'gated' : opts.blockWeights === 'initializers' ? 'split' : opts.blockGraphs ?? 'gated';
  await r.runPrefix();
  try {
    try {
      for (let b = 0; b < L; b++) {
        r.hiddenSums(b);
        const open = await r.openBlock(b, graphs === 'split' ? 'statistics' : graphs, gram, cross);
        const acc = cross ? await r.dualStatsPass(b, open) : await r.blockPass(b, open, { stats: true, outputs: false }, 'statistics');
        const stats = r.byLinear(b, acc);
        checkAbort(opts.signal);
        const t = now();
        await onBlock?.(b, stats);
        r.report.blocks[b]!.prune = now() - t;
        r.report.seconds.prune += now() - t;
        // Weights are read again here, so what onBlock wrote is what the output pass uses.
        if (b < outputBlocks) await r.blockPass(b, graphs === 'split' ? await r.openBlock(b, 'output', false) : open, { stats: false, outputs: true }, 'output');
      }
    } finally {
      await r.releaseShared();
    }
    await callHead(await runHead());
  } finally {
    await r.releaseCross();
  }
  return r.finish();
}

/** One-shot statistics of every block linear from the dense model (keyed by linear name). */
export async function denseStatistics(
  pm: CalibrationModel,
  windows: Int32Array,
  opts: Omit<CalibrationOptions, 'mode'>,
): Promise<Map<string, InputStats>> {
  const out = new Map<string, InputStats>();
  await runCalibration(pm, windows, { ...opts, mode: 'oneshot' }, (_b, stats) => {
    for (const [k, v] of stats) out.set(k, v);
  });
  return out;
}
