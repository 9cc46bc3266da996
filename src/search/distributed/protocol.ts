/**
 * What crosses Redis between the coordinator and the workers, and the checks every worker applies before it trusts it.
 *
 * Layout (all under one key prefix, default `dsa-prune`):
 * - `<prefix>:run:<runId>` (hash): `v`, `nonce`, `spec` (SearchSpec JSON), `modelHash`, `calibrationIds` and
 *   `searchIds` (Int32 little-endian bytes), `created`. Written once by the coordinator that publishes the run.
 * - `<prefix>:run:<runId>:results` (hash): candidate key → Evaluation JSON. Written only through RESULT_SCRIPT, which
 *   checks the run's nonce, and never overwrites (HSETNX): a candidate is counted once, whoever finishes first.
 * - `<prefix>:dense:<modelHash>:<calibrationSha>:<n>x<seqlen>:<sq|gram>` (string): cached dense statistics.
 * - `<prefix>:workers` (hash): worker id → {modelHash, host, pid, seen, jobs} for the coordinator's messages.
 * - BullMQ queue `eval` (keys `<prefix>:eval:*`): one job per candidate, jobId = `<runId>-<sha256(key)[0..32)>`.
 *
 * Job payloads are plain data: the DSA string form of the expression, λ, the run id and nonce, the candidate key. A
 * worker validates them against the op tables (no code, no paths, no free text reaches the pruning code) and refuses
 * anything else without retrying. Payloads, run specs and stored results are declared once as valibot schemas
 * (payloadSchema, specSchema, storedResultSchema; src/data/schema.ts builds the messages).
 */
import { createHash } from 'node:crypto';
import { PRE_BY_NAME, REDUCE_BY_NAME, SCALAR_BY_NAME } from '../../allocators/dsa/ops.js';
import { getMethod } from '../../methods/registry.js';
import { checkSchema, count, intIn, numberOrNull, obj, strictObj, v } from '../../data/schema.js';
import type { SearchSpec } from '../types.js';

/** Default key prefix. */
export const DEFAULT_PREFIX = 'dsa-prune';
/** BullMQ queue name (under the prefix). */
export const QUEUE_NAME = 'eval';
/** Wire format version of runs and jobs. */
export const PROTOCOL_VERSION = 1;

/** λ a worker accepts from the queue: the search space default is [0.02, 0.25] and configurable; beyond 0.5 an allocation is meaningless. */
export const PAYLOAD_LAMBDA_LIMITS = { min: 0, max: 0.5 } as const;

export const keys = {
  run: (prefix: string, runId: string): string => `${prefix}:run:${runId}`,
  results: (prefix: string, runId: string): string => `${prefix}:run:${runId}:results`,
  /**
   * Dense statistics of a spec: model, calibration tokens, and whether Gram matrices are in them (the method's
   * `needs.gram`, from the registry: a user method must be registered, see `dsa-prune worker --plugin`).
   */
  dense: (prefix: string, spec: Pick<SearchSpec, 'modelHash' | 'calibration' | 'method' | 'structured'>): string =>
    `${prefix}:dense:${spec.modelHash}:${spec.calibration.sha256}:${spec.calibration.nsamples}x${spec.calibration.seqlen}:${denseKind(spec)}`,
  workers: (prefix: string): string => `${prefix}:workers`,
};

/** BullMQ job id of a candidate in a run (BullMQ forbids ':' in custom ids). */
export function jobIdOf(runId: string, key: string): string {
  return `${runId}-${createHash('sha256').update(key).digest('hex').slice(0, 32)}`;
}

/** Run ids: letters, digits, '-' and '_' (they become part of Redis keys and job ids). */
export const RUN_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Deterministic run id: the same spec and data give the same run, so a restarted coordinator finds its results. */
export function defaultRunId(spec: SearchSpec, calibrationIds: Int32Array, searchIds: Int32Array): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(canonical(spec)));
  h.update(idsToBuffer(calibrationIds));
  h.update('|');
  h.update(idsToBuffer(searchIds));
  return `run-${h.digest('hex').slice(0, 24)}`;
}

