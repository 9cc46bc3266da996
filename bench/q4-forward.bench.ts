/**
 * Forward speed of q4 files as transformers.js loads them (docs/structured.md, equal-bytes comparison):
 *   npx tsx bench/q4-forward.bench.ts [--reps 7] [--batch 2] [--seqlen 512] [--threads 1] <dir> [<dir> …]
 * Each folder holds onnx/model_q4.onnx (a frontier variant: dense q4, sparse q4, structured q4). All are loaded with
 * from_pretrained(dir, { dtype: 'q4' }), then one logits forward of the same random ids [batch × seqlen] runs on each
 * in turn, `reps` rounds. Prints per folder the best wall time and the median CPU time (user + sys of this process,
 * process.cpuUsage: less sensitive to other processes on a shared machine than wall time), as tokens/s, and both
 * ratios to the first folder. Load time is not measured here (the frontier's loadMs has it).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AutoModelForCausalLM } from '@huggingface/transformers';
import { forwardLogits } from '../src/eval/forward.js';
import { Rng } from '../src/search/random.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { reps: { type: 'string', default: '7' }, batch: { type: 'string', default: '2' }, seqlen: { type: 'string', default: '512' }, threads: { type: 'string', default: '1' } },
});
const reps = Number(values.reps);
const batch = Number(values.batch);
const seqlen = Number(values.seqlen);
const threads = Number(values.threads);
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const models: any[] = [];
for (const dir of positionals) {
  models.push(await AutoModelForCausalLM.from_pretrained(path.resolve(dir), {
    dtype: 'q4', local_files_only: true, session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
  } as never));
}
const vocab = Number(models[0].config.vocab_size);
const rng = new Rng(1);
const ids = Int32Array.from({ length: batch * seqlen }, () => Math.floor(rng.next() * vocab));
const wall = positionals.map(() => [] as number[]);
const cpu = positionals.map(() => [] as number[]);
for (let r = 0; r <= reps; r++) {
  for (let k = 0; k < models.length; k++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await forwardLogits(models[k].sessions.model, ids, batch, seqlen, { config: models[k].config });
    const t = performance.now() - t0;
    const c = process.cpuUsage(c0);
    if (r === 0) continue; // warm-up round
    wall[k]!.push(t);
    cpu[k]!.push((c.user + c.system) / 1000);
  }
}
const best = (a: number[]): number => Math.min(...a);
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const tokens = batch * seqlen;
console.log(`forward [${batch} × ${seqlen}], ${reps} rounds (after one warm-up), ${threads} intra-op thread(s)`);
console.log('| folder | best wall ms | tokens/s (wall) | × first | median CPU ms | tokens/s (CPU) | × first |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
positionals.forEach((dir, k) => {
  const w = best(wall[k]!);
  const c = median(cpu[k]!);
  console.log(`| ${dir} | ${w.toFixed(0)} | ${(tokens / w * 1000).toFixed(0)} | ${(best(wall[0]!) / w).toFixed(3)} | ${c.toFixed(0)} | ${(tokens / c * 1000).toFixed(0)} | ${(median(cpu[0]!) / c).toFixed(3)} |`);
});
for (const m of models) await m.dispose();
