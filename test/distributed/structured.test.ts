/**
 * `search --method structured --redis` (per-block FFN widths on `dsa-prune worker` processes): the dense-statistics
 * codec carries flap's Σx, the dense key tells the kinds apart, and on loopback (stories260k, 2 worker processes) a
 * flap search through the CLI gives the local search's history, evaluation for evaluation, with the same seed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeDense, encodeDense } from '../../src/search/distributed/dense-codec.js';
import { denseKind, keys, validateSpec } from '../../src/search/distributed/protocol.js';
import { run as searchCli } from '../../src/cli/commands/search.js';
import { memoryIo } from '../../src/cli/io.js';
import type { DenseData } from '../../src/search/fitness.js';
import { redisSkipReason, startRedis, type TestRedis } from './redis-server.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const modelDir = path.join(repoRoot, 'models/stories260k');
const skip = redisSkipReason();
if (skip) console.warn(`[distributed structured] skipped: ${skip}`);

describe('structured specs on the queue: codec and keys', () => {
  it('the dense codec keeps Σx (flap) bit for bit, and entries without it stay without it', () => {
    const d: DenseData = {
      blocks: [{ index: 0, params: 6, linears: [{ name: 'a', role: 'down', params: 6 }], z: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
      stats: new Map([
        ['a', { sq: Float64Array.from([1.5, 2.25, Math.PI]), sum: Float64Array.from([-0.1, 1e-300, 7]), nsamples: 2, tokens: 10 }],
        ['b', { sq: Float64Array.from([4]), nsamples: 2, tokens: 10 }],
      ]),
    } as unknown as DenseData;
    const back = decodeDense(encodeDense(d));
    expect(Array.from(back.stats.get('a')!.sum!)).toEqual([-0.1, 1e-300, 7]);
    expect(Array.from(back.stats.get('a')!.sq)).toEqual([1.5, 2.25, Math.PI]);
    expect(back.stats.get('b')!.sum).toBeUndefined();
  });

  it('dense keys: flap has its own entry; wanda-sp / magnitude share the unstructured Σx² one; the spec schema checks the structured part', () => {
    const base = { modelHash: 'h', calibration: { nsamples: 1, seqlen: 2, sha256: 'ab' } };
    expect(denseKind({ method: 'structured', structured: { target: 'ffn', score: 'flap' } })).toBe('sum');
    expect(denseKind({ method: 'structured', structured: { target: 'ffn', score: 'wanda-sp' } })).toBe('sq');
    expect(denseKind({ method: 'sparsegpt' })).toBe('gram');
    expect(keys.dense('p', { ...base, method: 'structured', structured: { target: 'ffn', score: 'wanda-sp' } })).toBe(keys.dense('p', { ...base, method: 'wanda' }));
    expect(keys.dense('p', { ...base, method: 'structured', structured: { target: 'ffn', score: 'flap' } })).not.toBe(keys.dense('p', { ...base, method: 'wanda' }));
    const spec = { method: 'structured', sparsity: 0.2, budget: 'exact', mode: 'fast', seed: 1, modelHash: 'h', calibration: base.calibration, search: { windows: 1, seqlen: 2, sha256: 'ab' } };
    expect(validateSpec({ ...spec, structured: { target: 'ffn', score: 'flap' } }).structured).toEqual({ target: 'ffn', score: 'flap' });
    expect(() => validateSpec({ ...spec, structured: { target: 'heads', score: 'flap' } })).toThrow(/structured/);
    expect(() => validateSpec({ ...spec, structured: { target: 'ffn', score: 'snip' } })).toThrow(/structured/);
  });
});

function spawnWorker(url: string): Promise<{ child: ChildProcess; log: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--redis', url, '--model', modelDir, '--threads', '1', '--lock-seconds', '3', '--verbose'], {
    cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (/worker \S+ serving/.test(log)) resolve({ child, log: () => log });
    });
    child.once('exit', (code) => reject(new Error(`worker exited with ${code} before serving:\n${log}`)));
  });
}

describe.skipIf(skip !== undefined)('search --method structured --redis on loopback (stories260k, 2 worker processes)', () => {
  let redis: TestRedis;
  const workers: { child: ChildProcess; log: () => string }[] = [];
  let calib: string;
  beforeAll(async () => {
    redis = await startRedis();
    const dir = mkdtempSync(path.join(tmpdir(), 'dsa-sredis-'));
    calib = path.join(dir, 'calib.txt');
    writeFileSync(calib, readFileSync(path.join(repoRoot, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 25000));
    workers.push(...(await Promise.all([0, 1].map(() => spawnWorker(redis.url)))));
  }, 120_000);
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    await redis?.stop();
  });

  it('a flap search on the workers = the same search run locally (every evaluation), the workers used the shared Σx', async () => {
    const args = [modelDir, '--method', 'structured', '--target', 'ffn', '--score', 'flap', '--sparsity', '0.2', '--calibration', calib,
      '--nsamples', '4', '--seqlen', '128', '--search-windows', '2', '--population', '4', '--evals', '8', '--seed', '4', '--no-final', '--json'];
    const local = memoryIo();
    expect(await searchCli([...args, '--workers', '1', '--threads', '1'], local)).toBe(0);
    const dist = memoryIo();
    expect(await searchCli([...args, '--redis', redis.url, '--run-id', 'structured-flap'], dist)).toBe(0);
    const a = JSON.parse(local.stdoutText) as { history: { expression: string; lambda: number; fitness: number }[]; best: unknown; structured: unknown };
    const b = JSON.parse(dist.stdoutText) as typeof a;
    expect(b.structured).toEqual({ target: 'ffn', score: 'flap' });
    expect(b.history.map((h) => [h.expression, h.lambda, h.fitness])).toEqual(a.history.map((h) => [h.expression, h.lambda, h.fitness]));
    expect(b.best).toEqual(a.best);
    expect(b.history.some((h) => Number.isFinite(h.fitness))).toBe(true);
    expect(workers.map((w) => w.log()).join('\n')).toMatch(/dense statistics fetched from Redis/);
  }, 300_000);
});