/** JSON with sorted object keys (stable across engines and spellings). */
export function canonical(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(canonical);
  if (x !== null && typeof x === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(x as Record<string, unknown>).sort()) out[k] = canonical((x as Record<string, unknown>)[k]);
    return out;
  }
  return x;
}

/** Int32 token ids as little-endian bytes (a copy, independent of the platform's endianness). */
export function idsToBuffer(ids: Int32Array): Buffer {
  const b = Buffer.allocUnsafe(ids.length * 4);
  for (let i = 0; i < ids.length; i++) b.writeInt32LE(ids[i], i * 4);
  return b;
}

export function bufferToIds(b: Buffer): Int32Array {
  if (b.length % 4 !== 0) throw new Error(`token id buffer of ${b.length} bytes is not a multiple of 4`);
  const ids = new Int32Array(b.length / 4);
  for (let i = 0; i < ids.length; i++) ids[i] = b.readInt32LE(i * 4);
  return ids;
}

/** One queued evaluation, as stored in the BullMQ job's data. */
export interface JobPayload {
  v: number;
  runId: string;
  /** Random per publication of the run: a worker holding an older publication's context cannot report into this one. */
  nonce: string;
  /** candidateKey() of the candidate, as the coordinator computed it. */
  key: string;
  /** DSA string form `W:(P…)-(R)-(T1[,T2])`. */
  expression: string;
  lambda: number;
}

/**
 * One queued evaluation of the levels search: the pruned-weight count of every search linear (model order) and the
 * number of search windows to score on. Plain integers: the worker checks them against its own model's linears.
 */
export interface LevelsJobPayload {
  v: number;
  runId: string;
  nonce: string;
  /** levelsJobKey(counts, windows). */
  key: string;
  counts: number[];
  windows: number;
  /** Score on these search windows (0-based indices, `windows` of them) instead of the first `windows` (`--level-sampling resample`). */
  rows?: number[];
}

/** Key of a levels job: windows and the sha256 of the counts (and of the window indices, when given). */
export function levelsJobKey(counts: ArrayLike<number>, windows: number, rows?: readonly number[]): string {
  return `levels:${windows}:${createHash('sha256').update(Array.from(counts).join(',') + (rows ? `|${rows.join(',')}` : '')).digest('hex')}`;
}

const MAX_LINEARS = 1 << 16;

const COUNT = 'a pruned-weight count (an integer ≥ 0)';

/** A levels job's data: exactly these fields, integer counts (one per search linear), windows ≥ 1. */
export const levelsPayloadSchema = strictObj(
  {
    v: v.literal(PROTOCOL_VERSION, `protocol version ${PROTOCOL_VERSION} (the version this worker speaks)`),
    runId: v.pipe(v.string('a run id'), v.regex(RUN_ID_PATTERN, 'a run id (1–64 letters, digits, "-", "_")')),
    nonce: v.pipe(v.string('a nonce'), v.regex(/^[0-9a-f]{32}$/, 'a nonce (32 lowercase hex digits)')),
    key: v.pipe(v.string('a levels job key'), v.regex(/^levels:\d{1,9}:[0-9a-f]{64}$/, 'a levels job key (levels:<windows>:<sha256>)')),
    counts: v.pipe(
      v.array(v.pipe(v.number(COUNT), v.safeInteger(COUNT), v.minValue(0, COUNT)), `a non-empty array of pruned-weight counts (at most ${MAX_LINEARS})`),
      v.minLength(1, 'a non-empty array of pruned-weight counts'),
      v.maxLength(MAX_LINEARS, `an array of at most ${MAX_LINEARS} pruned-weight counts`),
    ),
    windows: v.pipe(v.number('a positive integer'), v.safeInteger('a positive integer'), v.minValue(1, 'a positive integer')),
    rows: v.optional(v.pipe(
      v.array(v.pipe(v.number('a window index'), v.safeInteger('a window index'), v.minValue(0, 'a window index (≥ 0)')), 'an array of window indices'),
      v.maxLength(MAX_LINEARS, `an array of at most ${MAX_LINEARS} window indices`),
    )),
  },
  'an object { v, runId, nonce, key, counts, windows, rows? }',
);

