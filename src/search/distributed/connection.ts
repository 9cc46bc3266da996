/**
 * Redis URLs and connections for the distributed search: `redis://[user][:password]@host[:port][/db]` and
 * `rediss://…` (TLS), a redacted form for messages, and a connect-with-back-off that turns "Redis unreachable" into
 * one clear DsaPruneError instead of an endless reconnect loop.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { DsaPruneError, EXIT, abortedError } from '../../errors.js';

// ioredis is CommonJS and is what BullMQ itself loads; a type-only view of the little we use keeps us independent of
// its typings.
/** The subset of an ioredis client the distributed search uses. */
export interface RedisClient {
  status: string;
  ping(): Promise<string>;
  get(key: string): Promise<string | null>;
  set(key: string, value: string | Buffer, ...args: (string | number)[]): Promise<unknown>;
  del(...keys: string[]): Promise<number>;
  exists(...keys: string[]): Promise<number>;
  expire(key: string, seconds: number): Promise<number>;
  hget(key: string, field: string): Promise<string | null>;
  hgetBuffer(key: string, field: string): Promise<Buffer | null>;
  hmget(key: string, ...fields: string[]): Promise<(string | null)[]>;
  hset(key: string, ...args: (string | Buffer | number)[]): Promise<number>;
  hgetall(key: string): Promise<Record<string, string>>;
  hlen(key: string): Promise<number>;
  hdel(key: string, ...fields: string[]): Promise<number>;
  hincrby(key: string, field: string, by: number): Promise<number>;
  getBuffer(key: string): Promise<Buffer | null>;
  eval(script: string, numKeys: number, ...args: (string | number | Buffer)[]): Promise<unknown>;
  quit(): Promise<unknown>;
  disconnect(): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
  duplicate(): RedisClient;
}

/** ioredis connection options derived from a URL (also accepted by BullMQ's `connection`). */
export interface RedisOptions {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
  tls?: { servername?: string; ca?: string };
  /** Required null by BullMQ workers (blocking commands); requests wait for reconnection. */
  maxRetriesPerRequest: number | null;
  retryStrategy: (times: number) => number | null;
  connectTimeout: number;
  lazyConnect: boolean;
  enableReadyCheck: boolean;
}

/** A parsed Redis URL. */
export interface RedisTarget {
  /** Connection options for ioredis / BullMQ. */
  options: RedisOptions;
  /** The URL with the password replaced by `***`, for messages and logs. */
  display: string;
}

/**
 * Parse `redis://` / `rediss://` URLs. The password may be given in the URL or (better, it stays out of `ps`) in the
 * `REDIS_PASSWORD` environment variable, which fills it in when the URL has none. With rediss://, the server
 * certificate is verified against the system CAs, or against the PEM file named by `REDIS_TLS_CA` (a private CA).
 */
export function parseRedisUrl(url: string, env: NodeJS.ProcessEnv = process.env): RedisTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new DsaPruneError(`--redis "${url}" is not a URL`, {
      hint: 'Use redis://[:password@]host[:port][/db] or rediss://… for TLS, e.g. redis://127.0.0.1:6379',
      exitCode: EXIT.badInput,
    });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new DsaPruneError(`--redis "${redactUrl(url)}" has scheme ${u.protocol.replace(':', '')}, expected redis or rediss`, {
      hint: 'Use redis://host:port for plain TCP or rediss://host:port for TLS.',
      exitCode: EXIT.badInput,
    });
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
  const port = u.port === '' ? 6379 : Number(u.port);
  const dbText = u.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0 || db > 15) {
    throw new DsaPruneError(`--redis "${redactUrl(url)}": database "${dbText}" must be an integer 0..15`, {
      hint: 'The path of a Redis URL selects the database: redis://host:6379/0',
      exitCode: EXIT.badInput,
    });
  }
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  let password = u.password ? decodeURIComponent(u.password) : undefined;
  if (password === undefined && env.REDIS_PASSWORD) password = env.REDIS_PASSWORD;
  const options: RedisOptions = {
    host,
    port,
    db,
    maxRetriesPerRequest: null,
    // Reconnect with back-off (0.1 s … 2 s). Reaching the server at all is checked once, up front, by connectRedis.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    connectTimeout: 5000,
    lazyConnect: true,
    enableReadyCheck: true,
  };
  if (username) options.username = username;
  if (password !== undefined) options.password = password;
  if (u.protocol === 'rediss:') {
    // SNI only for names (RFC 6066 forbids IP addresses); the certificate is still checked against the IP.
    options.tls = isIP(host) ? {} : { servername: host };
    const caFile = env.REDIS_TLS_CA;
    if (caFile) {
      try {
        options.tls.ca = readFileSync(caFile, 'utf8');
      } catch (e) {
        throw new DsaPruneError(`REDIS_TLS_CA=${caFile} cannot be read: ${(e as Error).message}`, {
          hint: 'Point REDIS_TLS_CA at the PEM file of the CA that signed the Redis server certificate.',
          exitCode: EXIT.badInput,
        });
      }
    }
  }
  return { options, display: redactUrl(url) };
}

