/**
 * A user method in a distributed search: `dsa-prune worker --plugin <module>` evaluates a run that searches with the
 * method the plugin registers, with the in-process fitness bit for bit; a worker started without it refuses the run
 * and says to pass --plugin (loopback Redis, stories260k, one worker process at a time).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelDir, type PrunableModel } from '../../src/model/index.js';
import { createFitness, idsSha256 } from '../../src/search/fitness.js';
import { takeWindows, tokenizeText } from '../../src/data/text.js';
import { searchSpace } from '../../src/search/space.js';
import { Rng } from '../../src/search/random.js';
import type { Candidate, SearchSpec } from '../../src/search/types.js';
import { createRedisEvaluator } from '../../src/search/distributed/coordinator.js';
import { redisSkipReason, startRedis, type TestRedis } from './redis-server.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const modelDir = path.join(repoRoot, 'models/stories260k');
const plugin = path.join(repoRoot, 'test/fixtures/plugins/abs-times-index.ts');
const skip = redisSkipReason();
if (skip) console.warn(`[distributed plugin] skipped: ${skip}`);

function spawnWorker(url: string, extra: string[]): Promise<{ child: ChildProcess; log: () => string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--redis', url, '--model', modelDir, '--threads', '1', '--lock-seconds', '3', ...extra],
    { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (/worker \S+ serving/.test(log)) resolve({ child, log: () => log });
    });
    child.once('exit', (code) => reject(new Error(`worker exited with ${code} before serving:\n${log}`)));
  });
}

describe.skipIf(skip !== undefined)('distributed search with a plugin method', () => {
  let redis: TestRedis;
  let pm: PrunableModel;
  let spec: SearchSpec;
  let data: { calibrationIds: Int32Array; searchIds: Int32Array };
  const candidates: Candidate[] = [];
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    await import(plugin); // the coordinator knows the method too (its Gram need decides the dense statistics)
    redis = await startRedis();
    const loaded = await loadModelDir(modelDir, { threads: 1 });
    pm = loaded.prunable;
    const text = readFileSync(path.join(repoRoot, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 30_000);
    const ids = tokenizeText(loaded.tokenizer, text);
    const calibrationIds = takeWindows(ids.subarray(0, 8 * 64), 64, 8);
    const searchIds = takeWindows(ids.subarray(8 * 64), 64, 4);
    data = { calibrationIds, searchIds };
    spec = {
      method: 'abs-times-index', sparsity: 0.5, budget: 'exact', mode: 'fast',
      calibration: { nsamples: 8, seqlen: 64, sha256: idsSha256(calibrationIds) },
      search: { windows: 4, seqlen: 64, sha256: idsSha256(searchIds) },
      seed: 5, modelHash: pm.modelHash(),
    };
    const f = await createFitness(pm, { ...spec, method: 'wanda' }, data, { threads: 1 });
    const sp = searchSpace(f.denseBlocks, spec.sparsity, spec.budget);
    await f.close();
    const rng = new Rng(3);
    while (candidates.length < 3) {
      const c = sp.sample(rng);
      if (sp.check(c).ok) candidates.push(c);
    }
  }, 300_000);

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await redis?.stop();
  });

  it('a worker without the plugin refuses the run, naming --plugin', async () => {
    const w = await spawnWorker(redis.url, []);
    children.push(w.child);
    const ev = await createRedisEvaluator({ redis: redis.url, spec, ...data, runId: 'no-plugin' });
    try {
      await expect(ev.evaluate(candidates.slice(0, 1))).rejects.toThrow(/"abs-times-index" is not registered here.*--plugin/);
    } finally {
      await ev.close();
      w.child.kill('SIGTERM');
    }
  }, 300_000);

  it('a worker started with --plugin evaluates it: the in-process fitness bit for bit', async () => {
    const f = await createFitness(pm, spec, data, { threads: 1 });
    const local: number[] = [];
    for (const c of candidates) local.push((await f.evaluate(c)).fitness);
    await f.close();
    const w = await spawnWorker(redis.url, ['--plugin', plugin]);
    children.push(w.child);
    const ev = await createRedisEvaluator({ redis: redis.url, spec, ...data, runId: 'with-plugin' });
    try {
      const res = await ev.evaluate(candidates);
      expect(res.map((r) => r.fitness)).toEqual(local);
    } finally {
      await ev.close();
      w.child.kill('SIGTERM');
    }
  }, 300_000);
});