/** Validate a levels job's data (exact key set, integer counts, key matching the counts); throws PayloadError. */
export function validateLevelsPayload(data: unknown): LevelsJobPayload {
  const d = checked(levelsPayloadSchema, data, 'levels job data');
  if (d.rows && d.rows.length !== d.windows) throw new PayloadError(`levels job data: field "rows" lists ${d.rows.length} windows, field "windows" says ${d.windows}`);
  if (d.key !== levelsJobKey(d.counts, d.windows, d.rows)) throw new PayloadError('levels job data: field "key" does not match its counts and windows');
  return { v: d.v, runId: d.runId, nonce: d.nonce, key: d.key, counts: d.counts, windows: d.windows, ...(d.rows ? { rows: d.rows } : {}) };
}

/** True when a job's data is a levels job (it has `counts`). */
export function isLevelsPayload(data: unknown): boolean {
  return data !== null && typeof data === 'object' && 'counts' in (data as object);
}

/** The parsed, validated structure of a DSA string form. */
export interface DsaStructure {
  pre: string[];
  reduce: string;
  scalar: string[];
}

/** Why a payload was refused (the job fails without retry and the coordinator reports the reason). */
export class PayloadError extends Error {
  override name = 'PayloadError';
}

const MAX_EXPRESSION = 200;
const MAX_KEY = 400;

/**
 * Parse the DSA string form strictly: `W:(P1[,P2])-(R)-(T1[,T2])[-(k)]` with names from the op tables only.
 * Throws PayloadError for anything else (unknown names, extra fields, code, paths).
 */
export function parseDsaStructure(text: string): DsaStructure {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_EXPRESSION) {
    throw new PayloadError(`expression must be a DSA string of at most ${MAX_EXPRESSION} characters`);
  }
  const m = /^W:\(([A-Z0-9_,]*)\)-\(([A-Z0-9_]+)\)-\(([A-Z0-9_,]+)\)(?:-\(([0-9.eE+-]{1,24})\))?$/.exec(text);
  if (!m) throw new PayloadError(`expression "${text.slice(0, 80)}" is not of the form W:(P…)-(R)-(T1[,T2])`);
  const pre = m[1] === '' ? [] : m[1].split(',').filter((p) => p !== 'NO_OP'); // NO_OP is inert, as in parseDsa
  const scalar = m[3].split(',');
  if (pre.length > 2) throw new PayloadError(`expression has ${pre.length} pre-process ops (at most 2)`);
  if (scalar.length > 2) throw new PayloadError(`expression has ${scalar.length} scalar ops (at most 2)`);
  for (const p of pre) if (!PRE_BY_NAME.has(p)) throw new PayloadError(`unknown pre-process op "${p}"`);
  if (!REDUCE_BY_NAME.has(m[2])) throw new PayloadError(`unknown reduction "${m[2]}"`);
  for (const s of scalar) if (!SCALAR_BY_NAME.has(s)) throw new PayloadError(`unknown scalar op "${s}"`);
  if (m[4] !== undefined && !Number.isFinite(Number(m[4]))) throw new PayloadError(`fourth field "${m[4]}" is not a number`);
  return { pre, reduce: m[2], scalar };
}

/** Run a schema; a failure is a PayloadError `<what>: <field problem>` (the job fails without retry). */
function checked<S extends v.GenericSchema>(schema: S, data: unknown, what: string): v.InferOutput<S> {
  const r = checkSchema(schema, data);
  if (!r.ok) throw new PayloadError(`${what}: ${r.problem.text}`);
  return r.value;
}

