/**
 * Calibration bench on bench-12l (128 × 512 calibration tokens, batch 8, onnxruntime threads = cores):
 * seconds of one plain forward through a raw onnxruntime session of the unmodified model, of the one-shot statistics
 * pass and of the sequential runner with a no-op prune (each with and without the Gram matrix), the ratios to the
 * plain forward, and the peak RSS of each case (every case runs in its own process so the peaks are its own).
 *
 *   npx tsx bench/calibration.bench.ts            # all cases, table on stdout
 *   npx tsx bench/calibration.bench.ts --json     # the same as JSON
 *   npx tsx bench/calibration.bench.ts --case forward|oneshot-sq|oneshot-gram|seq-sq|seq-gram
 *   npx tsx bench/calibration.bench.ts --nsamples 32 --cases forward,oneshot-sq,seq-sq   # fewer windows / cases
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { buildFeeds } from '../src/eval/forward.js';
import { takeWindows, tokenizeText } from '../src/data/text.js';
import { discoverLinears } from '../src/model/discover.js';
import { readModelFile, tensorToFloat32 } from '../src/model/onnx.js';
import { runCalibration, type CalibrationModel } from '../src/calibration/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..');
const shared = path.resolve(repoRoot, '../shared');
const modelDir = path.join(shared, 'models/bench-12l');
const calibFile = path.join(shared, 'data/bench-corpus/calibration.txt');
/** `--nsamples N` (default 128, a multiple of the batch): fewer windows for a quicker run on a busy machine. */
const nsArg = process.argv.indexOf('--nsamples');
const NSAMPLES = nsArg >= 0 ? Number(process.argv[nsArg + 1]) : 128;
const SEQLEN = 512;
const BATCH = 8;

export const CASES = ['forward', 'oneshot-sq', 'oneshot-gram', 'seq-sq', 'seq-gram'] as const;
export type CaseName = (typeof CASES)[number];
/** seconds = wall clock; cpuSeconds = user + system CPU of the process (all onnxruntime threads), robust to a busy machine. */
export interface CaseResult { name: CaseName; seconds: number; cpuSeconds: number; peakRssMB: number }

async function windows(): Promise<Int32Array> {
  env.allowRemoteModels = false;
  const tok = await AutoTokenizer.from_pretrained(modelDir);
  const ids = tokenizeText(tok as unknown as Parameters<typeof tokenizeText>[0], readFileSync(calibFile, 'utf8'));
  return takeWindows(ids, SEQLEN, NSAMPLES, { purpose: 'calibration' });
}

function loadModel(): CalibrationModel {
  const onnxDir = path.join(modelDir, 'onnx');
  const proto = readModelFile(path.join(onnxDir, 'model.onnx'));
  const config = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const inits = new Map(proto.graph.initializer.map((t) => [t.name ?? '', t]));
  return {
    proto, config, source: { dir: modelDir, onnxPath: path.join(onnxDir, 'model.onnx') },
    linears: discoverLinears(proto.graph, { config }).linears,
    readInitializer: (name) => tensorToFloat32(inits.get(name)!, onnxDir),
  };
}

/** Run one case in this process; returns its wall-clock and CPU seconds (setup such as tokenization excluded). */
export async function runCase(name: CaseName, threads = os.availableParallelism()): Promise<{ seconds: number; cpuSeconds: number }> {
  const w = await windows();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await timed(name, w, threads);
  const c = process.cpuUsage(c0);
  return { seconds: (performance.now() - t0) / 1000, cpuSeconds: (c.user + c.system) / 1e6 };
}

async function timed(name: CaseName, w: Int32Array, threads: number): Promise<void> {
  if (name === 'forward') {
    const s = await ort.InferenceSession.create(path.join(modelDir, 'onnx/model.onnx'), {
      intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', logSeverityLevel: 3,
    });
    const config = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    for (let i = 0; i < NSAMPLES / BATCH; i++) {
      const ids = w.subarray(i * BATCH * SEQLEN, (i + 1) * BATCH * SEQLEN);
      await s.run(buildFeeds(s, ids, BATCH, SEQLEN, { config }), ['logits']);
    }
    await s.release();
    return;
  }
  const m = loadModel();
  const gram = name.endsWith('gram');
  const mode = name.startsWith('seq') ? 'sequential' : 'oneshot';
  await runCalibration(m, w, { nsamples: NSAMPLES, seqlen: SEQLEN, batchSize: BATCH, threads, mode, needs: { sq: true, gram } }, () => {});
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (!existsSync(modelDir) || !existsSync(calibFile)) {
    console.error(`calibration bench: ${modelDir} or ${calibFile} is missing; skipped`);
    return;
  }
  const ci = args.indexOf('--case');
  if (ci >= 0) {
    const name = args[ci + 1] as CaseName;
    if (!CASES.includes(name)) throw new Error(`unknown case ${name}; one of ${CASES.join(', ')}`);
    const { seconds, cpuSeconds } = await runCase(name);
    const peakRssMB = (process.resourceUsage().maxRSS * 1024) / 2 ** 20;
    process.stdout.write(JSON.stringify({ name, seconds, cpuSeconds, peakRssMB } satisfies CaseResult) + '\n');
    return;
  }
  const results: CaseResult[] = [];
  const self = fileURLToPath(import.meta.url);
  const ca = args.indexOf('--cases');
  const names = ca >= 0 ? (args[ca + 1]!.split(',') as CaseName[]) : [...CASES];
  if (names[0] !== 'forward') names.unshift('forward');
  for (const name of names) {
    const out = execFileSync(process.execPath, [...process.execArgv, self, '--case', name, '--nsamples', String(NSAMPLES)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const line = out.trim().split('\n').pop()!;
    results.push(JSON.parse(line) as CaseResult);
    if (!args.includes('--json')) console.error(`${name}: ${results.at(-1)!.seconds.toFixed(1)} s`);
  }
  const fwd = results[0]!;
  const rows = results.map((r) => ({ ...r, ratio: r.seconds / fwd.seconds, cpuRatio: r.cpuSeconds / fwd.cpuSeconds }));
  if (args.includes('--json')) {
    process.stdout.write(JSON.stringify({ model: 'bench-12l', nsamples: NSAMPLES, seqlen: SEQLEN, batch: BATCH, threads: os.availableParallelism(), cases: rows }, null, 2) + '\n');
    return;
  }
  console.log(`bench-12l, ${NSAMPLES} × ${SEQLEN} tokens, batch ${BATCH}, ${os.availableParallelism()} threads`);
  console.log('| case | seconds | × plain forward | CPU seconds | CPU × plain forward | peak RSS MB |\n|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.name} | ${r.seconds.toFixed(1)} | ${r.ratio.toFixed(2)} | ${r.cpuSeconds.toFixed(1)} | ${r.cpuRatio.toFixed(2)} | ${r.peakRssMB.toFixed(0)} |`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
