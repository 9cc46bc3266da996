/**
 * The search targets of issue 7 on bench-12l (Wanda, 70 % unstructured, exact budget), NOT run in CI:
 *   parallel   evaluations/minute for workers × threads settings (same candidates for each)
 *   main       300 evaluations in fast mode (time), best re-applied faithfully, SOTU perplexity vs uniform and OWL
 *   seeds      evolution vs random search at equal budget over 3 seeds
 * Usage: npx tsx scripts/search-targets.ts [parallel|main|seeds ...] [--evals n] [--seed-evals n] [--parallel-evals n] [--batch n]
 *   (--batch: sequences per onnxruntime run in the parallel measurement; default: the fitness default)
 * Results are merged into docs/search-targets.json (TARGETS_OUT=<file> for another); docs/search.md "Targets" quotes them.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModelDir } from '../src/model/index.js';
import { readTextFile, tokenizeText, type TextTokenizer } from '../src/data/text.js';
import { pruneModel } from '../src/prune.js';
import { owl, uniform, dsa } from '../src/allocators/index.js';
import { perplexity } from '../src/eval/perplexity.js';
import { computeDense, idsSha256, searchLinears } from '../src/search/fitness.js';
import { createPool } from '../src/search/pool.js';
import { createFitness } from '../src/search/fitness.js';
import { searchSpace } from '../src/search/space.js';
import { searchChart, searchModel } from '../src/search/run.js';
import { Rng } from '../src/search/random.js';
import type { Candidate, SearchSpec } from '../src/search/types.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(repo, '../shared');
const modelDir = path.join(shared, 'models/bench-12l');
const calFile = path.join(shared, 'data/bench-corpus/calibration.txt');
const sotuFile = path.join(shared, 'data/bench-corpus/eval_sotu_2001_2021.txt');
const resultsFile = path.resolve(repo, process.env.TARGETS_OUT ?? 'docs/search-targets.json');
const NS = 128;
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
const results: Record<string, unknown> = existsSync(resultsFile) ? JSON.parse(readFileSync(resultsFile, 'utf8')) : {};
const save = () => writeFileSync(resultsFile, JSON.stringify(results, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

const { prunable: pm, tokenizer, model } = await loadModelDir(modelDir, { threads: 2 });
log('tokenizing');
const calIds = tokenizeText(tokenizer as TextTokenizer, await readTextFile(calFile));
const used = NS * SEQ;
const cal = calIds.slice(0, used);
const searchIds = calIds.slice(used); // the search split: calibration text after the calibration windows
const spec: SearchSpec = {
  method: 'wanda', sparsity: S, budget: 'exact', mode: 'fast', pattern: { kind: 'unstructured' },
  calibration: { nsamples: NS, seqlen: SEQ, sha256: idsSha256(cal) },
  search: { windows: 16, seqlen: 512, sha256: idsSha256(searchIds.subarray(0, 16 * 512)) }, seed: 0, modelHash: pm.modelHash(),
};
const needsDense = want('parallel') || want('main') || want('seeds') || parts.includes('fastcompare');
let dense!: Awaited<ReturnType<typeof computeDense>>;
if (needsDense) {
  log('dense statistics');
  const t0 = performance.now();
  dense = await computeDense(pm, spec, cal, 2);
  results.denseSeconds = (performance.now() - t0) / 1000;
  log(`dense statistics in ${(results.denseSeconds as number).toFixed(1)} s`);
}

if (want('parallel')) {
  const n = flag('parallel-evals', 8);
  // sequences per onnxruntime run in the fitness perplexity; without --batch the fitness's own default
  const batchSize = argv.includes('--batch') ? flag('batch', 0) : undefined;
  const space = searchSpace(dense.blocks, S, 'exact');
  const rng = new Rng(99);
  const cands: Candidate[] = [];
  while (cands.length < n) {
    const c = space.sample(rng);
    if (space.check(c).ok) cands.push(c);
  }
  const rows: { workers: number; threads: number; batchSize: number | 'default'; evalsPerMinute: number; seconds: number }[] = [];
  for (const [workers, threads] of [[1, 1], [1, 2], [2, 1]] as const) {
    log(`parallel: ${workers} workers × ${threads} threads, ${n} evaluations`);
    let seconds: number;
    let fits: number[];
    if (workers === 1) {
      const f = await createFitness(pm, spec, { calibrationIds: cal, searchIds }, { dense, threads, batchSize });
      await f.evaluate(cands[0]!); // warm-up
      const t = performance.now();
      fits = [];
      for (const c of cands) fits.push((await f.evaluate(c)).fitness);
      seconds = (performance.now() - t) / 1000;
      await f.close();
    } else {
      const pool = await createPool({ modelDir, spec, calibrationIds: cal, searchIds, dense, workers, threads, batchSize });
      await pool.evaluate(cands.slice(0, workers)); // warm-up
      const t = performance.now();
      fits = (await pool.evaluate(cands)).map((e) => e.fitness);
      seconds = (performance.now() - t) / 1000;
      await pool.close();
    }
    rows.push({ workers, threads, batchSize: batchSize ?? 'default', evalsPerMinute: (n / seconds) * 60, seconds });
    log(`  ${((n / seconds) * 60).toFixed(2)} evals/min; fitness[0..2] ${fits.slice(0, 3).map((x) => x.toFixed(4)).join(' ')}`);
  }
  const single = Math.max(...rows.filter((r) => r.workers === 1).map((r) => r.evalsPerMinute));
  const best = Math.max(...rows.map((r) => r.evalsPerMinute));
  results.parallel = { evaluations: n, rows, speedup: best / single, load: (await import('node:os')).loadavg() };
  save();
}

let sotuIds: Int32Array | undefined;
async function sotu(label: string, allocator: Parameters<typeof pruneModel>[1]['allocator']) {
  const originals = searchLinears(pm).map((l) => [l, pm.readWeight(l)] as const);
  const t = performance.now();
  const report = await pruneModel(model, { method: 'wanda', sparsity: S, budget: 'exact', allocator, calibration: { ids: cal }, nsamples: NS, seqlen: SEQ, source: modelDir, threads: 2 });
  sotuIds ??= tokenizeText(tokenizer as TextTokenizer, await readTextFile(sotuFile));
  const { ppl } = await perplexity(model, sotuIds, { seqlen: SEQ });
  for (const [l, w] of originals) pm.writeWeight(l, w);
  await pm.commit();
  log(`  SOTU ${label}: ${ppl.toFixed(3)} (realised ${report.realizedSparsity.toFixed(4)}, ${((performance.now() - t) / 1000).toFixed(0)} s)`);
  return { ppl, realizedSparsity: report.realizedSparsity, blockSparsity: report.targetBlockSparsity };
}

if (want('main')) {
  const evals = flag('evals', 300);
  log(`main search: ${evals} evaluations, fast mode, 2 workers × 1 thread`);
  const out = await searchModel(pm, {
    modelDir, method: 'wanda', sparsity: S, budget: 'exact', mode: 'fast', calibrationIds: cal, nsamples: NS, seqlen: SEQ,
    searchIds, searchWindows: 16, searchSeqlen: 512, evaluations: evals, workers: 2, threads: 1, seed: 0, dense,
    checkpointPath: path.join(repo, '.search-scratch/targets-main.checkpoint.json'),
    onProgress: (p) => p.generationDone && log(`  gen ${p.generation} evals ${p.evaluations} best ${p.bestFitness.toFixed(3)} ${(p.evalsPerSecond * 60).toFixed(1)}/min`),
  });
  writeFileSync(path.join(repo, 'docs/search-bench12l.json'), JSON.stringify(out, null, 2) + '\n');
  writeFileSync(path.join(repo, 'docs/search-bench12l.svg'), searchChart(out));
  log(`best ${out.best.expression} λ=${out.best.lambda} fast ${out.best.fitness.toFixed(3)} faithful ${out.best.faithful?.fitness.toFixed(3)}; search ${out.seconds.search.toFixed(0)} s`);
  const best = { expression: out.best.expression, lambda: out.best.lambda };
  results.main = {
    evaluations: out.evaluations, searchSeconds: out.seconds.search, evalsPerMinute: out.evalsPerMinute, best: out.best,
    rejected: out.rejected, settings: out.settings,
    sotu: {
      dsaFound: await sotu('DSA (found)', dsa(best.expression, { lambda: best.lambda })),
      uniform: await sotu('uniform', uniform()),
      owl: await sotu('OWL', owl({ M: 5, lambda: 0.08 })),
    },
  };
  save();
}

/** The state of the main search's checkpoint and its best evaluated candidate. */
async function bestOfMainCheckpoint() {
  const { readCheckpoint } = await import('../src/search/checkpoint.js');
  const ck = await readCheckpoint(path.join(repo, '.search-scratch/targets-main.checkpoint.json'));
  const hist = ck.state.history;
  const best = hist.reduce((a, b) => ((b.fitness ?? Infinity) < (a.fitness ?? Infinity) ? b : a));
  return { ck, hist, best };
}

