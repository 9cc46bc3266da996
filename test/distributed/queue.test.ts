/**
 * Queue mechanics on a private redis-server, with a model-free fitness (fixtures/fake-backend.ts): results keyed by
 * candidate and order-independent, reuse after a coordinator restart, refusals (model hash, payload schema, stale
 * run), credentials and "Redis unreachable".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { formatDsa, parseDsa } from '../../src/allocators/dsa/expression.js';
import { candidateKey, type Candidate, type SearchSpec } from '../../src/search/types.js';
import { createRedisEvaluator } from '../../src/search/distributed/coordinator.js';
import { startWorker, type RunningWorker } from '../../src/search/distributed/worker.js';
import { connectRedis, parseRedisUrl } from '../../src/search/distributed/connection.js';
import { RESULT_SCRIPT, keys, QUEUE_NAME, PROTOCOL_VERSION } from '../../src/search/distributed/protocol.js';
import { DsaPruneError } from '../../src/errors.js';
import { fakeBackend, fakeFitness } from './fixtures/fake-backend.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dsaSpace } from '../../src/search/space.js';
import { functionEvaluator, runSearch, type SearchOptions } from '../../src/search/evolution.js';
import { readCheckpoint } from '../../src/search/checkpoint.js';
import { Rng } from '../../src/search/random.js';
import { makeTlsFiles, redisSkipReason, startRedis, type TestRedis } from './redis-server.js';

const skip = redisSkipReason();
if (skip) console.warn(`[distributed] skipped: ${skip}`);

const spec = (over: Partial<SearchSpec> = {}): SearchSpec => ({
  method: 'wanda',
  sparsity: 0.5,
  budget: 'exact',
  mode: 'fast',
  calibration: { nsamples: 4, seqlen: 32, sha256: 'aa' },
  search: { windows: 2, seqlen: 32, sha256: 'bb' },
  seed: 1,
  modelHash: 'model-a',
  ...over,
});
const ids = (n: number, k: number): Int32Array => Int32Array.from({ length: n }, (_, i) => (i * k) % 97);

function candidates(n: number): Candidate[] {
  const pre = ['NO_OP', 'ABS', 'ABSLOG', 'POW'];
  const red = ['MEAN', 'VAR', 'STD', 'L1_NORM', 'GRAM'];
  const sc = ['NO_OP', 'ATAN', 'TANH', 'SIGMOID'];
  const out: Candidate[] = [];
  for (let i = 0; out.length < n; i++) {
    const text = `W:(${pre[i % 4]})-(${red[Math.floor(i / 4) % 5]})-(${sc[Math.floor(i / 20) % 4]})`;
    out.push({ expression: parseDsa(text), lambda: 0.05 + 0.01 * (i % 3) });
  }
  return out;
}

describe.skipIf(skip !== undefined)('distributed queue (private redis-server)', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('returns every result in batch order, one job per distinct candidate, and reuses them after a restart', async () => {
    const workers: RunningWorker[] = [];
    const evaluated: string[] = [];
    for (let i = 0; i < 2; i++) {
      workers.push(await startWorker({ redis: redis.url, backend: fakeBackend('model-a', 5, (k) => evaluated.push(k)), concurrency: 2, prefix: 't1' }));
    }
    const cs = candidates(12);
    const batch = [...cs, cs[3], cs[0]]; // duplicates share one job
    const s = spec();
    const ev = await createRedisEvaluator({ redis: redis.url, spec: s, calibrationIds: ids(64, 3), searchIds: ids(32, 5), prefix: 't1' });
    try {
      const res = await ev.evaluate([...batch].reverse());
      expect(res.map((r) => r.key)).toEqual([...batch].reverse().map(candidateKey));
      for (const r of res) expect(r.fitness).toBeCloseTo(fakeFitness([...batch].find((c) => candidateKey(c) === r.key)!), 12);
      expect(ev.stats.queued).toBe(12);
      expect(new Set(evaluated).size).toBe(12);
      expect(evaluated.length).toBe(12);
    } finally {
      await ev.close();
    }
    // A restarted coordinator (same spec and data → same run id) reuses every result, queues nothing.
    const ev2 = await createRedisEvaluator({ redis: redis.url, spec: s, calibrationIds: ids(64, 3), searchIds: ids(32, 5), prefix: 't1' });
    try {
      expect(ev2.runId).toBe(ev.runId);
      const res2 = await ev2.evaluate(cs);
      expect(ev2.stats.reused).toBe(12);
      expect(ev2.stats.queued).toBe(0);
      expect(res2.map((r) => r.fitness)).toEqual(cs.map(fakeFitness));
      expect(evaluated.length).toBe(12);
    } finally {
      await ev2.close();
      for (const w of workers) await w.close();
    }
  });

  it('fails the batch with a clear reason when the worker holds another model (no retries)', async () => {
    const w = await startWorker({ redis: redis.url, backend: fakeBackend('model-b', 1), prefix: 't2' });
    const ev = await createRedisEvaluator({ redis: redis.url, spec: spec(), calibrationIds: ids(8, 1), searchIds: ids(8, 2), prefix: 't2' });
    try {
      const err = await ev.evaluate(candidates(1)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DsaPruneError);
      expect((err as Error).message).toMatch(/model hash model-b differs from the run's model hash model-a/);
      const q = new Queue(QUEUE_NAME, { connection: parseRedisUrl(redis.url).options, prefix: 't2' } as ConstructorParameters<typeof Queue>[1]);
      const failed = await q.getFailed();
      expect(failed).toHaveLength(1);
      expect(failed[0].attemptsMade).toBe(1);
      await q.close();
    } finally {
      await ev.close();
      await w.close();
    }
  });

  it('refuses payloads outside the schema without retrying, and stale reports into another publication', async () => {
    const w = await startWorker({ redis: redis.url, backend: fakeBackend('model-a', 1), prefix: 't3' });
    const ev = await createRedisEvaluator({ redis: redis.url, spec: spec({ seed: 7 }), calibrationIds: ids(8, 1), searchIds: ids(8, 2), prefix: 't3' });
    const q = new Queue(QUEUE_NAME, { connection: parseRedisUrl(redis.url).options, prefix: 't3' } as ConstructorParameters<typeof Queue>[1]);
    const client = await connectRedis(parseRedisUrl(redis.url));
    try {
      const nonce = (await client.hget(keys.run('t3', ev.runId), 'nonce'))!;
      const good = { v: PROTOCOL_VERSION, runId: ev.runId, nonce, key: candidateKey(candidates(1)[0]), expression: 'W:(NO_OP)-(MEAN)-(NO_OP)', lambda: 0.05 };
      const bad: Record<string, unknown>[] = [
        { ...good, expression: 'W:(EVAL)-(MEAN)-(NO_OP)' }, // op not in the tables
        { ...good, expression: "W:(ABS)-(MEAN)-(NO_OP);require('fs')" },
        { ...good, lambda: 3 },
        { ...good, lambda: 'NaN' },
        { ...good, model: '/etc/passwd' }, // unexpected field
        { ...good, runId: '../x' },
        { ...good, nonce: '0'.repeat(32) }, // an older publication of the run
        { ...good, key: 'something else' }, // key must match expression and λ
      ];
      const jobs = await q.addBulk(bad.map((data, i) => ({ name: 'evaluate', data, opts: { jobId: `bad-${i}`, attempts: 3 } })));
      const deadline = Date.now() + 20_000;
      for (;;) {
        const states = await Promise.all(jobs.map((j) => q.getJobState(j.id!)));
        if (states.every((s) => s === 'failed')) break;
        if (Date.now() > deadline) throw new Error(`jobs not refused: ${states.join(',')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const j of jobs) {
        const job = (await q.getJob(j.id!))!;
        expect(job.attemptsMade).toBe(1); // refused, not retried
        expect(job.failedReason).toMatch(/refuse|older publication|does not exist/);
      }
      expect(await client.hlen(keys.results('t3', ev.runId))).toBe(0);
      // The result script itself refuses a wrong nonce and never overwrites a result.
      const rk = keys.run('t3', ev.runId);
      const resk = keys.results('t3', ev.runId);
      expect(await client.eval(RESULT_SCRIPT, 2, rk, resk, '1'.repeat(32), 'k', '{}')).toBe(-1);
      expect(await client.eval(RESULT_SCRIPT, 2, rk, resk, nonce, 'k', '{"a":1}')).toBe(1);
      expect(await client.eval(RESULT_SCRIPT, 2, rk, resk, nonce, 'k', '{"a":2}')).toBe(0);
      expect(await client.hget(resk, 'k')).toBe('{"a":1}');
    } finally {
      await q.close();
      await client.quit();
      await ev.close();
      await w.close();
    }
  });

  it('a restarted coordinator resumes from its checkpoint and reuses the results already in Redis', async () => {
    // Synthetic block vectors and an independent allocation (the fitness is fakeFitness, a function of the key).
    const rng = new Rng(9);
    const blocks = Array.from({ length: 5 }, (_, b) => {
      const z = new Float32Array(500);
      for (let i = 0; i < z.length; i++) z[i] = Math.exp(0.3 * (b + 1) * rng.normal());
      return { z, params: 500 };
    });
    const allocate = (scores: number[], lambda: number): number[] => {
      const lo = Math.min(...scores);
      const r = scores.map((x) => (x - lo) / (Math.max(...scores) - lo));
      const m = r.reduce((a, b) => a + b, 0) / r.length;
      return r.map((x) => 0.5 + 2 * lambda * (x - m));
    };
    const options: SearchOptions = { evaluations: 30, seed: 4, population: 6 };
    const local = await runSearch(dsaSpace({ blocks, allocate }), functionEvaluator((c) => ({ fitness: fakeFitness(c), blockSparsity: [], seconds: 0 })), options);

    const w = await startWorker({ redis: redis.url, backend: fakeBackend('model-a', 20), concurrency: 2, prefix: 't5' });
    const checkpointPath = path.join(mkdtempSync(path.join(tmpdir(), 'dsa-dist-')), 'search.json');
    const s = spec({ seed: 4 });
    const args = { redis: redis.url, spec: s, calibrationIds: ids(8, 1), searchIds: ids(8, 2), prefix: 't5' };
    try {
      // Coordinator 1 "crashes" (is aborted) while its third generation is in the queue.
      const crash = new AbortController();
      const ev1 = await createRedisEvaluator({ ...args, signal: crash.signal });
      let batches = 0;
      const crashing = {
        evaluate: (batch: Candidate[], signal?: AbortSignal) => {
          if (++batches === 3) setTimeout(() => crash.abort(), 10); // after the jobs are queued, before they finish
          return ev1.evaluate(batch, signal);
        },
        close: () => ev1.close(),
      };
      const first = await runSearch(dsaSpace({ blocks, allocate }), crashing, { ...options, checkpointPath, signal: crash.signal }).catch((e: unknown) => e);
      expect(first).toBeInstanceOf(DsaPruneError);
      await ev1.close();
      await new Promise((r) => setTimeout(r, 300)); // the workers finish the orphaned jobs meanwhile
      // Coordinator 2: same spec and data → same run; resumes from the checkpoint.
      const ev2 = await createRedisEvaluator(args);
      const resumed = await runSearch(dsaSpace({ blocks, allocate }), ev2, { ...options, resume: await readCheckpoint(checkpointPath) });
      await ev2.close();
      expect(ev2.runId).toBe(ev1.runId);
      expect(ev2.stats.reused).toBeGreaterThan(0);
      expect(resumed.best.expression).toBe(local.best.expression);
      expect(resumed.best.lambda).toBe(local.best.lambda);
      expect(resumed.history.map((h) => h.fitness)).toEqual(local.history.map((h) => h.fitness));
    } finally {
      await w.close();
    }
  });

  it('a worker follows a run re-published under the same id and refuses the old publication\'s jobs', async () => {
    const base = fakeBackend('model-a', 1);
    let created = 0;
    const backend = { ...base, createFitness: (...a: Parameters<typeof base.createFitness>) => (created++, base.createFitness(...a)) };
    const w = await startWorker({ redis: redis.url, backend, prefix: 't6' });
    const client = await connectRedis(parseRedisUrl(redis.url));
    const args = { redis: redis.url, spec: spec({ seed: 8 }), calibrationIds: ids(8, 1), searchIds: ids(8, 2), prefix: 't6', runId: 'again' };
    const q = new Queue(QUEUE_NAME, { connection: parseRedisUrl(redis.url).options, prefix: 't6' } as ConstructorParameters<typeof Queue>[1]);
    try {
      const ev1 = await createRedisEvaluator(args);
      const cs = candidates(4);
      await ev1.evaluate(cs.slice(0, 2)); // the worker now holds the first publication warm
      const oldNonce = (await client.hget(keys.run('t6', 'again'), 'nonce'))!;
      await ev1.close();
      await client.del(keys.run('t6', 'again'), keys.results('t6', 'again'));
      const ev2 = await createRedisEvaluator(args);
      expect(await client.hget(keys.run('t6', 'again'), 'nonce')).not.toBe(oldNonce);
      const res = await ev2.evaluate(cs);
      expect(res.map((r) => r.fitness)).toEqual(cs.map(fakeFitness));
      expect(ev2.stats.reused).toBe(0);
      expect(created).toBe(2); // one fitness per publication

      // A stale job of the first publication is refused, and the warm context of the new one still serves.
      const stale = await q.add('evaluate', { v: PROTOCOL_VERSION, runId: 'again', nonce: oldNonce, key: candidateKey(candidates(5)[4]), expression: formatDsa(candidates(5)[4].expression, 'reference'), lambda: candidates(5)[4].lambda }, { jobId: 'stale-1' });
      for (let i = 0; i < 400 && (await q.getJobState(stale.id!)) !== 'failed'; i++) await new Promise((r) => setTimeout(r, 25));
      expect((await q.getJob(stale.id!))!.failedReason).toMatch(/older publication/);
      expect(await client.hlen(keys.results('t6', 'again'))).toBe(4);
      expect((await ev2.evaluate(candidates(6))).map((r) => r.fitness)).toEqual(candidates(6).map(fakeFitness));
      expect(created).toBe(2); // the stale job did not throw the warm context away
      await ev2.close();
    } finally {
      await q.close();
      await client.quit();
      await w.close();
    }
  });

  it('reports a malformed workers-hash entry (once, with its key) and goes on with the well-formed ones', async () => {
    const w = await startWorker({ redis: redis.url, backend: fakeBackend('model-a', 1), prefix: 't8' });
    const client = await connectRedis(parseRedisUrl(redis.url));
    const logs: string[] = [];
    const ev = await createRedisEvaluator({ redis: redis.url, spec: spec({ seed: 11 }), calibrationIds: ids(8, 1), searchIds: ids(8, 2), prefix: 't8', onLog: (m) => logs.push(m) });
    try {
      await client.hset(keys.workers('t8'), 'bad-type', JSON.stringify({ modelHash: 'model-a', host: 'h', pid: 1, seen: String(Date.now()), jobs: 0 }));
      await client.hset(keys.workers('t8'), 'not-json', '{"seen": 1');
      expect(await ev.liveWorkers()).toEqual([w.id]); // the real heartbeat passes the schema
      expect(await ev.liveWorkers()).toEqual([w.id]);
      const warned = logs.filter((m) => m.startsWith('warning:'));
      expect(warned).toHaveLength(2); // once per key, not once per look
      expect(warned.find((m) => m.includes('"bad-type"'))).toMatch(/field "seen" must be a time in ms since 1970, got "\d+"/);
      expect(warned.find((m) => m.includes('"not-json"'))).toMatch(/not JSON/);
      // the run goes on
      expect((await ev.evaluate(candidates(2))).map((r) => r.fitness)).toEqual(candidates(2).map(fakeFitness));
    } finally {
      await ev.close();
      await client.quit();
      await w.close();
    }
  });

  it('refuses to publish a different run under an existing run id', async () => {
    const a = await createRedisEvaluator({ redis: redis.url, spec: spec(), calibrationIds: ids(8, 1), searchIds: ids(8, 2), prefix: 't4', runId: 'fixed' });
    await a.close();
    const err = await createRedisEvaluator({ redis: redis.url, spec: spec({ sparsity: 0.6 }), calibrationIds: ids(8, 1), searchIds: ids(8, 2), prefix: 't4', runId: 'fixed' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DsaPruneError);
    expect((err as Error).message).toMatch(/already exists/);
  });

  it('says clearly when Redis is unreachable, after retrying with back-off', async () => {
    const t0 = Date.now();
    const err = await createRedisEvaluator({
      redis: 'redis://127.0.0.1:1',
      spec: spec(),
      calibrationIds: ids(8, 1),
      searchIds: ids(8, 2),
      connectAttempts: 3,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DsaPruneError);
    expect((err as Error).message).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1 after 3 attempts/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(600 - 50); // 200 + 400 ms of back-off
  });
});

/** One worker and one evaluator on `url` under `prefix`: n candidates come back with the fake backend's fitness. */
async function expectServed(url: string, prefix: string, n: number): Promise<void> {
  const w = await startWorker({ redis: url, backend: fakeBackend('model-a', 1), prefix });
  const ev = await createRedisEvaluator({ redis: url, spec: spec(), calibrationIds: ids(8, 1), searchIds: ids(8, 2), prefix });
  try {
    const cs = candidates(n);
    expect((await ev.evaluate(cs)).map((r) => r.fitness)).toEqual(cs.map(fakeFitness));
  } finally {
    await ev.close();
    await w.close();
  }
}