/** A BullMQ job's data: exactly these fields (an extra one is refused), each typed and bounded. */
export const payloadSchema = strictObj(
  {
    v: v.literal(PROTOCOL_VERSION, `protocol version ${PROTOCOL_VERSION} (the version this worker speaks)`),
    runId: v.pipe(v.string('a run id'), v.regex(RUN_ID_PATTERN, 'a run id (1–64 letters, digits, "-", "_")')),
    nonce: v.pipe(v.string('a nonce'), v.regex(/^[0-9a-f]{32}$/, 'a nonce (32 lowercase hex digits)')),
    key: v.pipe(v.string('a candidate key'), v.minLength(1, 'a non-empty candidate key'), v.maxLength(MAX_KEY, `a candidate key of at most ${MAX_KEY} characters`)),
    expression: v.string('a DSA string form W:(P…)-(R)-(T1[,T2])'),
    lambda: v.pipe(
      v.number(`a number in [${PAYLOAD_LAMBDA_LIMITS.min}, ${PAYLOAD_LAMBDA_LIMITS.max}]`),
      v.finite(`a number in [${PAYLOAD_LAMBDA_LIMITS.min}, ${PAYLOAD_LAMBDA_LIMITS.max}]`),
      v.minValue(PAYLOAD_LAMBDA_LIMITS.min, `a number in [${PAYLOAD_LAMBDA_LIMITS.min}, ${PAYLOAD_LAMBDA_LIMITS.max}]`),
      v.maxValue(PAYLOAD_LAMBDA_LIMITS.max, `a number in [${PAYLOAD_LAMBDA_LIMITS.min}, ${PAYLOAD_LAMBDA_LIMITS.max}]`),
    ),
  },
  'an object { v, runId, nonce, key, expression, lambda }',
);

/**
 * Validate a job's data (exact key set, types, ranges, op names). Returns the payload typed, or throws PayloadError
 * saying which field is wrong.
 */
export function validatePayload(data: unknown): JobPayload {
  const p = checked(payloadSchema, data, 'job data');
  parseDsaStructure(p.expression);
  return { v: p.v, runId: p.runId, nonce: p.nonce, key: p.key, expression: p.expression, lambda: p.lambda };
}

/**
 * What a spec's dense statistics hold: `gram` (the method's `needs.gram`), `sum` (a structured flap search: Σx next to
 * Σx², computeDense), or `sq` (Σx² only — the same entry for an unstructured search and a structured wanda-sp /
 * magnitude one on the same calibration, whose computeDense is the same pass).
 */
export function denseKind(spec: Pick<SearchSpec, 'method' | 'structured'>): 'gram' | 'sum' | 'sq' {
  if (spec.method === 'structured') return spec.structured?.score === 'flap' ? 'sum' : 'sq';
  return getMethod(spec.method).needs.gram ? 'gram' : 'sq';
}

const sha = v.pipe(v.string('a sha256'), v.regex(/^[0-9a-f]{0,64}$/, 'a sha256 (hex)'));

/** A SearchSpec read back from Redis: numbers, enums and ids only (no free-form field reaches a file path). */
export const specSchema = v.looseObject(
  {
    // A method name (built-in or registered by a plugin); whether this process knows it is the worker's question.
    method: v.pipe(v.string('a method name'), v.regex(/^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}$/, 'a method name (built-in or registered by --plugin)')),
    sparsity: v.pipe(v.number('a sparsity in [0, 1)'), v.minValue(0, 'a sparsity in [0, 1)'), v.ltValue(1, 'a sparsity in [0, 1)')),
    budget: v.picklist(['exact', 'reference'], 'exact or reference'),
    mode: v.picklist(['fast', 'faithful'], 'fast or faithful'),
    seed: v.pipe(v.number('a finite number'), v.finite('a finite number')),
    modelHash: v.pipe(v.string('a model hash'), v.regex(/^[0-9A-Za-z:_-]{1,128}$/, 'a model hash (1–128 of [0-9A-Za-z:_-])')),
    granularity: v.optional(v.picklist(['block', 'linear'], 'block or linear')),
    fitness: v.optional(v.picklist(['ppl', 'kl'], 'ppl or kl')),
    klTopK: v.optional(intIn('an integer in [1, 2^20]', 1, 1 << 20)),
    calibration: obj({ nsamples: intIn('an integer ≥ 0', 0), seqlen: intIn('an integer ≥ 1', 1), sha256: sha }, 'an object { nsamples, seqlen, sha256 }'),
    search: obj({ windows: intIn('an integer ≥ 0', 0), seqlen: intIn('an integer ≥ 1', 1), sha256: sha }, 'an object { windows, seqlen, sha256 }'),
    pattern: v.optional(
      v.union(
        [
          v.object({ kind: v.literal('unstructured') }),
          v.pipe(
            v.object({ kind: v.literal('nm'), n: v.pipe(v.number(), v.integer()), m: v.pipe(v.number(), v.integer()) }),
            v.check((p) => p.n < p.m, 'N < M'),
          ),
        ],
        '{ "kind": "unstructured" } or { "kind": "nm", "n", "m" } with N < M',
      ),
    ),
    // method `structured`: the per-block FFN widths search (structured-fitness.ts).
    structured: v.optional(
      obj({ target: v.literal('ffn', 'ffn'), score: v.picklist(['wanda-sp', 'magnitude', 'flap'], 'wanda-sp, magnitude or flap') }, 'an object { target: "ffn", score }'),
    ),
  },
  'an object',
);

