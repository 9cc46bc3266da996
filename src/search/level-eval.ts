/**
 * Where the level-switch search evaluates its allocations: in this thread, on the worker-thread pool (pool.ts), or on
 * `dsa-prune worker` processes through the BullMQ queue (distributed/) — the same fast fitness (fitness.ts
 * evaluateLinears) in all three, so the same allocation gets the same number whichever evaluates it. SparseGPT
 * candidates assemble from the level database (level-db.ts) locally and on the pool; queue workers run the one-shot
 * solver per candidate (they hold no database).
 */
import type { PrunableModel } from '../model/index.js';
import type { LinearInfo } from '../types.js';
import { createFitness, type DenseData } from './fitness.js';
import { createPool, type LinearAllocation } from './pool.js';
import { createRedisEvaluator } from './distributed/coordinator.js';
import type { LevelDb } from './level-db.js';
import type { SearchSpec } from './types.js';

export interface LevelEvaluator {
  /** Where it runs, for messages: `this thread`, `2 worker threads`, `redis`. */
  readonly where: string;
  /** Allocations evaluated at once (the search checks its time limit between such chunks). */
  readonly parallel: number;
  /** Fitness of each allocation on the first `windows` search windows, or on the windows listed (indices), in batch order. */
  evaluate(batch: LinearAllocation[], windows: number | readonly number[], signal?: AbortSignal): Promise<number[]>;
  close(): Promise<void>;
}

export interface LevelEvaluatorOptions {
  pm: PrunableModel;
  spec: SearchSpec;
  /** Calibration windows (nsamples × seqlen) and search-split tokens (windows × seqlen) of the spec. */
  calibrationIds: Int32Array;
  searchIds: Int32Array;
  dense: DenseData;
  linears: LinearInfo[];
  /** onnxruntime intra-op threads (per worker). */
  threads?: number;
  /** Worker threads (> 1: the pool of pool.ts, each loading `modelDir`; results equal the serial run's). */
  workers?: number;
  /** Model folder the worker threads load (the same files as `pm`). */
  modelDir?: string;
  /** Evaluate on `dsa-prune worker` processes through this Redis (BullMQ queue) instead of locally. */
  redis?: string;
  runId?: string;
  redisPrefix?: string;
  levelDb?: LevelDb;
  onLog?: (m: string) => void;
  signal?: AbortSignal;
}

const finite = (f: number) => (Number.isFinite(f) ? f : Infinity);

export async function createLevelEvaluator(o: LevelEvaluatorOptions): Promise<LevelEvaluator> {
  if (o.redis) {
    const ev = await createRedisEvaluator({
      redis: o.redis, spec: o.spec, calibrationIds: o.calibrationIds, searchIds: o.searchIds, dense: o.dense,
      runId: o.runId, prefix: o.redisPrefix, onLog: o.onLog, signal: o.signal,
    });
    return {
      where: 'redis', parallel: Infinity,
      async evaluate(batch, windows, signal) {
        const counts = batch.map((a) => o.linears.map((l) => Math.round(a.linearSparsity![l.name] * l.dIn * l.dOut)));
        return (await ev.evaluateLinears(counts, windows, signal)).map((e) => finite(e.fitness));
      },
      close: () => ev.close(),
    };
  }
  if ((o.workers ?? 1) > 1) {
    if (!o.modelDir) throw new Error('createLevelEvaluator: worker threads need modelDir');
    const pool = await createPool({
      modelDir: o.modelDir, spec: o.spec, calibrationIds: o.calibrationIds, searchIds: o.searchIds, dense: o.dense,
      workers: o.workers, threads: o.threads ?? 1, ...(o.levelDb ? { levelDb: o.levelDb.descriptor() } : {}),
    });
    return {
      where: `${pool.workers} worker threads`, parallel: pool.workers,
      async evaluate(batch, windows, signal) {
        return (await pool.evaluateLinears(batch, windows, signal)).map((e) => finite(e.fitness));
      },
      close: () => pool.close(),
    };
  }
  const fitness = await createFitness(o.pm, o.spec, { calibrationIds: o.calibrationIds, searchIds: o.searchIds }, {
    dense: o.dense, threads: o.threads, ...(o.levelDb ? { prunedWeight: o.levelDb.lookup } : {}),
  });
  return {
    where: 'this thread', parallel: 1,
    async evaluate(batch, windows, signal) {
      const out: number[] = [];
      const w = typeof windows === 'number' ? { windows } : { windowIndices: windows };
      for (const a of batch) out.push(finite((await fitness.evaluateLinears!(a, { ...w, signal })).fitness));
      return out;
    },
    close: () => fitness.close(),
  };
}
