/**
 * The worker side of the distributed search: a BullMQ Worker that serves candidate evaluations for any run whose model
 * hash equals its own.
 *
 * Per run it reads the published record once (spec, calibration and search token ids), builds a fitness per slot
 * through its backend (the backend holds the model copies and keeps the dense statistics warm; they can be shared
 * through Redis by model hash + calibration hash) and then answers jobs until stopped.
 *
 * Refusals fail the job at once (BullMQ UnrecoverableError, no retry) with a reason the coordinator shows: a payload
 * that does not pass the schema, a run that no longer exists or was re-published (nonce), a model hash that differs.
 * A worker killed mid-job loses its lock; BullMQ's stalled-job check moves the job back to the queue and another worker
 * takes it. Results are written with the run's nonce checked and HSETNX, so nothing is counted twice.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Job } from 'bullmq';
import { DsaPruneError } from '../../errors.js';
import { parseDsa } from '../../allocators/dsa/expression.js';
import { getMethod, methodNames } from '../../methods/registry.js';
import { checkStructuredSearch } from '../structured-fitness.js';
import type { Candidate, Evaluation, SearchSpec } from '../types.js';
import { connectRedis, loadBullmq, parseRedisUrl, type RedisClient } from './connection.js';
import { redisDenseCache, type DenseCache } from './dense-codec.js';

export type { DenseCache };
import {
  DEFAULT_PREFIX,
  PROTOCOL_VERSION,
  QUEUE_NAME,
  RESULT_SCRIPT,
  bufferToIds,
  encodeResult,
  keys,
  validatePayload,
  validateLevelsPayload,
  isLevelsPayload,
  validateSpec,
} from './protocol.js';

/** A fitness bound to one run on one slot (one model copy). */
export interface SlotFitness {
  evaluate(c: Candidate): Promise<Evaluation>;
  /** Levels search: an allocation (per-linear sparsities) on the first `windows` search windows. */
  evaluateLinears?(alloc: { blockSparsity: number[]; linearSparsity?: Record<string, number> }, o?: { windows?: number; windowIndices?: readonly number[] }): Promise<Evaluation>;
  close(): Promise<void>;
}

/** What a worker evaluates with: its model (copies) and how to build a fitness for a run. */
export interface WorkerBackend {
  /** Hash of the model this worker holds; runs with another hash are refused. */
  modelHash: string;
  /** The search linears of the model, in order (levels jobs give one count per linear); absent = levels jobs refused. */
  linears?: { name: string; block: number; dIn: number; dOut: number }[];
  /** Build the fitness of a run for slot `slot` (0..concurrency-1); called once per run and slot. */
  createFitness(
    spec: SearchSpec,
    data: { calibrationIds: Int32Array; searchIds: Int32Array },
    slot: number,
    dense: DenseCache,
  ): Promise<SlotFitness>;
  /** Release the model copies. */
  close?(): Promise<void>;
}

/** Options of startWorker. */
export interface WorkerOptions {
  /** Redis URL (`redis://`, `rediss://`; REDIS_PASSWORD fills a missing password). */
  redis: string;
  backend: WorkerBackend;
  /** Jobs served at once; the backend provides one model copy per slot (default 1). */
  concurrency?: number;
  /** Redis key prefix shared with the coordinator (default `dsa-prune`). */
  prefix?: string;
  /** Worker id in results and messages (default host:pid:random). */
  workerId?: string;
  /**
   * Job lock in ms (default 60 000). A worker killed mid-job has its job retried elsewhere after at most about
   * lockDuration + stalledInterval; the lock must outlast the longest stretch the event loop is busy in one job.
   */
  lockDurationMs?: number;
  /** How often this worker looks for stalled jobs of dead workers (default 30 000 ms). */
  stalledIntervalMs?: number;
  /** Times a job may stall (its worker dies) before it fails (default 3). */
  maxStalledCount?: number;
  /** Connection attempts before "Redis unreachable" (default 6). */
  connectAttempts?: number;
  /** Informational messages (run loaded, refusals, errors). */
  onLog?: (message: string) => void;
  /** Called when a job passed the checks and its evaluation starts. */
  onStart?: (key: string, runId: string) => void;
  /** Called after each job this worker completed. */
  onJob?: (e: Evaluation, runId: string) => void;
}

