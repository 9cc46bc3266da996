/**
 * Calibration bench on bench-12l (128 × 512 calibration tokens, batch 8, onnxruntime threads = cores):
 * seconds of one plain forward through a raw onnxruntime session of the unmodified model, of the one-shot statistics
 * pass and of the sequential runner with a no-op prune (each with and without the Gram matrix), the ratios to the
 * plain forward, and the peak RSS of each case (every case runs in its own process so the peaks are its own).
 *
 *   npx tsx bench/calibration.bench.ts            # all cases, table on stdout
 *   npx tsx bench/calibration.bench.ts --json     # the same as JSON
 *   npx tsx bench/calibration.bench.ts --case forward|oneshot-sq|oneshot-gram|seq-sq|seq-gram|seq-sq-combined|…
 *   (sequential block graphs: `seq-*` the default 'gated', `-combined` one graph serving both passes — the code
 *   before the gate —, `-split` a statistics-only and an outputs-only session)
 *   npx tsx bench/calibration.bench.ts --nsamples 32 --cases forward,oneshot-sq,seq-sq   # fewer windows / cases
 */
import os from 'node:os';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { discoverLinears } from '../src/model/discover.js';
import { readModelFile, tensorToFloat32 } from '../src/model/onnx.js';
import { runCalibration, type CalibrationModel } from '../src/calibration/index.js';
import {
  BATCH, SEQLEN, calibrationWindows, casesArg, childCaseArg, haveBench12l, modelDir, nsamplesArg, peakRssMB, plainForward, runChildCase, timeCpu,
} from './bench12l.js';

const NSAMPLES = nsamplesArg();

export const CASES = ['forward', 'oneshot-sq', 'oneshot-gram', 'seq-sq', 'seq-gram', 'seq-sq-combined', 'seq-gram-combined', 'seq-sq-split', 'seq-gram-split'] as const;
export type CaseName = (typeof CASES)[number];
/** seconds = wall clock; cpuSeconds = user + system CPU of the process (all onnxruntime threads), robust to a busy machine. */
export interface CaseResult { name: CaseName; seconds: number; cpuSeconds: number; peakRssMB: number }

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
  const w = await calibrationWindows(NSAMPLES);
  const { seconds, cpuSeconds } = await timeCpu(() => timed(name, w, threads));
  return { seconds, cpuSeconds };
}

async function timed(name: CaseName, w: Int32Array, threads: number): Promise<void> {
  if (name === 'forward') return plainForward(w, NSAMPLES, threads);
  const m = loadModel();
  const gram = name.includes('gram');
  const mode = name.startsWith('seq') ? 'sequential' : 'oneshot';
  const blockGraphs = name.endsWith('-combined') ? 'combined' : name.endsWith('-split') ? 'split' : 'gated';
  await runCalibration(m, w, { nsamples: NSAMPLES, seqlen: SEQLEN, batchSize: BATCH, threads, mode, blockGraphs, needs: { sq: true, gram } }, () => {});
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (!haveBench12l('calibration')) return;
  const name = childCaseArg(CASES);
  if (name) {
    const { seconds, cpuSeconds } = await runCase(name);
    process.stdout.write(JSON.stringify({ name, seconds, cpuSeconds, peakRssMB: peakRssMB() } satisfies CaseResult) + '\n');
    return;
  }
  const results: CaseResult[] = [];
  const self = fileURLToPath(import.meta.url);
  for (const name of casesArg(CASES)) {
    results.push(runChildCase<CaseResult>(self, name, NSAMPLES));
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
