/**
 * sha256 of a saved pruned model: the scale bench's prune (bench/scale.bench.ts: sequential Wanda 50 %, nsamples ×
 * seqlen deterministic token ids, batch 8) saved to --out, then every file hashed. For checking that a speed change
 * keeps the pruned bytes (run before / after, compare the lines).
 *
 *   npx tsx bench/prune-sha.bench.ts --dir <fixture> --out <dir> [--nsamples 32] [--seqlen 512] [--method wanda] [--vocab 49152]
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadModelDir } from '../src/model/index.js';
import { pruneModel } from '../src/prune.js';
import { savePruned } from '../src/save.js';
import { tokenIds } from '../test/kernels/rng.js';

const { values: opt } = parseArgs({
  options: {
    dir: { type: 'string' }, out: { type: 'string' }, nsamples: { type: 'string', default: '32' }, seqlen: { type: 'string', default: '512' },
    method: { type: 'string', default: 'wanda' }, vocab: { type: 'string', default: '49152' },
  },
});
const nsamples = Number(opt.nsamples), seqlen = Number(opt.seqlen);
const out = path.resolve(String(opt.out));
const { model } = await loadModelDir(path.resolve(String(opt.dir)), { dtype: 'fp32' });
const c0 = process.cpuUsage();
const report = await pruneModel(model, {
  method: opt.method as 'wanda', sparsity: 0.5, calibration: { ids: tokenIds(nsamples * seqlen, Number(opt.vocab)) }, nsamples, seqlen, batchSize: 8,
});
const c = process.cpuUsage(c0);
rmSync(out, { recursive: true, force: true });
await savePruned(model, out);
const walk = (d: string): string[] => readdirSync(d).flatMap((f) => (statSync(path.join(d, f)).isDirectory() ? walk(path.join(d, f)) : [path.join(d, f)]));
for (const f of walk(out).sort()) {
  console.log(`${createHash('sha256').update(readFileSync(f)).digest('hex')}  ${path.relative(out, f)}`);
}
console.error(JSON.stringify({ prune: report.seconds, pruneCpu: (c.user + c.system) / 1e6 }));
