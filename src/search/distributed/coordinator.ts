/**
 * The coordinator side of the distributed search: an Evaluator that publishes the run to Redis, queues each batch's
 * candidates as BullMQ jobs and collects the workers' results by candidate key.
 *
 * - Exactly once per candidate: jobId = runId + hash(candidate key), results written with HSETNX, duplicates in a batch
 *   share one job. Results come back in batch order whatever order the workers finish in.
 * - Restart: the run id is derived from the spec and the token ids, so a restarted coordinator (with the search resumed
 *   from its checkpoint) finds the run, reuses every result already in Redis and re-attaches to jobs still queued.
 * - Redis unreachable: connecting retries with back-off, then a DsaPruneError; the same during a run (each Redis call
 *   retries with back-off, then gives up with the same clear error instead of hanging).
 */
import { randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import { DsaPruneError, EXIT } from '../../errors.js';
import { formatDsa } from '../../allocators/dsa/expression.js';
import type { DenseData } from '../fitness.js';
import { redisDenseCache, shareDense } from './dense-codec.js';
import { candidateKey, type Candidate, type Evaluation, type Evaluator, type SearchSpec } from '../types.js';
import {
  connectRedis,
  loadBullmq,
  parseRedisUrl,
  sleep,
  abortError,
  unreachable,
  type RedisClient,
  type BullMq,
  type RedisTarget,
} from './connection.js';
import {
  DEFAULT_PREFIX,
  PROTOCOL_VERSION,
  QUEUE_NAME,
  RUN_ID_PATTERN,
  canonical,
  decodeResult,
  decodeWorkerInfo,
  defaultRunId,
  idsToBuffer,
  jobIdOf,
  keys,
  validatePayload,
  validateLevelsPayload,
  levelsJobKey,
  type JobPayload,
  type LevelsJobPayload,
} from './protocol.js';

/** Options of createRedisEvaluator. */
export interface RedisEvaluatorOptions {
  /** Redis URL: `redis://[:password@]host:port[/db]` or `rediss://…` (TLS). `REDIS_PASSWORD` fills a missing password. */
  redis: string;
  /** What determines fitness; `spec.modelHash` must equal the workers' model hash or they refuse the jobs. */
  spec: SearchSpec;
  /** Calibration token ids (published with the run; workers use these, not their own text). */
  calibrationIds: Int32Array;
  /** Search-split token ids (published with the run). */
  searchIds: Int32Array;
  /**
   * Dense statistics the coordinator already computed: stored in Redis (by model hash + calibration hash) so the
   * workers skip their own dense pass. Too large to share (> 256 MB) → the workers compute them.
   */
  dense?: DenseData;
  /** Run id (letters, digits, '-', '_'); default derived from spec and token ids, so a restart finds the same run. */
  runId?: string;
  /** Redis key prefix shared with the workers (default `dsa-prune`). */
  prefix?: string;
  /** Attempts per job before it counts as failed (default 3; a refused job fails at once). */
  attempts?: number;
  /** Result polling interval in ms (default 20; one HMGET per poll). */
  pollMs?: number;
  /** Connection attempts with exponential back-off before "Redis unreachable" (default 6). */
  connectAttempts?: number;
  /** Consecutive failed Redis calls during a run before giving up (default 8, about 25 s of back-off). */
  callAttempts?: number;
  /** Seconds without any result and without a live worker before a warning is logged (default 30). */
  idleWarnSeconds?: number;
  /** Days the run record and its results stay in Redis after the last batch (default 7). */
  keepDays?: number;
  /** Informational messages (connection retries, reused results, missing workers). */
  onLog?: (message: string) => void;
  signal?: AbortSignal;
}

/** Counters of a RedisEvaluator, for reports and tests. */
export interface RedisEvaluatorStats {
  /** Candidates answered from results already in Redis (earlier batch or earlier coordinator). */
  reused: number;
  /** Jobs this coordinator added. */
  queued: number;
  /** Results collected from workers during this coordinator's life. */
  collected: number;
  /** Results per worker id. */
  byWorker: Record<string, number>;
}

/** Connect, publish the run and return the evaluator. */
export async function createRedisEvaluator(options: RedisEvaluatorOptions): Promise<RedisEvaluator> {
  const target = parseRedisUrl(options.redis);
  const log = options.onLog ?? (() => {});
  const { Queue } = await loadBullmq();
  const client = await connectRedis(target, {
    attempts: options.connectAttempts,
    signal: options.signal,
    onRetry: (attempt, e, delay) => log(`redis ${target.display}: ${e.message}; retry ${attempt} in ${delay} ms`),
  });
  const ev = new RedisEvaluator(target, client, options, Queue);
  try {
    await ev.publish();
    if (options.dense && !(await ev.shareDense(options.dense))) log('dense statistics too large to share; each worker computes its own');
  } catch (e) {
    await ev.close();
    throw e;
  }
  return ev;
}

/** Evaluator over a BullMQ queue on Redis. Create with createRedisEvaluator. */
export class RedisEvaluator implements Evaluator {
  /** The run id the workers see in every job. */
  readonly runId: string;
  readonly prefix: string;
  readonly stats: RedisEvaluatorStats = { reused: 0, queued: 0, collected: 0, byWorker: {} };
  private nonce = '';
  private readonly queue: Queue;
  private readonly log: (m: string) => void;
  private closed = false;
  /** Worker ids whose malformed heartbeat entry was already reported. */
  private readonly malformedWorkers = new Set<string>();

  /** @internal use createRedisEvaluator */
  constructor(
    private readonly target: RedisTarget,
    private readonly client: RedisClient,
    private readonly options: RedisEvaluatorOptions,
    QueueCtor: BullMq['Queue'],
  ) {
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.runId = options.runId ?? defaultRunId(options.spec, options.calibrationIds, options.searchIds);
    if (!RUN_ID_PATTERN.test(this.runId)) {
      throw new DsaPruneError(`run id "${this.runId}" may only contain letters, digits, '-' and '_' (at most 64)`, {
        exitCode: EXIT.badInput,
      });
    }
    this.log = options.onLog ?? (() => {});
    this.queue = new QueueCtor(QUEUE_NAME, {
      connection: { ...target.options, maxRetriesPerRequest: 2, lazyConnect: false },
      prefix: this.prefix,
    } as ConstructorParameters<typeof Queue>[1]);
    this.queue.on('error', () => {
      /* surfaced by the calls that fail */
    });
  }

  /**
   * Write the run record, or check that an existing one (a restart) has the same spec and data and adopt its nonce.
   * A different run under the same id is refused.
   */
  async publish(): Promise<void> {
    const runKey = keys.run(this.prefix, this.runId);
    const specJson = JSON.stringify(canonical(this.options.spec));
    const nonce = randomBytes(16).toString('hex');
    const cal = idsToBuffer(this.options.calibrationIds);
    const srch = idsToBuffer(this.options.searchIds);
    // HSETNX on the nonce decides who publishes; the rest is written in the same MULTI-free script for atomicity.
    const created = (await this.call('publish run', () =>
      this.client.eval(
        `if redis.call('HSETNX', KEYS[1], 'nonce', ARGV[1]) == 1 then
           redis.call('HSET', KEYS[1], 'v', ARGV[2], 'spec', ARGV[3], 'modelHash', ARGV[4], 'calibrationIds', ARGV[5],
                      'searchIds', ARGV[6], 'created', ARGV[7])
           return 1
         end
         return 0`,
        1,
        runKey,
        nonce,
        String(PROTOCOL_VERSION),
        specJson,
        this.options.spec.modelHash,
        cal,
        srch,
        String(Date.now()),
      ),
    )) as number;
    if (created === 1) {
      this.nonce = nonce;
      await this.touch();
      this.log(`published run ${this.runId} on ${this.target.display}`);
      return;
    }
    const [oldNonce, oldSpec, oldV] = await this.call('read run', () => this.client.hmget(runKey, 'nonce', 'spec', 'v'));
    const oldCal = await this.call('read run', () => this.client.hgetBuffer(runKey, 'calibrationIds'));
    const oldSearch = await this.call('read run', () => this.client.hgetBuffer(runKey, 'searchIds'));
    const same =
      oldV === String(PROTOCOL_VERSION) &&
      oldSpec === specJson &&
      oldCal !== null &&
      oldCal.equals(cal) &&
      oldSearch !== null &&
      oldSearch.equals(srch);
    if (!same || !oldNonce) {
      throw new DsaPruneError(`run ${this.runId} already exists in Redis with a different spec or data`, {
        hint: 'Choose another --run-id, or delete the old run (redis-cli DEL ' + runKey + ' ' + keys.results(this.prefix, this.runId) + ').',
        exitCode: EXIT.badInput,
      });
    }
    this.nonce = oldNonce;
    const done = await this.call('count results', () => this.client.hlen(keys.results(this.prefix, this.runId)));
    this.log(`resuming run ${this.runId}: ${done} results already in Redis`);
  }

  async evaluate(batch: Candidate[], signal?: AbortSignal): Promise<Evaluation[]> {
    const keyOf = batch.map((c) => candidateKey(c));
    const unique = new Map<string, Candidate>();
    keyOf.forEach((k, i) => {
      if (!unique.has(k)) unique.set(k, batch[i]);
    });
    return this.evaluateJobs(keyOf, (k) => {
      const c = unique.get(k)!;
      const data: JobPayload = { v: PROTOCOL_VERSION, runId: this.runId, nonce: this.nonce, key: k, expression: formatDsa(c.expression, 'reference'), lambda: c.lambda };
      validatePayload(data); // the coordinator never queues what a worker would refuse
      return data;
    }, (k) => `candidate ${formatDsa(unique.get(k)!.expression, 'reference')} (λ=${unique.get(k)!.lambda})`, signal);
  }

  /**
   * Levels search: each allocation, given as the pruned-weight count of every search linear (model order), on the first
   * `windows` search windows, or on the windows listed (indices). One job per distinct (counts, windows); results in
   * batch order.
   */
  async evaluateLinears(batch: number[][], windowsOrRows: number | readonly number[], signal?: AbortSignal): Promise<Evaluation[]> {
    const rows = typeof windowsOrRows === 'number' ? undefined : Array.from(windowsOrRows);
    const windows = rows ? rows.length : (windowsOrRows as number);
    const keyOf = batch.map((c) => levelsJobKey(c, windows, rows));
    const unique = new Map<string, number[]>();
    keyOf.forEach((k, i) => {
      if (!unique.has(k)) unique.set(k, batch[i]);
    });
    return this.evaluateJobs(keyOf, (k) => {
      const data: LevelsJobPayload = { v: PROTOCOL_VERSION, runId: this.runId, nonce: this.nonce, key: k, counts: unique.get(k)!, windows, ...(rows ? { rows } : {}) };
      validateLevelsPayload(data);
      return data;
    }, (k) => `levels allocation ${k}`, signal);
  }

  private async evaluateJobs(keyOf: string[], payloadOf: (key: string) => JobPayload | LevelsJobPayload, describe: (key: string) => string, signal?: AbortSignal): Promise<Evaluation[]> {
    if (this.closed) throw new Error('RedisEvaluator is closed');
    const sig = signal ?? this.options.signal;
    const resultsKey = keys.results(this.prefix, this.runId);
    const unique = new Set(keyOf);
    const got = new Map<string, Evaluation>();

    // 1. Results already in Redis (earlier batches, or an earlier coordinator of this run).
    const ukeys = [...unique];
    const first = await this.fetch(resultsKey, ukeys);
    for (const [k, e] of first) got.set(k, e);
    this.stats.reused += first.size;
    if (first.size > 0 && first.size < ukeys.length) this.log(`${first.size} of ${ukeys.length} candidates already evaluated`);

    // 2. Queue the rest. A job left failed by an earlier coordinator is removed and queued afresh.
    const pending = ukeys.filter((k) => !got.has(k));
    // Looking at each job's state is only needed when the queue's failed count moves (counted before queueing, so a
    // job refused at once is noticed).
    let failedSeen = pending.length > 0 ? await this.call('count failed jobs', () => this.queue.getFailedCount()) : 0;
    if (pending.length > 0) {
      const jobs: { name: string; data: JobPayload | LevelsJobPayload; opts: Record<string, unknown> }[] = [];
      for (const k of pending) {
        const jobId = jobIdOf(this.runId, k);
        const old = await this.call('read job', () => this.queue.getJob(jobId));
        if (old) {
          const state = await this.call('read job', () => old.getState());
          if (state === 'failed' || state === 'completed') await this.call('remove job', () => old.remove());
          else continue; // still queued or running: attach to it
        }
        const data = payloadOf(k);
        jobs.push({
          name: 'evaluate',
          data,
          opts: {
            jobId,
            attempts: this.options.attempts ?? 3,
            backoff: { type: 'exponential', delay: 1000 },
            removeOnComplete: { age: 3600, count: 10000 },
            removeOnFail: { age: 7 * 24 * 3600 },
          },
        });
      }
      if (jobs.length > 0) {
        await this.call('queue jobs', () => this.queue.addBulk(jobs as Parameters<Queue['addBulk']>[0]));
        this.stats.queued += jobs.length;
      }
    }

    // 3. Collect until every key has a result; check for failed jobs about once a second.
    const pollMs = this.options.pollMs ?? 20;
    const idleWarn = (this.options.idleWarnSeconds ?? 30) * 1000;
    let lastProgress = Date.now();
    let lastFailCheck = Date.now();
    let warned = false;
    let waiting = ukeys.filter((k) => !got.has(k));
    while (waiting.length > 0) {
      if (sig?.aborted) throw abortError();
      await sleep(pollMs, sig);
      const fresh = await this.fetch(resultsKey, waiting);
      for (const [k, e] of fresh) {
        got.set(k, e);
        this.stats.collected++;
        const w = e.worker ?? '?';
        this.stats.byWorker[w] = (this.stats.byWorker[w] ?? 0) + 1;
      }
      if (fresh.size > 0) lastProgress = Date.now();
      waiting = waiting.filter((k) => !got.has(k));
      if (waiting.length === 0) break;
      if (Date.now() - lastFailCheck > 1000) {
        lastFailCheck = Date.now();
        const failed = await this.call('count failed jobs', () => this.queue.getFailedCount());
        if (failed !== failedSeen) {
          await this.checkFailed(waiting, describe);
          failedSeen = failed;
        }
      }
      if (!warned && Date.now() - lastProgress > idleWarn) {
        warned = true;
        const workers = await this.liveWorkers();
        this.log(
          workers.length === 0
            ? `no result for ${Math.round(idleWarn / 1000)} s and no live worker: start one with dsa-prune worker --redis ${this.target.display} --model <dir>`
            : `no result for ${Math.round(idleWarn / 1000)} s; live workers: ${workers.join(', ')}`,
        );
      }
    }
    await this.touch();
    return keyOf.map((k) => ({ ...got.get(k)!, key: k }));
  }

  /** Keep the run record and results for keepDays after the last activity (then Redis drops them). */
  private async touch(): Promise<void> {
    const ttl = Math.round((this.options.keepDays ?? 7) * 86400);
    await this.call('refresh expiry', () => this.client.expire(keys.run(this.prefix, this.runId), ttl));
    await this.call('refresh expiry', () => this.client.expire(keys.results(this.prefix, this.runId), ttl));
  }

  /** Fail the batch with the worker's reason when a job of it failed for good. */
  private async checkFailed(waiting: string[], describe: (key: string) => string): Promise<void> {
    for (const k of waiting) {
      const job = await this.call('read job', () => this.queue.getJob(jobIdOf(this.runId, k)));
      if (!job) continue;
      const state = await this.call('read job', () => job.getState());
      if (state !== 'failed') continue;
      // The result may have landed between the poll and this check.
      const late = await this.call('read result', () => this.client.hget(keys.results(this.prefix, this.runId), k));
      if (late !== null) continue;
      throw new DsaPruneError(
        `${describe(k)} failed on the workers: ${job.failedReason ?? 'unknown reason'}`,
        { code: 'remote',
          hint: /model hash/.test(job.failedReason ?? '')
            ? 'Start the workers with the same model folder as the search (the run records its model hash).'
            : 'See the worker logs; the job stays in the failed set of the queue for inspection.',
          exitCode: EXIT.failure,
        },
      );
    }
  }

  /**
   * Share dense statistics the coordinator computed (it needs them for the search space anyway) with the workers, so
   * none of them runs its own dense pass. Returns false when they are too large to share (workers then compute).
   */
  async shareDense(dense: DenseData): Promise<boolean> {
    return this.call('share dense statistics', () => shareDense(redisDenseCache(this.client, keys.dense(this.prefix, this.options.spec)), dense));
  }

  /** Worker ids seen in the last minute. */
  async liveWorkers(): Promise<string[]> {
    const all = await this.call('read workers', () => this.client.hgetall(keys.workers(this.prefix)));
    const now = Date.now();
    const out: string[] = [];
    for (const [id, json] of Object.entries(all)) {
      let seen: number;
      try {
        seen = decodeWorkerInfo(json).seen;
      } catch (e) {
        // Reported (once per worker id), not fatal: the hash is for messages only, the run goes on.
        if (!this.malformedWorkers.has(id)) {
          this.malformedWorkers.add(id);
          this.log(`warning: Redis ${keys.workers(this.prefix)} entry "${id.slice(0, 80)}" is malformed (${(e as Error).message}); not counted as a live worker (a worker of another version?)`);
        }
        continue;
      }
      if (now - seen < 60_000) out.push(id);
    }
    return out;
  }

  private async fetch(resultsKey: string, ks: string[]): Promise<Map<string, Evaluation>> {
    const out = new Map<string, Evaluation>();
    for (let i = 0; i < ks.length; i += 500) {
      const part = ks.slice(i, i + 500);
      const vals = await this.call('read results', () => this.client.hmget(resultsKey, ...part));
      vals.forEach((v, j) => {
        if (v === null) return;
        let r: ReturnType<typeof decodeResult>;
        try {
          r = decodeResult(v);
        } catch (e) {
          throw new DsaPruneError(`Redis ${resultsKey} holds a malformed result for candidate ${part[j].slice(0, 80)}: ${(e as Error).message}`, {
            code: 'remote', hint: 'a worker of another version wrote it: stop the old workers, then delete that key (or start with another --run-id)', cause: e,
          });
        }
        // Only results computed for this run and this candidate count.
        if (r.runId !== this.runId || r.key !== part[j]) return;
        out.set(part[j], { key: r.key, fitness: r.fitness as number, blockSparsity: r.blockSparsity, seconds: r.seconds, worker: r.worker });
      });
    }
    return out;
  }

  /** One Redis call with retries and exponential back-off; after `callAttempts` failures, "Redis unreachable". */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const attempts = this.options.callAttempts ?? 8;
    let delay = 200;
    let last: Error | undefined;
    for (let i = 1; i <= attempts; i++) {
      try {
        return await fn();
      } catch (e) {
        if (e instanceof DsaPruneError) throw e;
        last = e as Error;
        if (i < attempts) {
          this.log(`redis ${what} failed (${last.message}); retry ${i} in ${delay} ms`);
          await sleep(delay, this.options.signal);
          delay = Math.min(delay * 2, 5000);
        }
      }
    }
    throw unreachable(this.target, last, attempts);
  }

  /** Close the queue and the connection (queued jobs stay in Redis for a later coordinator). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue.close().catch(() => {});
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
