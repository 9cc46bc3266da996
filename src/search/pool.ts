/**
 * Local parallel evaluation: worker threads, each loading the model from its folder into its own onnxruntime session,
 * all sharing the main thread's dense statistics through SharedArrayBuffers. Candidates of a batch go to whichever
 * worker is free; results come back in batch order, so the search does not depend on the scheduling.
 *
 * Choosing workers × threads: on a machine with C cores the default is C workers × 1 intra-op thread when there are
 * at least 2 cores (whole candidates in parallel scale better than one candidate's matrix products; see docs/search.md
 * for the measured settings), else 1 × 1.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DsaPruneError, abortedError, type DsaPruneErrorCode } from '../errors.js';
import { resolvePlugins } from '../methods/plugins.js';
import type { InputStats } from '../types.js';
import { candidateAllocation, type DenseData } from './fitness.js';
import type { Candidate, Evaluation, Evaluator, SearchSpec } from './types.js';
import type { LevelDbDescriptor } from './level-db.js';

/** An allocation a levels search evaluates (per-linear sparsities resolved by resolveLinearSparsity). */
export interface LinearAllocation {
  blockSparsity: number[];
  linearSparsity?: Record<string, number>;
}

/** What a worker thread receives at start. */
export interface WorkerInit {
  index: number;
  modelDir: string;
  dtype?: string;
  threads: number;
  batchSize?: number;
  spec: SearchSpec;
  calibrationIds: Int32Array;
  searchIds: Int32Array;
  dense: PackedDense;
  /** Plugin modules (absolute paths) the thread imports before anything else, so user methods are registered there. */
  plugins?: string[];
  /** SparseGPT level database of a levels search (memory entries share the main thread's buffers). */
  levelDb?: LevelDbDescriptor;
}

/** Dense statistics with every array in shared memory. */
export interface PackedDense {
  blocks: { index: number; params: number; linears: DenseData['blocks'][number]['linears']; z: Float32Array }[];
  stats: [string, InputStats][];
}

function shared<T extends Float32Array | Float64Array>(a: T): T {
  if (a.buffer instanceof SharedArrayBuffer) return a;
  const Ctor = a.constructor as { new (b: SharedArrayBuffer): T; BYTES_PER_ELEMENT: number };
  const out = new Ctor(new SharedArrayBuffer(a.length * Ctor.BYTES_PER_ELEMENT));
  out.set(a as never);
  return out;
}

/** Move the dense statistics into shared memory (once; the copies are what every worker reads). */
export function packDense(d: DenseData): PackedDense {
  return {
    blocks: d.blocks.map((b) => ({ index: b.index, params: b.params, linears: b.linears, z: shared(b.z) })),
    stats: [...d.stats].map(([k, s]) => [k, { ...s, sq: shared(s.sq), ...(s.gram ? { gram: shared(s.gram) } : {}) }]),
  };
}

export function unpackDense(p: PackedDense): DenseData {
  return { blocks: p.blocks, stats: new Map(p.stats) };
}

/** Default workers × intra-op threads for `cores` cores. */
export function defaultParallelism(cores = os.availableParallelism?.() ?? os.cpus().length): { workers: number; threads: number } {
  return cores >= 2 ? { workers: cores, threads: 1 } : { workers: 1, threads: 1 };
}

/** Options of createPool(). */
export interface PoolOptions {
  /** Model folder each worker loads (the same files the main thread loaded: the model hash is checked). */
  modelDir: string;
  dtype?: string;
  spec: SearchSpec;
  calibrationIds: Int32Array;
  searchIds: Int32Array;
  /** Dense statistics computed once by the main thread. */
  dense: DenseData;
  /** Worker threads (default: defaultParallelism()). */
  workers?: number;
  /** onnxruntime intra-op threads per worker (default: defaultParallelism()). */
  threads?: number;
  /** Sequences per onnxruntime run in the perplexity. */
  batchSize?: number;
  /**
   * Modules that register user methods (registerMethod), imported by every worker thread: a method registered only
   * in this thread is unknown to the workers. Paths (relative to the working directory) of ES modules.
   */
  plugins?: string[];
  /** SparseGPT level database (levels search): workers assemble candidates from it. */
  levelDb?: LevelDbDescriptor;
}

