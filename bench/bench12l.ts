/**
 * What the bench-12l case files share (calibration.bench.ts, prune.bench.ts): the model and calibration paths, the
 * calibration windows, THE plain-forward baseline every ratio divides by, wall + CPU timing of one case, and running a
 * case in its own child process so its peak RSS is its own.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { buildFeeds } from '../src/model/feeds.js';
import { takeWindows, tokenizeText } from '../src/data/text.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const shared = path.resolve(here, '../../shared');
export const modelDir = path.join(shared, 'models/bench-12l');
export const calibFile = path.join(shared, 'data/bench-corpus/calibration.txt');
export const SEQLEN = 512;
export const BATCH = 8;

/** `--nsamples N` (default 128, a multiple of the batch): fewer windows for a quicker run on a busy machine. */
export function nsamplesArg(argv = process.argv): number {
  const i = argv.indexOf('--nsamples');
  return i >= 0 ? Number(argv[i + 1]) : 128;
}

/** `--cases a,b` (default: all), always with `forward` first: every ratio is to the forward of the same run. */
export function casesArg<T extends string>(all: readonly T[], argv = process.argv): T[] {
  const i = argv.indexOf('--cases');
  const names = i >= 0 ? (argv[i + 1]!.split(',') as T[]) : [...all];
  for (const n of names) if (!all.includes(n)) throw new Error(`unknown case ${n}; one of ${all.join(', ')}`);
  if (names[0] !== 'forward') names.unshift('forward' as T);
  return [...new Set(names)];
}

/** `--case name` (a child process running one case), validated against `all`; undefined in the parent. */
export function childCaseArg<T extends string>(all: readonly T[], argv = process.argv): T | undefined {
  const i = argv.indexOf('--case');
  if (i < 0) return undefined;
  const name = argv[i + 1] as T;
  if (!all.includes(name)) throw new Error(`unknown case ${name}; one of ${all.join(', ')}`);
  return name;
}

/** Whether the shared model and corpus are there (the benches skip, not fail, without them). */
export function haveBench12l(what: string): boolean {
  if (existsSync(modelDir) && existsSync(calibFile)) return true;
  console.error(`${what} bench: ${modelDir} or ${calibFile} is missing; skipped`);
  return false;
}

/** The first `nsamples` windows of SEQLEN tokens of the calibration file (the reference protocol). */
export async function calibrationWindows(nsamples: number): Promise<Int32Array> {
  env.allowRemoteModels = false;
  const tok = await AutoTokenizer.from_pretrained(modelDir);
  const ids = tokenizeText(tok as unknown as Parameters<typeof tokenizeText>[0], readFileSync(calibFile, 'utf8'));
  return takeWindows(ids, SEQLEN, nsamples, { purpose: 'calibration' });
}

/**
 * One plain forward: the unmodified model in a raw onnxruntime session (threads = cores by default), the windows in
 * batches of BATCH, logits fetched. The denominator of every "× plain forward" ratio.
 */
export async function plainForward(w: Int32Array, nsamples: number, threads = os.availableParallelism()): Promise<void> {
  const s = await ort.InferenceSession.create(path.join(modelDir, 'onnx/model.onnx'), {
    intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', logSeverityLevel: 3,
  });
  const config = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  for (let i = 0; i < nsamples / BATCH; i++) {
    const ids = w.subarray(i * BATCH * SEQLEN, (i + 1) * BATCH * SEQLEN);
    await s.run(buildFeeds(s, ids, BATCH, SEQLEN, { config }), ['logits']);
  }
  await s.release();
}

/** Wall and CPU (user + system, all onnxruntime threads: robust to a busy machine) seconds of `fn`. */
export async function timeCpu<T>(fn: () => Promise<T>): Promise<{ result: T; seconds: number; cpuSeconds: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await fn();
  const c = process.cpuUsage(c0);
  return { result, seconds: (performance.now() - t0) / 1000, cpuSeconds: (c.user + c.system) / 1e6 };
}

/** The process's lifetime peak RSS in MB. */
export function peakRssMB(): number {
  return (process.resourceUsage().maxRSS * 1024) / 2 ** 20;
}

/**
 * Run `file --case name --nsamples n` under the same loader (tsx) in a child process and parse the JSON object it
 * prints as its last stdout line. The child's stderr passes through.
 */
export function runChildCase<R>(file: string, name: string, nsamples: number): R {
  const out = execFileSync(process.execPath, [...process.execArgv, file, '--case', name, '--nsamples', String(nsamples)], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 2 ** 20,
  });
  return JSON.parse(out.trim().split('\n').pop()!) as R;
}

/** Session options of the speed benches: every core for one run at a time, full graph optimisation, quiet. */
export const benchSessionOptions = (): ort.InferenceSession.SessionOptions => ({
  intraOpNumThreads: os.availableParallelism(), interOpNumThreads: 1, graphOptimizationLevel: 'all', logSeverityLevel: 3,
});

/**
 * Tokens/s of plain onnxruntime forwards of batch × seqlen tokens of two model folders (dense and pruned), both
 * sessions open together and run alternately (one warm-up each), best of `reps`: on a loaded machine the fastest run
 * is the least disturbed one, and load hits both alike. `configs` feed each model (head pruning changes its config).
 */
export async function alternatingForwardTps(
  dirs: [string, string], ids: Int32Array,
  o: { batch: number; seqlen: number; configs: [Record<string, unknown>, Record<string, unknown>]; reps: number },
): Promise<[number, number]> {
  const sessions = await Promise.all(dirs.map((d) => ort.InferenceSession.create(path.join(d, 'onnx/model.onnx'), benchSessionOptions())));
  const feeds = sessions.map((s, k) => buildFeeds(s, ids.subarray(0, o.batch * o.seqlen), o.batch, o.seqlen, { config: o.configs[k] }));
  for (let k = 0; k < 2; k++) await sessions[k]!.run(feeds[k]!, ['logits']);
  const best = [Infinity, Infinity];
  for (let r = 0; r < o.reps; r++) {
    for (let k = 0; k < 2; k++) {
      const t0 = performance.now();
      await sessions[k]!.run(feeds[k]!, ['logits']);
      best[k] = Math.min(best[k]!, (performance.now() - t0) / 1000);
    }
  }
  for (const s of sessions) await s.release();
  return [(o.batch * o.seqlen) / best[0]!, (o.batch * o.seqlen) / best[1]!];
}