if (parts.includes('fastcompare')) {
  // uniform, OWL and the best candidate so far (main checkpoint) with the same fast fitness on the search split,
  // then the best one re-applied faithfully (sequential prune) on the search split.
  const { ck, hist, best } = await bestOfMainCheckpoint();
  const f = await createFitness(pm, spec, { calibrationIds: cal, searchIds }, { dense, threads: 2 });
  const input = { blocks: dense.blocks, sparsity: S, budget: 'exact' as const };
  const fast = {
    uniform: (await f.evaluateAllocation!(uniform().allocate(input).blockSparsity)).fitness,
    owl: (await f.evaluateAllocation!(owl({ M: 5, lambda: 0.08 }).allocate(input).blockSparsity)).fitness,
    best: (await f.evaluate(best.candidate)).fitness,
  };
  log(`  fast fitness (search split): uniform ${fast.uniform.toFixed(3)}, OWL ${fast.owl.toFixed(3)}, best ${fast.best.toFixed(3)} (${best.expression} λ=${best.lambda})`);
  results.fastcompare = { evaluationsSoFar: hist.length, generations: ck.state.generation, best: { expression: best.expression, lambda: best.lambda, blockSparsity: best.blockSparsity }, fast };
  save();
  await f.close();
  const ff = await createFitness(pm, { ...spec, mode: 'faithful' }, { calibrationIds: cal, searchIds }, { dense, threads: 2 });
  const faithful: Record<string, number> = {};
  faithful.best = (await ff.evaluate(best.candidate)).fitness;
  log(`  faithful (search split): best ${faithful.best.toFixed(3)}`);
  results.fastcompare = { ...(results.fastcompare as object), faithful };
  save();
}

