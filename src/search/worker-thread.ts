/**
 * A search worker thread: loads the model itself from its folder (its own onnxruntime session), builds the fitness
 * from the dense statistics the main thread shares (SharedArrayBuffers, no copy), then evaluates candidates on request.
 * Messages in: { type: 'eval', id, candidate, blockSparsity? } | { type: 'linears', id, alloc, windows, windowIndices? } (levels search) | { type: 'close' }.
 * Out: { type: 'ready' } | { type: 'result', id, evaluation } | { type: 'error', id?, message, hint?, code? }. `init.plugins` are imported
 * first (user methods).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isDsaPruneError } from '../errors.js';
import { importPlugins } from '../methods/plugins.js';
import { loadModelDir } from '../model/index.js';
import { createFitness } from './fitness.js';
import { unpackDense, type LinearAllocation, type WorkerInit } from './pool.js';
import { openLevelDb } from './level-db.js';
import type { Candidate } from './types.js';

async function main(): Promise<void> {
  const port = parentPort!;
  const init = workerData as WorkerInit;
  let fitness: Awaited<ReturnType<typeof createFitness>>;
  const failed = (e: unknown, id?: number) => ({
    type: 'error', ...(id !== undefined ? { id } : {}), message: (e as Error).message, hint: (e as { hint?: string }).hint,
    ...(isDsaPruneError(e) ? { code: e.code } : {}),
  });
  try {
    // User methods first: this thread has its own registry (src/methods/registry.ts).
    await importPlugins(init.plugins);
    const { prunable } = await loadModelDir(init.modelDir, { threads: init.threads, ...(init.dtype ? { dtype: init.dtype } : {}) });
    fitness = await createFitness(prunable, init.spec, { calibrationIds: init.calibrationIds, searchIds: init.searchIds }, {
      threads: init.threads, dense: unpackDense(init.dense), worker: `thread-${init.index}`, batchSize: init.batchSize,
      ...(init.levelDb ? { prunedWeight: openLevelDb(init.levelDb) } : {}),
    });
  } catch (e) {
    port.postMessage(failed(e));
    return;
  }
  type Message = { type: 'eval'; id: number; candidate: Candidate; blockSparsity?: number[] } | { type: 'linears'; id: number; alloc: LinearAllocation; windows: number; windowIndices?: number[] } | { type: 'close' };
  port.on('message', async (m: Message) => {
    if (m.type === 'close') {
      await fitness.close();
      port.close();
      return;
    }
    try {
      const evaluation = m.type === 'linears'
        ? await fitness.evaluateLinears!(m.alloc, { windows: m.windows, ...(m.windowIndices ? { windowIndices: m.windowIndices } : {}) })
        : await fitness.evaluate(m.candidate, undefined, m.blockSparsity);
      port.postMessage({ type: 'result', id: m.id, evaluation });
    } catch (e) {
      port.postMessage(failed(e, m.id));
    }
  });
  port.postMessage({ type: 'ready' });
}

void main();
