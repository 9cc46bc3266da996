/**
 * Short comparison on bench-12l, Wanda 70 % unstructured, exact budget (issue #16): per-block vs per-linear, ppl vs
 * KL fitness, dsa vs levels, each with the same small evaluation budget and the same search split (the calibration
 * text after the calibration windows, never the SOTU file). The best candidate of each run is re-applied with the
 * faithful sequential prune and scored on SOTU. Not in CI (needs ../shared).
 *
 *   npx tsx scripts/search-compare.ts [--evals 40] [--windows 8] [--minutes 8] [configs…]
 *   configs: block-ppl linear-ppl linear-kl levels-linear-kl levels-block-kl uniform owl (default: all)
 *   --tag <t>: store the runs as <config>-<t> (and their chart as docs/search-compare-<config>-<t>.svg), next to earlier ones
 *   --offspring <λ> (levels, default 8), --seed <n> (default 1)
 *   levels only: --sampling fixed|resample, --switches uniform|evopress, --stages 1:8,2:2,4:1 (windows:keep),
 *   --start <allocator> (as prune --allocator, e.g. owl or dsa:<expr>; --start-lambda <λ>), --window-evals <n> (budget in window forwards:
 *   --evals = n / --windows, so runs with other --windows get the same forward tokens), --val-windows <n> (default 8:
 *   the fast KL of the best allocation on windows 64 … 64 + n of the search split, never searched on)
 * Results: docs/search-compare.json (TARGETS_OUT overrides), per-linear profile chart docs/search-compare-profile.svg.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModelDir } from '../src/model/index.js';
import { pruneModel } from '../src/prune.js';
import { readTextFile, tokenizeText, type TextTokenizer } from '../src/data/text.js';
import { perplexity } from '../src/eval/perplexity.js';
import { computeDense, createFitness, idsSha256, searchLinears } from '../src/search/fitness.js';
import { loadavg } from 'node:os';
import { searchModel } from '../src/search/run.js';
import { atGranularity, dsa, explicit, owl, parseAllocatorSpec, uniform, type Allocator } from '../src/allocators/index.js';
import type { SearchSpec } from '../src/search/types.js';
import { linearProfileChart } from '../src/report/profile-chart.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(repo, '../shared');
const modelDir = path.join(shared, 'models/bench-12l');
const calFile = path.join(shared, 'data/bench-corpus/calibration.txt');
const sotuFile = path.join(shared, 'data/bench-corpus/eval_sotu_2001_2021.txt');
const resultsFile = path.resolve(repo, process.env.TARGETS_OUT ?? 'docs/search-compare.json');
const NS = Number(process.env.NSAMPLES ?? 128);
const SEQ = 512;
const S = 0.7;

const argv = process.argv.slice(2);
const flag = (name: string, d: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const parts = argv.filter((a, i) => !a.startsWith('--') && !(i > 0 && argv[i - 1]!.startsWith('--')));
const want = (p: string) => parts.length === 0 || parts.includes(p);
if (!existsSync(modelDir)) {
  console.error(`bench-12l not found at ${modelDir}; this script needs ../shared`);
  process.exit(2);
}
const evals = flag('evals', 40);
const windows = flag('windows', 8);
const minutes = flag('minutes', 8);
const seed = flag('seed', 1);
const tagAt = argv.indexOf('--tag');
const tag = tagAt >= 0 ? `-${argv[tagAt + 1]}` : '';
const offspring = flag('offspring', 8);
const sval = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const sampling = (sval('sampling') ?? 'fixed') as 'fixed' | 'resample';
const switches = (sval('switches') ?? 'uniform') as 'uniform' | 'evopress';
const stagesText = sval('stages');
const startText = sval('start');
const windowEvals = flag('window-evals', 0);
const valWindows = flag('val-windows', 8);
/** SOTU windows scored (default all; a shared machine may need fewer: the first N windows of 512 tokens). */
const sotuWindows = flag('sotu-windows', 0);
// Only this run's entries; save() merges them into the file.
const results: Record<string, unknown> = {};
// Merge with what is on disk now: several runs of this script may write the same file.
const save = () => {
  const now = existsSync(resultsFile) ? JSON.parse(readFileSync(resultsFile, 'utf8')) : {};
  writeFileSync(resultsFile, JSON.stringify({ ...now, ...results }, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
};
const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

const { prunable: pm, tokenizer, model } = await loadModelDir(modelDir, { threads: 2 });
const calIds = tokenizeText(tokenizer as TextTokenizer, await readTextFile(calFile));
const cal = calIds.slice(0, NS * SEQ);
const searchIds = calIds.slice(NS * SEQ);
const spec = { method: 'wanda', sparsity: S, budget: 'exact', mode: 'fast', calibration: { nsamples: NS, seqlen: SEQ, sha256: idsSha256(cal) } } as SearchSpec;
log('dense statistics');
const dense = await computeDense(pm, spec, cal, 2);
const sotuIds = tokenizeText(tokenizer as TextTokenizer, await readTextFile(sotuFile));

async function sotu(label: string, allocator: Allocator) {
  const originals = searchLinears(pm).map((l) => [l, pm.readWeight(l)] as const);
  const t = performance.now();
  const report = await pruneModel(model, { method: 'wanda', sparsity: S, budget: 'exact', allocator, calibration: { ids: cal }, nsamples: NS, seqlen: SEQ, source: modelDir, threads: 2 });
  const { ppl } = await perplexity(model, sotuIds, { seqlen: SEQ, ...(sotuWindows ? { limitWindows: sotuWindows } : {}) });
  for (const [l, w] of originals) pm.writeWeight(l, w);
  await pm.commit();
  log(`  SOTU ${label}: ${ppl.toFixed(3)} (realised ${report.realizedSparsity.toFixed(6)}, ${((performance.now() - t) / 1000).toFixed(0)} s)`);
  return { ppl, realizedSparsity: report.realizedSparsity, linears: report.linears.map((l) => ({ name: l.name, block: l.block, role: l.role, target: l.target })) };
}

results.settings = { evals, windows, sotuWindows: sotuWindows || 'all', searchSeqlen: SEQ, minutesCap: minutes, nsamples: NS, seqlen: SEQ, sparsity: S, method: 'wanda', budget: 'exact', machine: '2 cores shared by 7 sessions' };
if (want('uniform')) {
  results.uniform = await sotu('uniform', uniform());
  save();
}
if (want('owl')) {
  results.owl = await sotu('OWL M=5 λ=0.08', owl({ M: 5, lambda: 0.08 }));
  save();
}
async function runDsa(name: string, granularity: 'block' | 'linear', fitness: 'ppl' | 'kl') {
  log(`dsa search ${name}: ${evals} evaluations, ${windows} × ${SEQ} search tokens`);
  const out = await searchModel(pm, {
    modelDir, method: 'wanda', sparsity: S, granularity, fitness, calibrationIds: cal, nsamples: NS, seqlen: SEQ, searchIds,
    searchWindows: windows, searchSeqlen: SEQ, evaluations: evals, timeLimitSeconds: minutes * 60, workers: 1, threads: 2,
    seed, population: 8, final: false, dense, checkpointPath: path.join('/tmp', `search-compare-${name}.ckpt.json`),
  });
  log(`  best ${out.best.fitness.toFixed(4)} ${out.best.expression} λ=${out.best.lambda} after ${out.evaluations} evals in ${out.seconds.search.toFixed(0)} s`);
  const allocator = atGranularity(dsa(out.best.expression, { lambda: out.best.lambda }), granularity);
  results[name + tag] = {
    strategy: 'dsa', granularity, fitness, evaluations: out.evaluations, searchSeconds: out.seconds.search, bestFitness: out.best.fitness,
    expression: out.best.expression, lambda: out.best.lambda, sotu: await sotu(name, allocator),
  };
  save();
}
/** Fast KL (the search's own fitness) of an allocation on `valWindows` windows after the search windows: text the search never scored. */
let valFitness: Awaited<ReturnType<typeof createFitness>> | undefined;
async function heldOutKl(linearSparsity: Record<string, number>): Promise<number> {
  if (!valFitness) {
    // Windows 64 … 64 + n of the search split (after the search windows of every run with --windows ≤ 64): one held-out set for all runs.
    if (windows > 64) throw new Error('--val-windows needs --windows ≤ 64');
    const ids = searchIds.slice(64 * SEQ, (64 + valWindows) * SEQ);
    const vspec = { ...spec, pattern: { kind: 'unstructured' }, search: { windows: valWindows, seqlen: SEQ, sha256: idsSha256(ids) }, seed: 0, modelHash: pm.modelHash(), granularity: 'linear', fitness: 'kl' } as SearchSpec;
    valFitness = await createFitness(pm, vspec, { calibrationIds: cal, searchIds: ids }, { dense, threads: 2 });
  }
  return (await valFitness.evaluateLinears!({ blockSparsity: [], linearSparsity })).fitness;
}
async function runLevels(name: string, granularity: 'block' | 'linear') {
  const mod = await import('../src/search/levels.js');
  const budget = windowEvals > 0 ? windowEvals / windows : evals;
  log(`levels search ${name}${tag}: ${budget} full-split evaluations (${budget * windows} window forwards), sampling ${sampling}, switches ${switches}, stages ${stagesText ?? 'default'}, start ${startText ?? 'uniform'}, seed ${seed}`);
  const cpu0 = process.cpuUsage();
  const load0 = loadavg()[0];
  const startLambda = flag('start-lambda', NaN);
  const start = startText ? parseAllocatorSpec(startText, Number.isFinite(startLambda) ? { lambda: startLambda } : {}) : undefined;
  const out = await mod.levelSearch(pm, {
    method: 'wanda', sparsity: S, granularity, fitness: 'kl', calibrationIds: cal, nsamples: NS, seqlen: SEQ, searchIds,
    searchWindows: windows, searchSeqlen: SEQ, evaluations: budget, timeLimitSeconds: minutes * 60, threads: 2, seed, dense, offspring,
    sampling, switchDistribution: switches, ...(stagesText ? { stages: mod.parseLevelStages(stagesText) } : {}), ...(start ? { start } : {}),
  });
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  const windowForwards = out.evaluations * windows;
  log(`  best ${out.best.fitness.toFixed(4)} after ${out.evaluations} evals (${windowForwards} window forwards, ${out.generations} generations, ${out.stoppedBy}) in ${out.seconds.toFixed(0)} s, ${cpuSeconds.toFixed(0)} CPU s, load ${load0.toFixed(1)} → ${loadavg()[0].toFixed(1)}`);
  const heldOut = await heldOutKl(out.best.linearSparsity);
  log(`  held-out fast KL (${valWindows} windows from window 64 of the search split): ${heldOut.toFixed(4)}`);
  const sot = await sotu(name, explicit(out.best.linearSparsity));
  results[name + tag] = {
    strategy: 'levels', offspring, seed, sampling, switches, start: startText ?? 'uniform', generations: out.generations, stoppedBy: out.stoppedBy, granularity, fitness: 'kl', evaluations: out.evaluations,
    windowForwards, searchSeconds: out.seconds, cpuSeconds, windowForwardsPerMinute: (windowForwards / out.seconds) * 60, load: [load0, loadavg()[0]], bestFitness: out.best.fitness,
    heldOutKl: heldOut, stages: out.stages, sotu: sot,
  };
  save();
  const profile = sot.linears.map((l) => ({ name: l.name, block: l.block, role: l.role, sparsity: l.target }));
  writeFileSync(path.join(repo, `docs/search-compare-${name}${tag}.svg`), linearProfileChart(profile, S, `bench-12l Wanda 70 %: per-linear sparsity found by ${name}`));
}
/** `heldout`: the held-out fast KL of every stored run's allocation (its SOTU linears' targets) and of uniform — does the fast fitness rank them as the faithful SOTU does? */
async function heldOutAll() {
  const stored = existsSync(resultsFile) ? JSON.parse(readFileSync(resultsFile, 'utf8')) as Record<string, { sotu?: { ppl: number; linears?: { name: string; target: number }[] }; linears?: { name: string; target: number }[]; ppl?: number }> : {};
  const rows: Record<string, { heldOutKl: number; sotu: number }> = {};
  for (const [k, v] of Object.entries(stored)) {
    const linears = v.sotu?.linears ?? v.linears;
    const ppl = v.sotu?.ppl ?? v.ppl;
    if (!linears || ppl === undefined) continue;
    rows[k] = { heldOutKl: await heldOutKl(Object.fromEntries(linears.map((l) => [l.name, l.target]))), sotu: ppl };
    log(`  ${k}: held-out fast KL ${rows[k].heldOutKl.toFixed(4)}, SOTU ${ppl.toFixed(2)}`);
  }
  results[`heldout${tag}`] = { valWindows, from: 'windows 64 … 64 + valWindows of the search split', rows };
  save();
}
const runners: Record<string, () => Promise<void>> = {
  heldout: () => heldOutAll(),
  'block-ppl': () => runDsa('block-ppl', 'block', 'ppl'),
  'linear-ppl': () => runDsa('linear-ppl', 'linear', 'ppl'),
  'block-kl': () => runDsa('block-kl', 'block', 'kl'),
  'linear-kl': () => runDsa('linear-kl', 'linear', 'kl'),
  'levels-linear-kl': () => runLevels('levels-linear-kl', 'linear'),
  'levels-block-kl': () => runLevels('levels-block-kl', 'block'),
};
for (const name of parts.length ? parts : Object.keys(runners)) if (runners[name]) await runners[name]();
log('done');
