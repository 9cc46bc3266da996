/**
 * Search bench: evaluations per minute of the fast fitness for workers × intra-op-threads settings, on the same
 * candidates (bench-12l, Wanda 70 %, 16 × 512 search tokens, dense statistics from 32 × 512 calibration tokens to keep
 * the setup short — the statistics do not change the cost of an evaluation). Falls back to stories260k without ../shared.
 *
 *   npx tsx bench/search.bench.ts        (or `npm run bench search`)
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bench, ratio, value } from './harness.js';
import { loadModelDir } from '../src/model/index.js';
import { tokenizeText, type TextTokenizer } from '../src/data/text.js';
import { computeDense, createFitness, idsSha256 } from '../src/search/fitness.js';
import { createPool } from '../src/search/pool.js';
import { searchSpace } from '../src/search/space.js';
import { Rng } from '../src/search/random.js';
import type { Candidate, SearchSpec } from '../src/search/types.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(repoRoot, '../shared');
const big = existsSync(path.join(shared, 'models/bench-12l'));
const modelDir = big ? path.join(shared, 'models/bench-12l') : path.join(repoRoot, 'models/stories260k');
const textFile = big ? path.join(shared, 'data/bench-corpus/calibration.txt') : path.join(repoRoot, 'data/tinystories/tinystories_calibration.txt');
const NS = 32;
const SEQ = big ? 512 : 256;
const N = Number(process.env.SEARCH_BENCH_EVALS ?? 6);

const { prunable: pm, tokenizer } = await loadModelDir(modelDir, { threads: 2 });
const ids = tokenizeText(tokenizer as TextTokenizer, readFileSync(textFile, 'utf8').slice(0, big ? 250_000 : 120_000));
const cal = ids.slice(0, NS * SEQ);
const searchIds = ids.slice(NS * SEQ, NS * SEQ + 16 * SEQ);
const spec: SearchSpec = {
  method: 'wanda', sparsity: 0.7, budget: 'exact', mode: 'fast',
  calibration: { nsamples: NS, seqlen: SEQ, sha256: idsSha256(cal) }, search: { windows: 16, seqlen: SEQ, sha256: idsSha256(searchIds) },
  seed: 0, modelHash: pm.modelHash(),
};
const dense = await computeDense(pm, spec, cal, 2);
const space = searchSpace(dense.blocks, spec.sparsity, spec.budget);
const rng = new Rng(7);
const cands: Candidate[] = [];
while (cands.length < N) {
  const c = space.sample(rng);
  if (space.check(c).ok) cands.push(c);
}
const note = `${path.basename(modelDir)}, ${N} candidates, 16 × ${SEQ} search tokens, load ${os.loadavg()[0]!.toFixed(1)}`;

const rows = [];
for (const threads of [1, 2]) {
  const f = await createFitness(pm, spec, { calibrationIds: cal, searchIds }, { dense, threads });
  await f.evaluate(cands[0]!);
  rows.push(await bench(`fast fitness, 1 worker × ${threads} threads (${N} evals)`, async () => {
    for (const c of cands) await f.evaluate(c);
  }, { notes: note }));
  await f.close();
}
const pool = await createPool({ modelDir, spec, calibrationIds: cal, searchIds, dense, workers: 2, threads: 1 });
await pool.evaluate(cands.slice(0, 2));
const pooled = await bench(`fast fitness, 2 workers × 1 thread (${N} evals)`, () => pool.evaluate(cands), { notes: note });
await pool.close();
for (const r of [...rows, pooled]) value(`${r.name}: evaluations/min`, (N / r.seconds) * 60, 'evals/min');
const bestSingle = rows.reduce((a, b) => (a.seconds < b.seconds ? a : b));
ratio('best single worker / 2 workers × 1 thread (speedup)', bestSingle, pooled);
