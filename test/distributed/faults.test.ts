/**
 * A worker process killed in the middle of a job: BullMQ's stalled-job check gives the job to another worker, the
 * batch completes with the same results, and the candidate is counted once. Model-free workers (fixtures/) keep it fast.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDsa } from '../../src/allocators/dsa/expression.js';
import { candidateKey, type Candidate, type SearchSpec } from '../../src/search/types.js';
import { createRedisEvaluator } from '../../src/search/distributed/coordinator.js';
import { connectRedis, parseRedisUrl } from '../../src/search/distributed/connection.js';
import { keys } from '../../src/search/distributed/protocol.js';
import { fakeFitness } from './fixtures/fake-backend.js';
import { redisSkipReason, startRedis, type TestRedis } from './redis-server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const skip = redisSkipReason();
if (skip) console.warn(`[distributed] skipped: ${skip}`);

interface Proc {
  child: ChildProcess;
  id: string;
  started: string[];
}

function spawnFakeWorker(url: string, delayMs: number, lockMs: number, onStart: (p: Proc, key: string) => void): Promise<Proc> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'fixtures/fake-worker.ts'), url, 'model-a', String(delayMs), String(lockMs)], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    const p: Proc = { child, id: '', started: [] };
    let buf = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('ready ')) {
          p.id = line.slice(6);
          resolve(p);
        } else if (line.startsWith('start ')) {
          p.started.push(line.slice(6));
          onStart(p, line.slice(6));
        }
      }
    });
    child.once('exit', (code) => reject(new Error(`fake worker exited with ${code} before it was ready: ${err}`)));
  });
}

describe.skipIf(skip !== undefined)('a worker killed mid-job', () => {
  let redis: TestRedis;
  const procs: Proc[] = [];
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await redis?.stop();
  });

  it('has its job retried by another worker; results unchanged, each candidate counted once', async () => {
    let victim: Proc | undefined;
    let victimKey = '';
    const onStart = (p: Proc, key: string): void => {
      if (victim) return;
      victim = p;
      victimKey = key;
      p.child.kill('SIGKILL'); // mid-job: the evaluation takes 600 ms and has just begun
    };
    procs.push(...(await Promise.all([0, 1, 2].map(() => spawnFakeWorker(redis.url, 600, 1500, onStart)))));

    const spec: SearchSpec = {
      method: 'wanda', sparsity: 0.5, budget: 'exact', mode: 'fast',
      calibration: { nsamples: 4, seqlen: 32, sha256: 'aa' }, search: { windows: 2, seqlen: 32, sha256: 'bb' },
      seed: 11, modelHash: 'model-a',
    };
    const cs: Candidate[] = ['ABS', 'POW', 'ABSLOG', 'MMS', 'TANH', 'SIGMOID'].flatMap((p) =>
      ['MEAN', 'VAR'].map((r) => ({ expression: parseDsa(`W:(${p})-(${r})-(NO_OP)`), lambda: 0.1 })),
    );
    const ev = await createRedisEvaluator({ redis: redis.url, spec, calibrationIds: new Int32Array(8), searchIds: new Int32Array(8) });
    const client = await connectRedis(parseRedisUrl(redis.url));
    try {
      const res = await ev.evaluate(cs);
      expect(res.map((r) => r.fitness)).toEqual(cs.map(fakeFitness));
      expect(victim).toBeDefined();
      // The killed worker's candidate was started again elsewhere and its one result came from a survivor.
      const survivors = procs.filter((p) => p !== victim);
      expect(survivors.some((p) => p.started.includes(victimKey))).toBe(true);
      const byKey = res.find((r) => r.key === victimKey)!;
      expect(byKey.worker).not.toBe(victim!.id);
      expect(await client.hlen(keys.results('dsa-prune', ev.runId))).toBe(cs.length);
      expect(new Set(res.map((r) => r.key)).size).toBe(cs.length);
      expect(cs.map(candidateKey).sort()).toEqual(res.map((r) => r.key).sort());
      // Every surviving worker did some of the jobs.
      for (const p of survivors) expect(ev.stats.byWorker[p.id] ?? 0).toBeGreaterThan(0);
    } finally {
      await client.quit();
      await ev.close();
      for (const p of procs) p.child.kill('SIGTERM');
    }
  }, 300_000); // ~10 s on a quiet 2-core machine; generous for a loaded one
});
