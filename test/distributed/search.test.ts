/**
 * Acceptance on loopback with the real model: a search whose candidates are evaluated by 3 `dsa-prune worker`
 * processes (stories260k, fast fitness) finds the same best function — and the same fitness for every evaluation — as
 * the same search run locally with the same seed; every worker did some jobs; killing one worker mid-run changes
 * nothing in the result.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelDir, type PrunableModel } from '../../src/model/index.js';
import { createFitness, idsSha256, type Fitness } from '../../src/search/fitness.js';
import { takeWindows, tokenizeText } from '../../src/data/text.js';
import { dsaSpace } from '../../src/search/space.js';
import { allocationFromScores } from '../../src/allocators/index.js';
import { functionEvaluator, runSearch, type SearchOptions, type SearchResult } from '../../src/search/evolution.js';
import type { SearchSpec } from '../../src/search/types.js';
import { createRedisEvaluator } from '../../src/search/distributed/coordinator.js';
import { redisSkipReason, startRedis, type TestRedis } from './redis-server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const shared = path.resolve(repoRoot, '../shared');
const modelDir = path.join(repoRoot, 'models/stories260k');
const textDir = path.join(shared, 'data/text');
const skip = redisSkipReason() ?? (existsSync(textDir) ? undefined : `${textDir} is absent (the shared data folder next to the repo)`);
if (skip) console.warn(`[distributed] skipped: ${skip}`);

interface WorkerProc {
  child: ChildProcess;
  id: string;
  starts: number;
  log: string;
}

function spawnWorker(url: string, onStart?: (w: WorkerProc) => void): Promise<WorkerProc> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--redis', url, '--model', modelDir, '--threads', '1', '--lock-seconds', '3', '--verbose'],
    { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const w: WorkerProc = { child, id: '', starts: 0, log: '' };
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      w.log += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /worker (\S+) serving/.exec(line);
        if (m) {
          w.id = m[1];
          resolve(w);
        }
        if (/ start /.test(line)) {
          w.starts++;
          onStart?.(w);
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`worker exited with ${code} before serving:\n${w.log}`)));
  });
}

describe.skipIf(skip !== undefined)('distributed search on loopback (stories260k, 3 worker processes)', () => {
  let redis: TestRedis;
  let pm: PrunableModel;
  let fitness: Fitness;
  let spec: SearchSpec;
  let data: { calibrationIds: Int32Array; searchIds: Int32Array };
  let local: SearchResult;
  const workers: WorkerProc[] = [];
  const options: SearchOptions = { evaluations: 18, seed: 5, population: 6, elite: 2 };
  const space = () =>
    dsaSpace({
      blocks: fitness.denseBlocks,
      allocate: (scores, lambda) => allocationFromScores(scores, fitness.denseBlocks.map((b) => b.params), spec.sparsity, lambda, spec.budget),
    });

  beforeAll(async () => {
    redis = await startRedis();
    const loaded = await loadModelDir(modelDir, { threads: 1 });
    pm = loaded.prunable;
    const text = (f: string) => readFileSync(path.join(textDir, f), 'utf8').slice(0, 30_000);
    const calibrationIds = takeWindows(tokenizeText(loaded.tokenizer, text('tinystories_calibration.txt')), 64, 8);
    const searchIds = takeWindows(tokenizeText(loaded.tokenizer, text('tinystories_eval.txt')), 64, 4);
    data = { calibrationIds, searchIds };
    spec = {
      method: 'wanda', sparsity: 0.5, budget: 'exact', mode: 'fast',
      calibration: { nsamples: 8, seqlen: 64, sha256: idsSha256(calibrationIds) },
      search: { windows: 4, seqlen: 64, sha256: idsSha256(searchIds) },
      seed: 5, modelHash: pm.modelHash(),
    };
    // Workers start while the local reference search runs.
    const starting = Promise.all([0, 1, 2].map(() => spawnWorker(redis.url)));
    fitness = await createFitness(pm, spec, data, { threads: 1 });
    local = await runSearch(space(), functionEvaluator((c) => fitness.evaluate(c)), options);
    workers.push(...(await starting));
  }, 400_000); // ~20 s on a quiet 2-core machine; generous for a loaded one

  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await fitness?.close();
    await redis?.stop();
  });

  const same = (a: SearchResult, b: SearchResult): void => {
    expect(b.best.expression).toBe(a.best.expression);
    expect(b.best.lambda).toBe(a.best.lambda);
    expect(b.best.fitness).toBe(a.best.fitness);
    expect(b.history.map((h) => [h.expression, h.lambda, h.fitness])).toEqual(a.history.map((h) => [h.expression, h.lambda, h.fitness]));
  };

  it('gives the same best function as the local search with the same seed; every worker did jobs', async () => {
    const ev = await createRedisEvaluator({ redis: redis.url, spec, ...data, runId: 'acceptance' });
    try {
      expect(await ev.shareDense({ blocks: fitness.denseBlocks, stats: fitness.denseStats })).toBe(true);
      const dist = await runSearch(space(), ev, options);
      same(local, dist);
      expect(ev.stats.collected).toBe(local.evaluations);
      for (const w of workers) expect(ev.stats.byWorker[w.id] ?? 0, `jobs of worker ${w.id}`).toBeGreaterThan(0);
      // The workers used the coordinator's dense statistics instead of running their own dense pass.
      for (const w of workers) expect(w.log).toMatch(/dense statistics fetched from Redis/);
    } finally {
      await ev.close();
    }
  }, 180_000);

  it('gives the same result when a worker is killed mid-run', async () => {
    let killed: WorkerProc | undefined;
    // Kill the first worker that starts its second job of this run (it is then in the middle of that job).
    const base = workers.map((w) => w.starts);
    const timer = setInterval(() => {
      if (killed) return;
      const i = workers.findIndex((w, j) => w.starts - base[j] >= 2);
      if (i >= 0) {
        killed = workers[i];
        killed.child.kill('SIGKILL');
      }
    }, 5);
    const ev = await createRedisEvaluator({ redis: redis.url, spec, ...data, runId: 'with-kill' });
    try {
      const dist = await runSearch(space(), ev, options);
      same(local, dist);
      expect(killed).toBeDefined();
    } finally {
      clearInterval(timer);
      await ev.close();
    }
  }, 180_000);
});