describe.skipIf(skip !== undefined)('distributed queue with a password', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis({ password: 's3cret/pw' });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('works with the password in the URL and refuses a wrong one without retrying', async () => {
    await expectServed(redis.url, 'p', 3);
    const wrong = `redis://:nope@127.0.0.1:${redis.port}`;
    const err = await createRedisEvaluator({ redis: wrong, spec: spec(), calibrationIds: ids(8, 1), searchIds: ids(8, 2) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DsaPruneError);
    expect((err as Error).message).toMatch(/refused the credentials/);
    expect((err as Error).message).not.toMatch(/nope/);
  });
});

describe.skipIf(skip !== undefined)('distributed queue over TLS (rediss://)', () => {
  let redis: TestRedis | undefined;
  let ca = '';
  beforeAll(async () => {
    const files = makeTlsFiles(mkdtempSync(path.join(tmpdir(), 'dsa-tls-')));
    if (!files) return;
    ca = files.ca;
    redis = await startRedis({ tls: files, password: 'tls-pw' });
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('verifies the server against REDIS_TLS_CA and serves jobs; without the CA the error says why', async (ctx) => {
    if (!redis) ctx.skip(); // no openssl to make certificates
    const url = redis!.url;
    expect(url.startsWith('rediss://')).toBe(true);
    const untrusted = await createRedisEvaluator({ redis: url, spec: spec(), calibrationIds: ids(8, 1), searchIds: ids(8, 2), connectAttempts: 2 }).catch((e: unknown) => e);
    expect(untrusted).toBeInstanceOf(DsaPruneError);
    expect((untrusted as Error).message).toMatch(/TLS connection to Redis at rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+ failed: .*certificate/);
    process.env.REDIS_TLS_CA = ca;
    try {
      await expectServed(url, 'tls', 4);
    } finally {
      delete process.env.REDIS_TLS_CA;
    }
  });
});
