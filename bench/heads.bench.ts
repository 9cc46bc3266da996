/**
 * Structured head pruning on bench-12l (8 query heads, 4 KV heads of head_dim 32 per block, 12 blocks): remove 1..3
 * KV groups in every block (`--target heads`, sparsity = r · one group's parameters / block parameters) with each
 * score, and report SOTU perplexity, ONNX bytes and (flap only) plain-onnxruntime forward tokens/s dense vs pruned.
 *
 *   npx tsx bench/heads.bench.ts --nsamples 16 --eval-windows 16 [--groups 1,2,3] [--scores flap,wanda-sp,magnitude] [--no-speed]
 *   npx tsx bench/heads.bench.ts --nsamples 16 --eval-windows 16 --groups 2,3 --scores flap --no-speed --no-compensation   # metric alone
 *   npx tsx bench/heads.bench.ts --nsamples 16 --eval-windows 16 --mixed 0.2 [--scores flap]   # ffn alone vs ffn,heads at one budget
 *
 * Timing on a shared machine is noisy: dense and pruned run alternately, best of the runs; read the ratio only.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import '../src/index.js';
import { pruneModel, savePruned } from '../src/index.js';
import { perplexity } from '../src/eval/perplexity.js';
import { tokenizeText } from '../src/data/text.js';
import { BATCH, SEQLEN, alternatingForwardTps, calibrationWindows, haveBench12l, modelDir, nsamplesArg, shared } from './bench12l.js';
import { onnxFileBytes } from '../src/save.js';

env.allowRemoteModels = false;
const NSAMPLES = nsamplesArg();
const argAfter = (flag: string): string | undefined => (process.argv.includes(flag) ? process.argv[process.argv.indexOf(flag) + 1] : undefined);
const EVAL_WINDOWS = Number(argAfter('--eval-windows') ?? 16);
const GROUPS = (argAfter('--groups') ?? '1,2,3').split(',').map(Number);
const SCORES = (argAfter('--scores') ?? 'flap,wanda-sp,magnitude').split(',');
const SPEED = !process.argv.includes('--no-speed');
/** `--no-compensation`: flap's metric without its bias compensation (biasCompensation: false). */
const COMPENSATE = !process.argv.includes('--no-compensation');
/** `--mixed 0.2`: instead of the head sweep, --target ffn vs --target ffn,heads at this sparsity (uniform shares). */
const MIXED = argAfter('--mixed') !== undefined ? Number(argAfter('--mixed')) : undefined;
const cfg = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as Record<string, number>;
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-heads-bench-'));

const onnxBytes = (dir: string): number => onnxFileBytes(path.join(dir, 'onnx'), 'model.onnx');

/** Dense and pruned forward tokens/s at BATCH × SEQLEN, alternately, best of `reps` (bench12l.ts). */
const forwardTps = (dirs: [string, string], ids: Int32Array, configs: Record<string, unknown>[], reps = 5): Promise<[number, number]> =>
  alternatingForwardTps(dirs, ids, { batch: BATCH, seqlen: SEQLEN, configs: [configs[0]!, configs[1]!], reps });

async function ppl(dir: string, ids: Int32Array): Promise<number> {
  const m = await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'fp32' });
  const r = await perplexity(m as never, ids, { seqlen: SEQLEN, limitWindows: EVAL_WINDOWS });
  await m.dispose();
  return r.ppl;
}

