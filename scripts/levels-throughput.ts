/**
 * Where the time of one levels candidate goes on bench-12l (Wanda 70 %, KL fitness; needs ../shared): re-masking all
 * linears from the cached orders, feeding them, the onnxruntime forward, and the KL from the cached top-k — and the
 * evaluations per minute of `evaluateLinears` by window count and sequences per run. Timings on a shared machine are
 * noisy: the load average is printed with them.
 *
 *   NSAMPLES=16 npx tsx scripts/levels-throughput.ts [--threads 2] [--reps 6] [--seqlen 512]
 */
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModelDir } from '../src/model/index.js';
import { readTextFile, tokenizeText, type TextTokenizer } from '../src/data/text.js';
import { computeDense, createFitness, idsSha256, searchLinears } from '../src/search/fitness.js';
import { genomeAllocation, levelGrid, levelSwitch } from '../src/search/levels.js';
import { Rng } from '../src/search/random.js';
import { weightFedSession } from '../src/model/weight-inputs.js';
import { getMethod, prepareLinear } from '../src/methods/index.js';
import { forwardLogits } from '../src/eval/forward.js';
import { createTopKCache, klToCache } from '../src/eval/kl.js';
import type { SearchSpec } from '../src/search/types.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(repo, '../shared');
const modelDir = path.join(shared, 'models/bench-12l');
if (!existsSync(modelDir)) {
  console.error(`bench-12l not found at ${modelDir}; this script needs ../shared`);
  process.exit(2);
}
const argv = process.argv.slice(2);
const opt = (n: string, d: number) => (argv.includes(`--${n}`) ? Number(argv[argv.indexOf(`--${n}`) + 1]) : d);
const threads = opt('threads', 2);
const reps = opt('reps', 6);
const SEQ = opt('seqlen', 512);
const NS = Number(process.env.NSAMPLES ?? 16);
const load = () => loadavg().map((x) => x.toFixed(1)).join(' ');
const ms = (t: number) => +(performance.now() - t).toFixed(1);
/** CPU milliseconds of this process (all threads, onnxruntime's included) since `c`: less sensitive to other load than wall time. */
const cpuMs = (c: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(c);
  return +((d.user + d.system) / 1000).toFixed(1);
};

const { prunable: pm, tokenizer } = await loadModelDir(modelDir, { threads });
const all = tokenizeText(tokenizer as TextTokenizer, await readTextFile(path.join(shared, 'data/bench-corpus/calibration.txt')));
const cal = all.slice(0, NS * 512);
const searchIds = all.slice(NS * 512, NS * 512 + 8 * SEQ);
const spec = {
  method: 'wanda', sparsity: 0.7, budget: 'exact', mode: 'fast', pattern: { kind: 'unstructured' },
  calibration: { nsamples: NS, seqlen: 512, sha256: idsSha256(cal) }, search: { windows: 8, seqlen: SEQ, sha256: idsSha256(searchIds) },
  seed: 0, modelHash: pm.modelHash(), granularity: 'linear', fitness: 'kl',
} as SearchSpec;
const dense = await computeDense(pm, spec, cal, threads);
const linears = searchLinears(pm);
const grid = levelGrid(linears.map((l) => ({ name: l.name, linears: [{ name: l.name, params: l.dIn * l.dOut }] })), 0.7);
const rng = new Rng(7);
const genome = () => levelSwitch(grid, new Int32Array(grid.units.length), rng, 20);
const out: Record<string, unknown> = { threads, nsamples: NS, searchSeqlen: SEQ, loadBefore: load() };

// Components, by hand (the same calls createFitness makes).
const method = getMethod('wanda');
const fed = await weightFedSession(pm, linears.map((l) => l.weight), { threads });
const slots = [];
for (const l of linears) {
  const layout = pm.layout.get(l.name) ?? 'in_out';
  const prepared = await prepareLinear(method, { weight: pm.readWeight(l), dOut: l.dOut, dIn: l.dIn, stats: dense.stats.get(l.name), budget: 'exact', layout, name: l.name });
  slots.push({ l, prepared, buf: new Float32Array(l.dOut * l.dIn) });
}
const maskMs: number[] = [];
const maskCpu: number[] = [];
const feedMs: number[] = [];
for (let r = 0; r < reps; r++) {
  const a = genomeAllocation(grid, genome());
  let t = performance.now();
  const c = process.cpuUsage();
  for (const s of slots) await s.prepared.apply(a[s.l.name]!, s.buf);
  maskMs.push(ms(t));
  maskCpu.push(cpuMs(c));
  t = performance.now();
  for (const s of slots) fed.setWeight(s.l.weight, s.buf);
  feedMs.push(ms(t));
}
out.maskAllLinearsMs = maskMs;
out.maskAllLinearsCpuMs = maskCpu;
out.feedAllLinearsMs = feedMs;
const cache = await createTopKCache(fed.session, searchIds, 8, SEQ, { config: pm.config, batchSize: 2 });
for (const bs of [1, 2, 4]) {
  const fwd: number[] = [];
  const kl: number[] = [];
  const fwdCpu: number[] = [];
  const klCpu: number[] = [];
  for (let r = 0; r < reps; r++) {
    let t = performance.now();
    let c = process.cpuUsage();
    await forwardLogits(fed.session, searchIds.subarray(0, bs * SEQ), bs, SEQ, { config: pm.config });
    fwd.push(ms(t));
    fwdCpu.push(cpuMs(c));
    t = performance.now();
    c = process.cpuUsage();
    await klToCache(fed.session, searchIds, cache, { batchSize: bs, rows: bs, config: pm.config });
    kl.push(ms(t));
    klCpu.push(cpuMs(c));
  }
  out[`forwardMs_${bs}x${SEQ}`] = fwd;
  out[`forwardPlusKlMs_${bs}x${SEQ}`] = kl;
  out[`forwardCpuMs_${bs}x${SEQ}`] = fwdCpu;
  out[`forwardPlusKlCpuMs_${bs}x${SEQ}`] = klCpu;
}
await fed.release();

// Whole evaluations through createFitness (what the levels search runs), by windows and sequences per run.
for (const batchSize of (process.env.BATCHES ?? '1,2,4').split(',').map(Number)) {
  const fit = await createFitness(pm, spec, { calibrationIds: cal, searchIds }, { dense, threads, batchSize });
  for (const w of [1, 4]) {
    if (batchSize > w) continue;
    const t = performance.now();
    const c = process.cpuUsage();
    for (let r = 0; r < reps; r++) await fit.evaluateLinears!({ blockSparsity: [], linearSparsity: genomeAllocation(grid, genome()) }, { windows: w });
    const s = (performance.now() - t) / 1000 / reps;
    const cs = cpuMs(c) / 1000 / reps;
    out[`evaluate_w${w}_bs${batchSize}`] = { secondsPerEval: +s.toFixed(3), evalsPerMinute: +(60 / s).toFixed(1), tokensPerSecond: Math.round((w * SEQ) / s), cpuSecondsPerEval: +cs.toFixed(3) };
  }
  await fit.close();
}
out.loadAfter = load();
console.log(JSON.stringify(out, null, 1));