/** A running worker. */
export interface RunningWorker {
  readonly id: string;
  /** Jobs completed by this worker. */
  readonly completed: number;
  /** Stop taking jobs, wait for the running ones (or not, with force) and disconnect. */
  close(force?: boolean): Promise<void>;
}

interface RunContext {
  nonce: string;
  spec: SearchSpec;
  data: { calibrationIds: Int32Array; searchIds: Int32Array };
  slots: Map<number, Promise<SlotFitness>>;
}

/** Connect to Redis, announce the worker and start serving jobs. */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const target = parseRedisUrl(options.redis);
  const log = options.onLog ?? (() => {});
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
  const id = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  const backend = options.backend;
  const { UnrecoverableError, Worker } = await loadBullmq();
  const client: RedisClient = await connectRedis(target, {
    attempts: options.connectAttempts,
    onRetry: (attempt, e, delay) => log(`redis ${target.display}: ${e.message}; retry ${attempt} in ${delay} ms`),
  });

  const runs = new Map<string, Promise<RunContext>>();
  const freeSlots: number[] = Array.from({ length: concurrency }, (_, i) => i);
  let completed = 0;

  const dropRun = async (runId: string): Promise<void> => {
    const p = runs.get(runId);
    runs.delete(runId);
    if (!p) return;
    const ctx = await p.catch(() => undefined);
    if (!ctx) return;
    for (const f of ctx.slots.values()) await (await f.catch(() => undefined))?.close().catch(() => {});
  };

  const loadRun = async (runId: string): Promise<RunContext> => {
    const runKey = keys.run(prefix, runId);
    const [v, nonce, specJson, modelHash] = await client.hmget(runKey, 'v', 'nonce', 'spec', 'modelHash');
    if (nonce === null || specJson === null) throw new UnrecoverableError(`run ${runId} does not exist (anymore) in Redis`);
    if (v !== String(PROTOCOL_VERSION)) throw new UnrecoverableError(`run ${runId} uses protocol ${v}, worker ${id} speaks ${PROTOCOL_VERSION}`);
    let spec: SearchSpec;
    try {
      spec = validateSpec(JSON.parse(specJson));
    } catch (e) {
      throw new UnrecoverableError(`run ${runId} has an invalid spec: ${(e as Error).message}`);
    }
    if (modelHash !== spec.modelHash) throw new UnrecoverableError(`run ${runId} is inconsistent (two model hashes)`);
    if (spec.method === 'structured') {
      // The per-block FFN widths search: its own fitness (structured-fitness.ts), no registered method.
      try {
        checkStructuredSearch({ ...spec.structured, mode: spec.mode, granularity: spec.granularity });
      } catch (e) {
        throw new UnrecoverableError(`worker ${id} refuses run ${runId}: ${(e as Error).message}`);
      }
    } else try {
      getMethod(spec.method);
    } catch {
      throw new UnrecoverableError(
        `worker ${id} refuses run ${runId}: pruning method "${spec.method}" is not registered here (known: ${methodNames().join(', ')}); start the worker with --plugin <module.js> that registers it`,
      );
    }
    if (spec.modelHash !== backend.modelHash) {
      throw new UnrecoverableError(
        `worker ${id} refuses run ${runId}: its model hash ${backend.modelHash} differs from the run's model hash ${spec.modelHash}`,
      );
    }
    const cal = await client.hgetBuffer(runKey, 'calibrationIds');
    const srch = await client.hgetBuffer(runKey, 'searchIds');
    if (!cal || !srch) throw new UnrecoverableError(`run ${runId} has no token ids`);
    log(`run ${runId}: ${spec.method} at ${spec.sparsity}, ${spec.mode} fitness, ${cal.length / 4} calibration and ${srch.length / 4} search tokens`);
    return { nonce, spec, data: { calibrationIds: bufferToIds(cal), searchIds: bufferToIds(srch) }, slots: new Map() };
  };

  const contextOf = async (runId: string, nonce: string): Promise<RunContext> => {
    let p = runs.get(runId);
    if (p) {
      const ctx = await p.catch(() => undefined);
      // A run whose load failed is read again; so is a run re-published under the same id (the job carries the new
      // nonce). A stale job (older nonce) is refused below without disturbing the warm context.
      const republished = ctx !== undefined && ctx.nonce !== nonce && (await client.hget(keys.run(prefix, runId), 'nonce')) === nonce;
      if (!ctx || republished) {
        await dropRun(runId);
        p = undefined;
      }
    }
    if (!p) {
      p = loadRun(runId);
      runs.set(runId, p);
      // Keep at most two runs warm (the current one and the previous); close older model states.
      if (runs.size > 2) await dropRun(runs.keys().next().value as string);
    }
    const ctx = await p;
    if (ctx.nonce !== nonce) throw new UnrecoverableError(`job of run ${runId} belongs to an older publication of the run`);
    return ctx;
  };

  const denseCache = (spec: SearchSpec): DenseCache =>
    redisDenseCache(client, keys.dense(prefix, spec));

  /** The allocation of a levels job on this worker's linears (refused when the counts do not fit them). */
  const levelsAllocation = (counts: number[], jobId: string | undefined) => {
    const ls = backend.linears;
    if (!ls) throw new UnrecoverableError(`worker ${id} refused job ${jobId}: this worker does not serve levels jobs`);
    if (counts.length !== ls.length) throw new UnrecoverableError(`worker ${id} refused job ${jobId}: ${counts.length} counts for ${ls.length} linears`);
    const linearSparsity: Record<string, number> = {};
    const nBlocks = Math.max(...ls.map((l) => l.block)) + 1;
    const num = new Array<number>(nBlocks).fill(0);
    const den = new Array<number>(nBlocks).fill(0);
    ls.forEach((l, i) => {
      const n = l.dIn * l.dOut;
      if (counts[i] > n) throw new UnrecoverableError(`worker ${id} refused job ${jobId}: count ${counts[i]} for ${l.name} of ${n} weights`);
      linearSparsity[l.name] = counts[i] / n;
      num[l.block] += counts[i];
      den[l.block] += n;
    });
    return { linearSparsity, blockSparsity: num.map((x, b) => (den[b] > 0 ? x / den[b] : 0)) };
  };

  const processor = async (job: Job): Promise<{ key: string; fitness: number | null }> => {
    if (isLevelsPayload(job.data)) {
      let lp;
      try {
        lp = validateLevelsPayload(job.data);
      } catch (e) {
        throw new UnrecoverableError(`worker ${id} refused job ${job.id}: ${(e as Error).message}`);
      }
      const ctx = await contextOf(lp.runId, lp.nonce);
      if (lp.windows > ctx.spec.search.windows) throw new UnrecoverableError(`worker ${id} refused job ${job.id}: ${lp.windows} windows, the run has ${ctx.spec.search.windows}`);
      const badRow = lp.rows?.find((r) => r >= ctx.spec.search.windows);
      if (badRow !== undefined) throw new UnrecoverableError(`worker ${id} refused job ${job.id}: window ${badRow}, the run has ${ctx.spec.search.windows} search windows`);
      const alloc = levelsAllocation(lp.counts, job.id);
      return serve(lp.key, lp.runId, lp.nonce, job, async (f) => {
        if (!f.evaluateLinears) throw new UnrecoverableError(`worker ${id}: its fitness has no levels evaluation`);
        return { ...(await f.evaluateLinears(alloc, { windows: lp.windows, ...(lp.rows ? { windowIndices: lp.rows } : {}) })), key: lp.key };
      }, ctx);
    }
    let payload;
    try {
      payload = validatePayload(job.data);
    } catch (e) {
      throw new UnrecoverableError(`worker ${id} refused job ${job.id}: ${(e as Error).message}`);
    }
    const ctx = await contextOf(payload.runId, payload.nonce);
    let candidate: Candidate;
    try {
      candidate = { expression: parseDsa(payload.expression), lambda: payload.lambda };
    } catch (e) {
      throw new UnrecoverableError(`worker ${id} refused job ${job.id}: ${(e as Error).message}`);
    }
    return serve(payload.key, payload.runId, payload.nonce, job, (f) => f.evaluate(candidate), ctx);
  };

  /** Evaluate on a free slot, check the key, store the result once (nonce checked). */
  const serve = async (key: string, runId: string, nonce: string, job: Job, run: (f: SlotFitness) => Promise<Evaluation>, ctx: RunContext): Promise<{ key: string; fitness: number | null }> => {
    const payload = { key, runId, nonce };
    options.onStart?.(payload.key, payload.runId);
    const slot = freeSlots.pop();
    if (slot === undefined) throw new Error('no free evaluation slot (concurrency accounting)');
    let ev: Evaluation;
    try {
      let f = ctx.slots.get(slot);
      if (!f) {
        f = backend.createFitness(ctx.spec, ctx.data, slot, denseCache(ctx.spec));
        ctx.slots.set(slot, f);
        f.catch(() => ctx.slots.delete(slot));
      }
      ev = await run(await f);
    } catch (e) {
      // A DsaPruneError is deterministic (bad candidate, bad model): retrying elsewhere gives the same answer.
      if (e instanceof DsaPruneError) throw new UnrecoverableError(`worker ${id}: ${e.message}`);
      throw e;
    } finally {
      freeSlots.push(slot);
    }
    // The fitness computed the candidate's key itself: a job whose key does not match its expression and λ is refused
    // (checked after the evaluation so the mathjs simplification behind the key runs once per job, not twice).
    if (ev.key !== payload.key) {
      throw new UnrecoverableError(`worker ${id} refused job ${job.id}: its key does not match its expression and λ (${ev.key})`);
    }
    const stored = encodeResult({
      runId: payload.runId,
      key: payload.key,
      fitness: ev.fitness,
      blockSparsity: ev.blockSparsity,
      seconds: ev.seconds,
      worker: id,
    });
    const w = (await client.eval(RESULT_SCRIPT, 2, keys.run(prefix, payload.runId), keys.results(prefix, payload.runId), payload.nonce, payload.key, stored)) as number;
    if (w === -1) throw new UnrecoverableError(`run ${payload.runId} was removed or re-published while worker ${id} evaluated job ${job.id}`);
    completed++;
    options.onJob?.({ ...ev, key: payload.key, worker: id }, payload.runId);
    return { key: payload.key, fitness: Number.isFinite(ev.fitness) ? ev.fitness : null };
  };

  const lockDuration = options.lockDurationMs ?? 60_000;
  const worker = new Worker(QUEUE_NAME, processor, {
    connection: { ...target.options },
    prefix,
    concurrency,
    lockDuration,
    stalledInterval: options.stalledIntervalMs ?? Math.min(30_000, lockDuration),
    maxStalledCount: options.maxStalledCount ?? 3,
    autorun: true,
  } as ConstructorParameters<typeof Worker>[2]);
  let lastError = '';
  worker.on('error', (e: Error) => {
    if (e.message !== lastError) log(`redis: ${e.message} (reconnecting)`);
    lastError = e.message;
  });
  worker.on('failed', (job: Job | undefined, e: Error) => {
    log(`job ${job?.id ?? '?'} failed: ${e.message}`);
  });

  const beat = async (): Promise<void> => {
    const info = { modelHash: backend.modelHash, host: hostname(), pid: process.pid, seen: Date.now(), jobs: completed, concurrency };
    await client.hset(keys.workers(prefix), id, JSON.stringify(info)).catch(() => {});
  };
  await beat();
  const timer = setInterval(() => void beat(), 10_000);
  timer.unref();
  log(`worker ${id} serving ${target.display} (model ${backend.modelHash}, concurrency ${concurrency})`);

  let closing: Promise<void> | undefined;
  return {
    id,
    get completed() {
      return completed;
    },
    close(force = false) {
      closing ??= (async () => {
        clearInterval(timer);
        await worker.close(force).catch(() => {});
        for (const runId of [...runs.keys()]) await dropRun(runId);
        await backend.close?.().catch(() => {});
        await client.hdel(keys.workers(prefix), id).catch(() => {});
        await client.quit().catch(() => client.disconnect());
      })();
      return closing;
    },
  };
}