async function main(): Promise<void> {
  if (!haveBench12l('heads')) return;
  const tok = await AutoTokenizer.from_pretrained(modelDir);
  const sotu = tokenizeText(tok as never, readFileSync(path.join(shared, 'data/bench-corpus/eval_sotu_2001_2021.txt'), 'utf8'));
  const w = await calibrationWindows(NSAMPLES);
  const h = cfg.hidden_size!;
  const H = cfg.num_attention_heads!;
  const G = cfg.num_key_value_heads!;
  const d = cfg.head_dim ?? h / H;
  const blockParams = 2 * h * H * d + 2 * h * G * d + 3 * h * cfg.intermediate_size!;
  const perGroup = (H / G + 2) * d * h + (H / G) * d * h;
  console.log(`bench-12l: ${cfg.num_hidden_layers} blocks, ${H} heads, ${G} KV heads, head_dim ${d}; block params ${blockParams}, one group ${perGroup} (${(perGroup / blockParams * 100).toFixed(2)}%)`);
  console.log(`calibration ${NSAMPLES} × ${SEQLEN}, SOTU first ${EVAL_WINDOWS} windows of ${SEQLEN}`);
  const dense = { bytes: onnxBytes(modelDir), sotu: await ppl(modelDir, sotu) };
  if (MIXED !== undefined) {
    console.log('| target | score | sparsity | heads kept (q / KV) | FFN width (mean) | SOTU ppl | onnx bytes (× dense) |');
    console.log('|---|---|---|---|---|---|---|');
    console.log(`| dense | | 0 | ${H} / ${G} | ${cfg.intermediate_size} | ${dense.sotu.toFixed(2)} | ${dense.bytes.toLocaleString('en-US')} (1.000) |`);
    for (const score of SCORES) {
      for (const target of [['ffn'], ['ffn', 'heads']]) {
        const model = await AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' });
        const rep = await pruneModel(model, { calibration: { ids: w }, nsamples: NSAMPLES, seqlen: SEQLEN, batchSize: BATCH, method: 'structured', target, score, sparsity: MIXED } as never);
        const dir = path.join(work, `mixed-${target.join('-')}-${score}`);
        await savePruned(model, dir);
        await model.dispose();
        const b0 = rep.structured!.blocks[0]!;
        const widths = rep.structured!.blocks.map((b) => b.ffnAfter);
        const s = await ppl(dir, sotu);
        const bytes = onnxBytes(dir);
        console.log(`| ${target.join(',')} | ${score} | ${MIXED} (realised ${rep.realizedSparsity.toFixed(4)}) | ${b0.headsAfter ?? H} / ${b0.kvHeadsAfter ?? G} | ${(widths.reduce((a, b) => a + b, 0) / widths.length).toFixed(1)} | ${s.toFixed(2)} | ${bytes.toLocaleString('en-US')} (${(bytes / dense.bytes).toFixed(3)}) |`);
      }
    }
    rmSync(work, { recursive: true, force: true });
    return;
  }
  console.log(`| KV groups removed per block | heads kept (q / KV) | sparsity | score | SOTU ppl | onnx bytes (× dense) | forward tok/s dense → pruned (noisy) |`);
  console.log(`|---|---|---|---|---|---|---|`);
  console.log(`| 0 (dense) | ${H} / ${G} | 0 | | ${dense.sotu.toFixed(2)} | ${dense.bytes.toLocaleString('en-US')} (1.000) | |`);
  for (const r of GROUPS) {
    const sparsity = (r * perGroup) / blockParams;
    for (const score of SCORES) {
      const model = await AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' });
      const t0 = performance.now();
      const rep = await pruneModel(model, { calibration: { ids: w }, nsamples: NSAMPLES, seqlen: SEQLEN, batchSize: BATCH, method: 'structured', target: ['heads'], score, sparsity, biasCompensation: COMPENSATE } as never);
      const secs = (performance.now() - t0) / 1000;
      const dir = path.join(work, `heads-${r}-${score}`);
      await savePruned(model, dir);
      await model.dispose();
      const b0 = rep.structured!.blocks[0]!;
      const s = await ppl(dir, sotu);
      let speed = '';
      if (SPEED && score === SCORES[0]) {
        const pc = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
        const [a, b] = await forwardTps([modelDir, dir], sotu, [cfg, pc]);
        speed = `${a.toFixed(0)} → ${b.toFixed(0)} (${(b / a).toFixed(3)}×)`;
      }
      const bytes = onnxBytes(dir);
      console.log(`| ${r} | ${b0.headsAfter} / ${b0.kvHeadsAfter} | ${sparsity.toFixed(4)} | ${score} | ${s.toFixed(2)} | ${bytes.toLocaleString('en-US')} (${(bytes / dense.bytes).toFixed(3)}) | ${speed} |  <!-- prune ${secs.toFixed(1)} s -->`);
    }
  }
  rmSync(work, { recursive: true, force: true });
}

await main();
