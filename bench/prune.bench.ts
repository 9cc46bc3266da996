/**
 * Prune bench on bench-12l (128 × 512 calibration tokens, batch 8, onnxruntime threads = cores): wall and CPU seconds of
 * pruneModel — magnitude, sequential Wanda and sequential SparseGPT at 70 % unstructured, uniform, budget 'reference',
 * exactly as a user runs them on a model loaded with loadModelDir — its phases from the prune report, the peak RSS
 * (each case in its own process), the realised sparsity, the ratio to one plain forward (bench12l.ts, the same
 * definition as calibration.bench.ts) and the speedup over the PyTorch CPU reference
 * (../shared/reference/README.md, measured with 128 windows on a 2-core machine).
 * Model loading and tokenization are outside the timed region.
 *
 *   npx tsx bench/prune.bench.ts                         # forward, magnitude, wanda, sparsegpt; markdown on stdout
 *   npx tsx bench/prune.bench.ts --json                  # the same as JSON
 *   npx tsx bench/prune.bench.ts --cases wanda,sparsegpt-2:4 --nsamples 8   # fewer cases / windows (quick run)
 *   npx tsx bench/prune.bench.ts --cases sparsegpt,sparsegpt-ts          # SparseGPT with / without the onnxruntime kernels
 *   npm run bench -- prune                               # through bench/run.ts (rows into bench/results/)
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pruneModel, type PruneReport } from '../src/prune.js';
import { loadModelDir } from '../src/model/index.js';
import { configureBlas } from '../src/model/blas.js';
import { disableAutoPrint, ratio, record, value } from './harness.js';
import {
  BATCH, SEQLEN, calibrationWindows, casesArg, childCaseArg, haveBench12l, modelDir, nsamplesArg, peakRssMB, plainForward, runChildCase, timeCpu,
} from './bench12l.js';

const NSAMPLES = nsamplesArg();
const SPARSITY = 0.7;

/**
 * `sparsegpt-2:4` and `sparsegpt-ts` (SparseGPT with the onnxruntime kernels off, `configureBlas({ enabled: false })`:
 * the TypeScript-only Cholesky / inverse and lazy updates, for before/after comparisons) run only when asked for with --cases.
 */
export const CASES = ['forward', 'magnitude', 'wanda', 'sparsegpt', 'sparsegpt-2:4', 'sparsegpt-ts'] as const;
const DEFAULT_CASES: readonly CaseName[] = ['forward', 'magnitude', 'wanda', 'sparsegpt'];
export type CaseName = (typeof CASES)[number];

/** Issue #4 targets: seconds / one plain forward. */
const TARGET: Partial<Record<CaseName, number>> = { wanda: 2.2, sparsegpt: 3.5, 'sparsegpt-ts': 3.5 };
/** PyTorch CPU reference seconds, 128 × 512 tokens, 2 threads (../shared/reference/README.md). */
const PYTORCH: Partial<Record<CaseName, number>> = { forward: 78.7, wanda: 232.8, sparsegpt: 319.5 };

export interface CaseResult {
  name: CaseName;
  /** pruneModel (or the forward) wall seconds. */
  seconds: number;
  /** User + system CPU seconds of the process over the same region. */
  cpuSeconds: number;
  /** Lifetime peak RSS of the case's process (model load included). */
  peakRssMB: number;
  /** Model load (not timed) and the RSS right after it, so the prune's own memory shows. */
  loadSeconds?: number;
  loadedRssMB?: number;
  phases?: PruneReport['seconds'];
  realizedSparsity?: number;
}

function pruneOptions(name: Exclude<CaseName, 'forward'>, ids: Int32Array, threads: number) {
  const nm = name === 'sparsegpt-2:4';
  return {
    method: nm || name === 'sparsegpt-ts' ? 'sparsegpt' : name, sparsity: nm ? 0.5 : SPARSITY, pattern: nm ? '2:4' : 'unstructured',
    budget: 'reference' as const, mode: 'sequential' as const,
    calibration: { ids }, nsamples: NSAMPLES, seqlen: SEQLEN, batchSize: BATCH, threads,
  };
}