if (parts.includes('baselines')) {
  log('SOTU baselines: uniform and OWL (Wanda 70 %, exact budget)');
  results.baselines = { uniform: await sotu('uniform', uniform()) };
  save();
  results.baselines = { ...(results.baselines as object), owl: await sotu('OWL', owl({ M: 5, lambda: 0.08 })) };
  save();
}

if (parts.includes('final')) {
  // The best candidate of an interrupted main search (its checkpoint), re-applied faithfully: search split and SOTU.
  const { ck, hist, best } = await bestOfMainCheckpoint();
  log(`final: best of ${hist.length} evaluations (${ck.state.generation} generations): ${best.expression} λ=${best.lambda} fast fitness ${best.fitness}`);
  const t = performance.now();
  const f = await createFitness(pm, { ...spec, mode: 'faithful' }, { calibrationIds: cal, searchIds }, { threads: 2, dense: { blocks: [], stats: new Map() } });
  const ev = await f.evaluate(best.candidate);
  log(`  faithful search-split fitness ${ev.fitness.toFixed(3)} (${((performance.now() - t) / 1000).toFixed(0)} s)`);
  const elapsed = ck.state.elapsedSeconds;
  results.final = {
    evaluations: hist.length, generations: ck.state.generation, searchSeconds: elapsed, evalsPerMinute: hist.length / (elapsed / 60),
    rejected: ck.state.rejected, best: { expression: best.expression, lambda: best.lambda, fitness: best.fitness, blockSparsity: best.blockSparsity },
    faithfulFitness: ev.fitness,
    sotu: await sotu('DSA (found)', dsa(best.candidate.expression, { lambda: best.lambda })),
    history: hist.map((h) => ({ evaluation: h.evaluation, generation: h.generation, expression: h.expression, lambda: h.lambda, fitness: h.fitness })),
  };
  save();
  const { searchChart } = await import('../src/search/run.js');
  writeFileSync(path.join(repo, 'docs/search-bench12l.svg'), searchChart({ history: (results.final as { history: never[] }).history, method: 'wanda', sparsity: S }));
}

if (want('seeds')) {
  const evals = flag('seed-evals', 100);
  const windows = flag('seed-windows', 16);
  const population = flag('seed-population', 16);
  const rows: { seed: number; evolution: number; random: number; evolutionExpr: string; randomExpr: string }[] = [];
  for (const seed of [1, 2, 3]) {
    log(`seed ${seed}: evolution and random, ${evals} evaluations each`);
    const out = await searchModel(pm, {
      modelDir, method: 'wanda', sparsity: S, budget: 'exact', mode: 'fast', calibrationIds: cal, nsamples: NS, seqlen: SEQ,
      searchIds, searchWindows: windows, searchSeqlen: 512, evaluations: evals, workers: 2, threads: 1, seed, dense, random: true, final: false,
      population,
    });
    rows.push({ seed, evolution: out.best.fitness, random: out.randomBest!.fitness, evolutionExpr: `${out.best.expression} λ=${out.best.lambda}`, randomExpr: `${out.randomBest!.expression} λ=${out.randomBest!.lambda}` });
    log(`  evolution ${out.best.fitness.toFixed(3)} vs random ${out.randomBest!.fitness.toFixed(3)}`);
    writeFileSync(path.join(repo, `docs/search-bench12l-seed${seed}.svg`), searchChart(out));
    results.seeds = { evaluations: evals, searchWindows: windows, population, rows };
    save();
  }
}
log('done');
process.exit(0);