/** Validate a SearchSpec read back from Redis; returns it as read (fields beyond the checked ones included). */
export function validateSpec(x: unknown): SearchSpec {
  checked(specSchema, x, 'run spec');
  return x as SearchSpec;
}

/** Evaluation as stored in the results hash (with the run id it was computed for). */
export interface StoredResult {
  runId: string;
  key: string;
  fitness: number | null;
  blockSparsity: number[];
  seconds: number;
  worker?: string;
}

/**
 * Atomic result write: only if the run exists with the nonce the worker was given (a stale worker holding an older
 * publication, or another run's job, cannot write), and only the first result per candidate (HSETNX).
 * KEYS[1] run hash, KEYS[2] results hash; ARGV[1] nonce, ARGV[2] candidate key, ARGV[3] result JSON.
 * Returns 1 written, 0 already present, -1 run missing or nonce mismatch.
 */
export const RESULT_SCRIPT = `
local nonce = redis.call('HGET', KEYS[1], 'nonce')
if (not nonce) or nonce ~= ARGV[1] then return -1 end
return redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
`;

/** JSON cannot carry Infinity/NaN: fitness is stored as null for "not finite" and read back as Infinity. */
export function encodeResult(r: StoredResult): string {
  return JSON.stringify({ ...r, fitness: Number.isFinite(r.fitness) ? r.fitness : null });
}

/** A result as a worker stored it (null fitness: not finite; null in blockSparsity: NaN). */
export const storedResultSchema = v.object(
  {
    runId: v.string('a run id'),
    key: v.string('a candidate key'),
    fitness: v.nullish(v.number('a number or null')),
    blockSparsity: v.array(numberOrNull(), 'an array of numbers, one per block'),
    seconds: v.number('a number'),
    worker: v.optional(v.string('a worker id')),
  },
  'an object',
);

/** Read a stored result back; a malformed entry is a PayloadError naming the field. */
export function decodeResult(text: string): StoredResult {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new PayloadError(`stored result is not JSON (${(e as Error).message})`);
  }
  const r = checked(storedResultSchema, data, 'stored result');
  const out: StoredResult = { runId: r.runId, key: r.key, fitness: r.fitness ?? Infinity, blockSparsity: r.blockSparsity, seconds: r.seconds };
  if (r.worker !== undefined) out.worker = r.worker;
  return out;
}

/** A worker's entry in the workers hash (its heartbeat, worker.ts `beat`). */
export interface WorkerInfo {
  modelHash: string;
  host: string;
  pid: number;
  /** Date.now() of the last heartbeat. */
  seen: number;
  jobs: number;
  concurrency?: number;
}

/** The workers hash's value schema: a worker of another version may write more fields (kept out of the output). */
export const workerInfoSchema = v.object(
  {
    modelHash: v.string('a model hash'),
    host: v.string('a host name'),
    pid: count('a process id'),
    seen: v.pipe(v.number('a time in ms since 1970'), v.finite('a time in ms since 1970')),
    jobs: count('a job count'),
    concurrency: v.optional(count('a concurrency')),
  },
  'an object { modelHash, host, pid, seen, jobs }',
);

/** Read a worker's heartbeat entry; a malformed one is a PayloadError naming the field. */
export function decodeWorkerInfo(text: string): WorkerInfo {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new PayloadError(`worker entry is not JSON (${(e as Error).message})`);
  }
  const w = checked(workerInfoSchema, data, 'worker entry');
  return { modelHash: w.modelHash, host: w.host, pid: w.pid, seen: w.seen, jobs: w.jobs, ...(w.concurrency !== undefined ? { concurrency: w.concurrency } : {}) };
}