/** Run one case in this process (tokenization and model load excluded from the timing). */
export async function runCase(name: CaseName, threads = os.availableParallelism()): Promise<CaseResult> {
  const w = await calibrationWindows(NSAMPLES);
  if (name === 'forward') {
    const { seconds, cpuSeconds } = await timeCpu(() => plainForward(w, NSAMPLES, threads));
    return { name, seconds, cpuSeconds, peakRssMB: peakRssMB() };
  }
  if (name === 'sparsegpt-ts') configureBlas({ enabled: false });
  const load = await timeCpu(() => loadModelDir(modelDir, { threads }));
  const loadedRssMB = process.memoryUsage.rss() / 2 ** 20;
  const { result: report, seconds, cpuSeconds } = await timeCpu(() => pruneModel(load.result.model, pruneOptions(name, w, threads)));
  await load.result.model.dispose?.();
  return {
    name, seconds, cpuSeconds, peakRssMB: peakRssMB(), loadSeconds: load.seconds, loadedRssMB,
    phases: report.seconds, realizedSparsity: report.realizedSparsity,
  };
}

const f = (v: number | undefined, d = 1) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (!haveBench12l('prune')) return;
  const name = childCaseArg(CASES);
  if (name) {
    process.stdout.write(JSON.stringify(await runCase(name)) + '\n');
    return;
  }
  const names = args.includes('--cases') ? casesArg(CASES) : [...DEFAULT_CASES];
  const self = fileURLToPath(import.meta.url);
  const results: CaseResult[] = [];
  for (const name of names) {
    results.push(runChildCase<CaseResult>(self, name, NSAMPLES));
    if (!args.includes('--json')) console.error(`${name}: ${results.at(-1)!.seconds.toFixed(1)} s`);
  }
  const fwd = results[0]!;
  // The PyTorch figures are for 128 windows: a speedup from a shorter run would mean nothing.
  const comparable = NSAMPLES === 128;
  const rows = results.map((r) => ({
    ...r,
    ratio: r.seconds / fwd.seconds,
    cpuRatio: r.cpuSeconds / fwd.cpuSeconds,
    target: TARGET[r.name],
    speedup: comparable && PYTORCH[r.name] ? PYTORCH[r.name]! / r.seconds : undefined,
  }));

  // Rows for bench/run.ts (bench/results/<day>.json); the markdown below is this file's own output.
  disableAutoPrint();
  const notes = `bench-12l, ${NSAMPLES} × ${SEQLEN}, batch ${BATCH}, ${os.availableParallelism()} threads`;
  const fwdRow = record({ name: 'forward', seconds: fwd.seconds, peakRssMB: fwd.peakRssMB, maxRssMB: fwd.peakRssMB, notes });
  for (const r of rows.slice(1)) {
    const t = record({ name: `prune ${r.name}`, seconds: r.seconds, peakRssMB: r.peakRssMB, maxRssMB: r.peakRssMB, notes });
    ratio(`prune ${r.name} / forward`, t, fwdRow);
    value(`prune ${r.name} CPU`, r.cpuSeconds, 's');
    value(`prune ${r.name} realised sparsity`, r.realizedSparsity ?? Number.NaN);
    if (r.speedup !== undefined) value(`prune ${r.name} speedup vs PyTorch`, r.speedup, '×', `PyTorch ${PYTORCH[r.name]} s`);
  }

  if (args.includes('--json')) {
    process.stdout.write(JSON.stringify({ model: 'bench-12l', nsamples: NSAMPLES, seqlen: SEQLEN, batch: BATCH, threads: os.availableParallelism(), cases: rows }, null, 2) + '\n');
    return;
  }
  console.log(`${notes}; ${SPARSITY * 100} % unstructured (2:4 at 50 %), uniform, budget 'reference', sequential`);
  console.log('| case | seconds | × plain forward | target | CPU seconds | CPU × plain forward | peak RSS MB | PyTorch / ours | realised sparsity |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.name} | ${f(r.seconds)} | ${f(r.ratio, 2)} | ${r.target ? `≤ ${r.target}` : '-'} | ${f(r.cpuSeconds)} | ${f(r.cpuRatio, 2)} | ${f(r.peakRssMB, 0)} | ${f(r.speedup, 2)} | ${f(r.realizedSparsity, 4)} |`);
  }
  if (!comparable) console.log(`(PyTorch / ours only at --nsamples 128: the reference figures are for 128 windows)`);
  console.log('\n| phases, seconds (prune report) | calibration | prune | allocation | commit | model load (untimed) | RSS after load MB |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows.slice(1)) {
    const p = r.phases;
    console.log(`| ${r.name} | ${f(p?.calibration)} | ${f(p?.prune)} | ${f(p?.allocation, 2)} | ${f(p?.commit, 2)} | ${f(r.loadSeconds)} | ${f(r.loadedRssMB, 0)} |`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
