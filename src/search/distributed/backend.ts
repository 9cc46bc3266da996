/**
 * The real WorkerBackend: a model folder loaded with transformers.js, fitness through createFitness (src/search).
 *
 * - `fast` fitness only reads the model (each fitness has its own onnxruntime session and buffers), so all slots share
 *   one loaded model; `faithful` prunes the model in place, so each slot loads its own copy on first use.
 * - Dense statistics are computed once per calibration set and kept warm for every run and slot that uses them. They
 *   go through Redis (model hash + calibration hash): the first worker (or the coordinator) to compute them stores
 *   them, and everyone then uses the stored copy, so all workers prune from bit-identical statistics.
 */
import { loadModelDir, type PrunableModel } from '../../model/index.js';
import { computeDense, createFitness, searchLinears, type DenseData } from '../fitness.js';
import { lazyLevelDb } from '../level-db.js';
import type { SearchSpec } from '../types.js';
import { decodeDense, denseByteLength, encodeDense, MAX_SHARED_DENSE_BYTES } from './dense-codec.js';
import type { SlotFitness, WorkerBackend } from './worker.js';
import type { DenseCache } from './dense-codec.js';
import { denseKind } from './protocol.js';

/** Options of modelBackend. */
export interface ModelBackendOptions {
  /** Model folder (config.json, tokenizer, onnx/model.onnx). */
  model: string;
  /** onnxruntime intra-op threads per evaluation (default 1: fitness is bit-identical for any thread count). */
  threads?: number;
  /** ONNX variant (fp32, fp16, …) as transformers.js names it. */
  dtype?: string;
  /** Informational messages (dense statistics computed or fetched). */
  onLog?: (message: string) => void;
}

/** Load the model once and return a backend serving any run on it. */
export async function modelBackend(options: ModelBackendOptions): Promise<WorkerBackend & { prunable: PrunableModel }> {
  const log = options.onLog ?? (() => {});
  const load = async (): Promise<PrunableModel> => (await loadModelDir(options.model, { dtype: options.dtype, threads: options.threads })).prunable;
  const first = await load();
  const modelHash = first.modelHash();
  const copies = new Map<number, Promise<PrunableModel>>([[0, Promise.resolve(first)]]);
  const denseByCalibration = new Map<string, Promise<DenseData>>();

  const modelFor = (spec: SearchSpec, slot: number): Promise<PrunableModel> => {
    if (spec.mode === 'fast') return Promise.resolve(first);
    let p = copies.get(slot);
    if (!p) {
      p = load();
      copies.set(slot, p);
    }
    return p;
  };

  const denseFor = (spec: SearchSpec, calibrationIds: Int32Array, cache: DenseCache): Promise<DenseData> => {
    const kind = denseKind(spec);
    const k = `${spec.calibration.sha256}|${spec.calibration.nsamples}|${spec.calibration.seqlen}|${kind}`;
    let p = denseByCalibration.get(k);
    if (!p) {
      p = (async () => {
        const stored = await cache.get().catch(() => null);
        if (stored) {
          try {
            const d = decodeDense(stored);
            if ((kind !== 'gram' || [...d.stats.values()].every((s) => s.gram)) && (kind !== 'sum' || [...d.stats.values()].every((s) => s.sum))) {
              log(`dense statistics fetched from Redis (${(stored.byteLength / 1e6).toFixed(1)} MB)`);
              return d;
            }
          } catch (e) {
            log(`ignoring the dense statistics in Redis: ${(e as Error).message}`);
          }
        }
        const t0 = performance.now();
        const d = await computeDense(first, spec, calibrationIds, options.threads);
        log(`dense statistics computed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        if (denseByteLength(d) > MAX_SHARED_DENSE_BYTES) return d;
        await cache.put(encodeDense(d)).catch(() => {});
        // Use the stored copy (another worker may have won the race), so every worker prunes from the same bytes.
        const again = await cache.get().catch(() => null);
        return again ? decodeDense(again) : d;
      })();
      p.catch(() => denseByCalibration.delete(k));
      denseByCalibration.set(k, p);
    }
    return p;
  };

  return {
    modelHash,
    prunable: first,
    linears: searchLinears(first),
    async createFitness(spec, data, slot, cache): Promise<SlotFitness> {
      const pm = await modelFor(spec, slot);
      const dense = await denseFor(spec, data.calibrationIds, cache);
      if (spec.method !== 'sparsegpt' || spec.mode !== 'fast') return createFitness(pm, spec, data, { threads: options.threads ?? 1, dense });
      // SparseGPT levels jobs repeat (linear, level) pairs: a level database filled on demand, used once levels jobs
      // arrive (DSA candidates' sparsities rarely repeat, so they keep running the solver).
      const db = lazyLevelDb(pm, dense, { budget: spec.budget });
      let levels = false;
      const f = await createFitness(pm, spec, data, { threads: options.threads ?? 1, dense, prunedWeight: (l, sp) => (levels ? db.lookup(l, sp) : undefined) });
      return {
        evaluate: (c) => f.evaluate(c),
        evaluateLinears: (a, o) => {
          levels = true;
          return f.evaluateLinears!(a, o);
        },
        close: () => f.close(),
      };
    },
    async close() {
      denseByCalibration.clear();
    },
  };
}