/** Start one worker thread: the built .js next to this module, or (running from source) the .ts through tsx. */
function spawnWorker(init: WorkerInit): Worker {
  const self = fileURLToPath(import.meta.url);
  if (self.endsWith('.ts')) {
    // From source (tsx, vitest): register tsx inside the thread, then load the TypeScript worker module.
    const url = new URL('./worker-thread.ts', import.meta.url).href;
    const code = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url)}); })`;
    return new Worker(code, { eval: true, workerData: init });
  }
  // Built: tsup emits dist/search/worker-thread.js; this module is either dist/search/*.js or a chunk in dist/.
  for (const rel of ['./worker-thread.js', './search/worker-thread.js']) {
    const u = new URL(rel, import.meta.url);
    if (existsSync(fileURLToPath(u))) return new Worker(u, { workerData: init });
  }
  throw new DsaPruneError('search worker script not found next to the package files', { hint: 'reinstall dsa-prune, or run with --workers 1' });
}

interface Slot {
  worker: Worker;
  busy: boolean;
  ready: Promise<void>;
}

/** A pool of evaluation worker threads implementing Evaluator. */
export async function createPool(o: PoolOptions): Promise<Evaluator & { workers: number; threads: number; evaluateLinears(batch: LinearAllocation[], windows: number | readonly number[], signal?: AbortSignal): Promise<Evaluation[]> }> {
  const dflt = defaultParallelism();
  const nWorkers = o.workers ?? dflt.workers;
  const threads = o.threads ?? dflt.threads;
  if (!Number.isInteger(nWorkers) || nWorkers < 1) throw new DsaPruneError(`--workers must be a positive integer, got ${nWorkers}`);
  const plugins = resolvePlugins(o.plugins);
  const packed = packDense(o.dense);
  const pending = new Map<number, { resolve: (e: Evaluation) => void; reject: (e: Error) => void; slot: Slot }>();
  let nextId = 1;
  let failure: Error | undefined;
  const slots: Slot[] = [];
  const waiters: (() => void)[] = [];
  const wake = () => {
    const w = waiters.shift();
    if (w) w();
  };

  for (let i = 0; i < nWorkers; i++) {
    const init: WorkerInit = {
      index: i, modelDir: o.modelDir, threads, spec: o.spec, calibrationIds: o.calibrationIds, searchIds: o.searchIds, dense: packed,
      ...(o.dtype ? { dtype: o.dtype } : {}), ...(o.batchSize ? { batchSize: o.batchSize } : {}), ...(plugins.length ? { plugins } : {}),
      ...(o.levelDb ? { levelDb: o.levelDb } : {}),
    };
    const worker = spawnWorker(init);
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    const ready = new Promise<void>((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    const slot: Slot = { worker, busy: false, ready };
    worker.on('message', (m: { type: string; id?: number; evaluation?: Evaluation; message?: string; hint?: string; code?: DsaPruneErrorCode }) => {
      if (m.type === 'ready') readyResolve();
      else if (m.type === 'result') {
        const p = pending.get(m.id!);
        pending.delete(m.id!);
        slot.busy = false;
        wake();
        p?.resolve(m.evaluation!);
      } else if (m.type === 'error') {
        const err = new DsaPruneError(`search worker ${i}: ${m.message}`, { hint: m.hint, ...(m.code ? { code: m.code } : {}) });
        if (m.id === undefined) {
          failure = err;
          readyReject(err);
        } else {
          const p = pending.get(m.id);
          pending.delete(m.id);
          slot.busy = false;
          wake();
          p?.reject(err);
        }
      }
    });
    worker.on('error', (e) => {
      failure = new DsaPruneError(`search worker ${i} crashed: ${e.message}`);
      readyReject(failure);
      for (const [id, p] of pending) if (p.slot === slot) {
        pending.delete(id);
        p.reject(failure);
      }
    });
    slots.push(slot);
  }
  try {
    await Promise.all(slots.map((s) => s.ready));
  } catch (e) {
    await Promise.all(slots.map((s) => s.worker.terminate()));
    throw e;
  }

  const acquire = async (): Promise<Slot> => {
    for (;;) {
      if (failure) throw failure;
      const free = slots.find((s) => !s.busy);
      if (free) {
        free.busy = true;
        return free;
      }
      await new Promise<void>((r) => waiters.push(r));
    }
  };

  const dispatch = async (message: () => Record<string, unknown>, signal?: AbortSignal): Promise<Evaluation> => {
    const slot = await acquire();
    if (signal?.aborted) {
      slot.busy = false;
      wake();
      throw abortedError('search aborted');
    }
    const id = nextId++;
    const m = message();
    return new Promise<Evaluation>((resolve, reject) => {
      pending.set(id, { resolve, reject, slot });
      slot.worker.postMessage({ ...m, id });
    });
  };

  return {
    workers: nWorkers,
    threads,
    async evaluate(batch: Candidate[], signal?: AbortSignal): Promise<Evaluation[]> {
      // Fast mode: the allocation comes from here, where the search's validity check already scored the block
      // vectors (memoised), so the worker does not score them again (≈ a second of CPU per new candidate).
      return Promise.all(batch.map((candidate) => dispatch(() => ({
        type: 'eval', candidate,
        blockSparsity: o.spec.mode === 'fast' && o.spec.granularity !== 'linear' ? candidateAllocation(candidate, o.dense.blocks, o.spec) : undefined,
      }), signal)));
    },
    /** Levels search: each allocation on the first `windows` search windows, or on the windows listed (indices); results in batch order. */
    async evaluateLinears(batch: LinearAllocation[], windows: number | readonly number[], signal?: AbortSignal): Promise<Evaluation[]> {
      const w = typeof windows === 'number' ? { windows } : { windows: windows.length, windowIndices: Array.from(windows) };
      return Promise.all(batch.map((alloc) => dispatch(() => ({ type: 'linears', alloc, ...w }), signal)));
    },
    async close() {
      await Promise.all(slots.map((s) => s.worker.terminate()));
    },
  };
}
