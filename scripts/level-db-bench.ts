/**
 * Size and build time of the SparseGPT level database on bench-12l (needs ../shared): dense Gram from NSAMPLES × 512
 * calibration tokens, then buildLevelDb for the grid of --granularity (linear|block), --step, --spread at 70 %.
 *
 *   NSAMPLES=32 npx tsx scripts/level-db-bench.ts [--granularity linear] [--step 0.05] [--spread 0.05]
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModelDir } from '../src/model/index.js';
import { readTextFile, tokenizeText, type TextTokenizer } from '../src/data/text.js';
import { computeDense, idsSha256, searchLinears } from '../src/search/fitness.js';
import { levelGrid } from '../src/search/levels.js';
import { buildLevelDb, levelDbPlan } from '../src/search/level-db.js';
import type { SearchSpec } from '../src/search/types.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shared = path.resolve(repo, '../shared');
const modelDir = path.join(shared, 'models/bench-12l');
if (!existsSync(modelDir)) {
  console.error(`bench-12l not found at ${modelDir}; this script needs ../shared`);
  process.exit(2);
}
const argv = process.argv.slice(2);
const opt = (n: string, d: string) => (argv.includes(`--${n}`) ? argv[argv.indexOf(`--${n}`) + 1]! : d);
const granularity = opt('granularity', 'linear');
const step = Number(opt('step', '0.05'));
const spread = Number(opt('spread', '0.05'));
const NS = Number(process.env.NSAMPLES ?? 32);
const SEQ = 512;
const { prunable: pm, tokenizer } = await loadModelDir(modelDir, { threads: 1 });
const ids = tokenizeText(tokenizer as TextTokenizer, await readTextFile(path.join(shared, 'data/bench-corpus/calibration.txt'))).slice(0, NS * SEQ);
const spec = { method: 'sparsegpt', sparsity: 0.7, budget: 'exact', mode: 'fast', calibration: { nsamples: NS, seqlen: SEQ, sha256: idsSha256(ids) } } as SearchSpec;
let t = performance.now();
const dense = await computeDense(pm, spec, ids, 1);
console.log(`dense statistics with Gram: ${((performance.now() - t) / 1000).toFixed(1)} s`);
const ls = searchLinears(pm);
const nB = Math.max(...ls.map((l) => l.block)) + 1;
const units = granularity === 'linear'
  ? ls.map((l) => ({ name: l.name, linears: [{ name: l.name, params: l.dIn * l.dOut }] }))
  : Array.from({ length: nB }, (_, b) => ({ name: `block ${b}`, linears: ls.filter((l) => l.block === b).map((l) => ({ name: l.name, params: l.dIn * l.dOut })) }));
const grid = levelGrid(units, 0.7, { step, spread });
const plan = levelDbPlan(grid, ls);
t = performance.now();
const db = await buildLevelDb(pm, dense, grid, ls, { budget: 'exact' });
const s = (performance.now() - t) / 1000;
const byShape = new Map<string, number>();
for (const p of plan) byShape.set(`${p.linear.dOut}×${p.linear.dIn}`, (byShape.get(`${p.linear.dOut}×${p.linear.dIn}`) ?? 0) + p.counts.length);
console.log(JSON.stringify({ granularity, step, spread, nsamples: NS, entries: db.entries, bytes: db.bytes, kind: db.kind, seconds: +s.toFixed(1), secondsPerEntry: +(s / db.entries).toFixed(3), levelsByShape: Object.fromEntries(byShape) }));
db.close();
