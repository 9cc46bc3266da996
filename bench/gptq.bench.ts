/**
 * GPTQ q4 vs round-to-nearest q4 of one pruned model (docs/compression.md, "GPTQ q4").
 *   npx tsx bench/gptq.bench.ts <modelDir> --calibration <file> --eval <file> [--method wanda] [--sparsity 0.5]
 *     [--nsamples 128] [--seqlen 512] [--eval-seqlen 512] [--windows 64] [--out <dir>]
 * Prunes once in memory, saves the same pruned model twice (q4 round-to-nearest; q4 with gptq: true, reusing the pruning
 * calibration windows), then loads pruned fp32 / RTN q4 / GPTQ q4 with transformers.js from_pretrained(dir, { dtype })
 * and measures perplexity on the first `windows` windows of the eval text. Prints a Markdown table.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { floatOnnxFile, onnxFileSize } from '../src/compress/index.js';
import { loadModelDir } from '../src/model/index.js';
import { perplexity } from '../src/eval/index.js';
import { pruneModel } from '../src/prune.js';
import { savePruned } from '../src/save.js';
import { takeOption } from './harness.js';

const args = process.argv.slice(2);
const opt = (name: string, d?: string): string | undefined => takeOption(args, name, d);
const calibration = opt('calibration')!;
const evalFile = opt('eval')!;
const method = opt('method', 'wanda')!;
const sparsity = Number(opt('sparsity', '0.5'));
const nsamples = Number(opt('nsamples', '128'));
const seqlen = Number(opt('seqlen', '512'));
const evalSeqlen = Number(opt('eval-seqlen', '512'));
const windows = Number(opt('windows', '64'));
const out = opt('out', path.join(os.tmpdir(), `dsa-gptq-bench-${process.pid}`))!;
const modelDir = args[0]!;

const tf = await import('@huggingface/transformers');
tf.env.allowRemoteModels = false;
const text = readFileSync(evalFile, 'utf8');

async function ppl(dir: string, dtype: string): Promise<number> {
  const model = await tf.AutoModelForCausalLM.from_pretrained(path.resolve(dir), { dtype: dtype as 'fp32', local_files_only: true });
  const tokenizer = await tf.AutoTokenizer.from_pretrained(path.resolve(dir), { local_files_only: true });
  const r = await perplexity(model as never, text, { seqlen: evalSeqlen, tokenizer: tokenizer as never, limitWindows: windows });
  await (model as any).dispose?.(); // eslint-disable-line @typescript-eslint/no-explicit-any
  return r.ppl;
}

const t0 = performance.now();
const { model } = await loadModelDir(modelDir);
await pruneModel(model, { method, sparsity, calibration: { files: [calibration] }, nsamples, seqlen });
const tPrune = (performance.now() - t0) / 1000;
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const rtnDir = path.join(out, 'rtn');
const gptqDir = path.join(out, 'gptq');
await savePruned(model, rtnDir, { quantize: 'q4' });
const t1 = performance.now();
const g = await savePruned(model, gptqDir, { quantize: 'q4', gptq: true });
const tGptq = (performance.now() - t1) / 1000;
console.error(`pruned in ${tPrune.toFixed(0)} s; GPTQ save in ${tGptq.toFixed(0)} s (${g?.gptq?.linears} linears)`);

const p0 = await ppl(rtnDir, 'fp32');
const pr = await ppl(rtnDir, 'q4');
const pg = await ppl(gptqDir, 'q4');
const q4 = (d: string) => onnxFileSize(path.join(d, 'onnx/model_q4.onnx'));
const d = (p: number) => `${p >= p0 ? '+' : ''}${((100 * (p - p0)) / p0).toFixed(2)} %`;
console.log(`${path.basename(modelDir)}, ${method} ${sparsity * 100} %, calibration ${nsamples} × ${seqlen}, ppl on ${windows} × ${evalSeqlen} tokens of ${path.basename(evalFile)}\n`);
console.log('| variant | file bytes | ppl | Δppl vs pruned fp32 |\n|---|---:|---:|---:|');
console.log(`| pruned fp32 | ${onnxFileSize(floatOnnxFile(rtnDir))} | ${p0.toFixed(3)} | |`);
console.log(`| + q4 round-to-nearest | ${q4(rtnDir)} | ${pr.toFixed(3)} | ${d(pr)} |`);
console.log(`| + q4 GPTQ | ${q4(gptqDir)} | ${pg.toFixed(3)} | ${d(pg)} |`);
console.log(`\nGPTQ time / pruning time (same run, shared machine): ${(tGptq / tPrune).toFixed(2)}`);