/** The URL with any password replaced by `***`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url.replace(/\/\/([^@/]*):[^@/]*@/, '//$1:***@');
  }
}

type RedisCtor = new (options: RedisOptions) => RedisClient;
let ctor: RedisCtor | undefined;
function loadIoredis(): RedisCtor {
  if (ctor) return ctor;
  const require = createRequire(import.meta.url);
  try {
    const mod = require('ioredis') as RedisCtor & { default?: RedisCtor };
    ctor = mod.default ?? mod;
    return ctor;
  } catch (e) {
    throw new DsaPruneError('the distributed search needs the "ioredis" package, which is not installed', { code: 'dependency-missing',
      hint: 'Install it next to dsa-prune: npm install ioredis',
      exitCode: EXIT.failure,
      cause: e,
    });
  }
}

/** BullMQ, loaded on first use: importing `dsa-prune/distributed` (or the CLI) does not load it or ioredis. */
export type BullMq = typeof import('bullmq');
let bullmq: Promise<BullMq> | undefined;
export function loadBullmq(): Promise<BullMq> {
  bullmq ??= import('bullmq').catch((e: unknown) => {
    bullmq = undefined;
    throw new DsaPruneError('the distributed search needs the "bullmq" package, which could not be loaded', { code: 'dependency-missing',
      hint: 'Install it next to dsa-prune: npm install bullmq',
      exitCode: EXIT.failure,
      cause: e,
    });
  });
  return bullmq;
}

/** True when the ioredis package can be loaded (tests skip otherwise). */
export function ioredisAvailable(): boolean {
  try {
    loadIoredis();
    return true;
  } catch {
    return false;
  }
}

/** Options of connectRedis. */
export interface ConnectOptions {
  /** Connection attempts before giving up (default 6: about 6 s of back-off in total). */
  attempts?: number;
  /** First back-off delay in ms, doubled after each failure (default 200). */
  backoffMs?: number;
  /** Called before each retry (for progress messages). */
  onRetry?: (attempt: number, error: Error, delayMs: number) => void;
  signal?: AbortSignal;
}

/**
 * Open a client and make sure the server answers PING, retrying with exponential back-off. After the last attempt the
 * failure is a DsaPruneError naming the (redacted) URL and the cause (refused, timeout, authentication, TLS).
 */
export async function connectRedis(target: RedisTarget, options: ConnectOptions = {}): Promise<RedisClient> {
  const Redis = loadIoredis();
  const attempts = options.attempts ?? 6;
  let delay = options.backoffMs ?? 200;
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    // No automatic reconnection while probing: one attempt is one connection.
    const client = new Redis({ ...target.options, retryStrategy: () => null });
    let emitted: Error | undefined;
    client.on('error', (e) => {
      emitted = e as Error; // the real cause (WRONGPASS, ECONNREFUSED, TLS); connect() itself only says "closed"
    });
    try {
      await (client as unknown as { connect(): Promise<void> }).connect();
      await client.ping();
      client.disconnect();
      const live = new Redis(target.options);
      live.on('error', () => {
        /* ioredis reconnects by itself; callers bound their own waits */
      });
      await (live as unknown as { connect(): Promise<void> }).connect();
      return live;
    } catch (e) {
      lastError = emitted ?? (e as Error);
      client.disconnect();
      if (isPermanent(lastError)) break; // a wrong password or an untrusted certificate does not get better by retrying
      if (attempt < attempts) {
        options.onRetry?.(attempt, lastError, delay);
        await sleep(delay, options.signal);
        delay *= 2;
      }
    }
  }
  throw unreachable(target, lastError, attempts);
}

function isPermanent(e: Error): boolean {
  return isAuthError(e) || /certificate|self.signed/i.test(e.message);
}

function isAuthError(e: Error): boolean {
  return /NOAUTH|WRONGPASS|invalid password|invalid username/i.test(e.message);
}

/** The DsaPruneError for a Redis server that cannot be reached or refuses us. */
export function unreachable(target: RedisTarget, cause: Error | undefined, attempts: number): DsaPruneError {
  const why = cause?.message ?? 'no answer';
  if (cause && /certificate|self.signed|SSL|TLS|wrong version number|EPROTO/i.test(cause.message)) {
    return new DsaPruneError(`TLS connection to Redis at ${target.display} failed: ${why}`, { code: 'remote',
      hint:
        'For a server certificate from a private CA, set REDIS_TLS_CA to that CA\'s PEM file; use rediss:// only for a ' +
        'TLS port and redis:// for a plain one.',
      exitCode: EXIT.failure,
      cause,
    });
  }
  if (cause && isAuthError(cause)) {
    return new DsaPruneError(`Redis at ${target.display} refused the credentials: ${why}`, { code: 'remote',
      hint: 'Give the password in the URL (redis://:PASSWORD@host:port) or in the REDIS_PASSWORD environment variable.',
      exitCode: EXIT.badInput,
      cause,
    });
  }
  return new DsaPruneError(`cannot reach Redis at ${target.display} after ${attempts} attempts: ${why}`, { code: 'remote',
    hint:
      'Check that redis-server is running and reachable from this machine (host, port, firewall, bind address), ' +
      'and use rediss:// if the server requires TLS.',
    exitCode: EXIT.failure,
    cause,
  });
}

/** Sleep that ends early (with an abort error) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError());
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(abortError());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The error thrown when a distributed wait is aborted (Ctrl-C). */
export function abortError(): DsaPruneError {
  return abortedError('distributed evaluation aborted');
}
