/**
 * Sizes, perplexity and load time of dense / pruned / q8 / q4 / compressed variants (docs/compression.md).
 *   npx tsx bench/compress.bench.ts <prunedDir> [<prunedDir> …] [--dense <denseDir>] [--eval <text>] [--windows 8] [--seqlen 256]
 * Each pruned folder (written by `dsa-prune prune`) is copied, post-processed (q8, q4, compressed) and every variant is
 * loaded with transformers.js from_pretrained(dir, { dtype }) and evaluated; prints a Markdown table.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compressFolder, floatOnnxFile, onnxFileSize, writeQuantized } from '../src/compress/index.js';
import { installLoadingHook } from '../src/model/index.js';
import { perplexity } from '../src/eval/index.js';
import { takeOption } from './harness.js';

const args = process.argv.slice(2);
const opt = (name: string, d?: string): string | undefined => takeOption(args, name, d);
const denseDir = opt('dense');
const evalFile = opt('eval', path.resolve('../shared/data/text/tinystories_eval.txt'))!;
const windows = Number(opt('windows', '8'));
const seqlen = Number(opt('seqlen', '256'));
const dirs = args;

installLoadingHook();
const tf = await import('@huggingface/transformers');
tf.env.allowRemoteModels = false;
const text = readFileSync(evalFile, 'utf8').slice(0, 400_000);

async function measure(dir: string, dtype: string): Promise<{ ppl: number; loadMs: number; sample: string }> {
  const t0 = performance.now();
  dir = path.resolve(dir);
  const model = await tf.AutoModelForCausalLM.from_pretrained(dir, { dtype: dtype as 'fp32', local_files_only: true });
  const loadMs = performance.now() - t0;
  const tokenizer = await tf.AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  const r = await perplexity(model as never, text, { seqlen, tokenizer: tokenizer as never, limitWindows: windows });
  const inputs = tokenizer('Once upon a time');
  const out = await (model as any).generate({ ...inputs, max_new_tokens: 12, do_sample: false }); // eslint-disable-line @typescript-eslint/no-explicit-any
  const sample = tokenizer.decode(out[0], { skip_special_tokens: true }) as string;
  await (model as any).dispose?.(); // eslint-disable-line @typescript-eslint/no-explicit-any
  return { ppl: r.ppl, loadMs, sample };
}

const rows: string[] = ['| model | variant | file | size (bytes) | % of dense fp32 | ppl | Δppl vs pruned fp32 | load ms |', '|---|---|---|---:|---:|---:|---:|---:|'];
let denseBytes = 0;
if (denseDir) {
  denseBytes = onnxFileSize(floatOnnxFile(denseDir));
  const m = await measure(denseDir, 'fp32');
  rows.push(`| ${path.basename(denseDir)} | dense fp32 | onnx/model.onnx | ${denseBytes} | 100.0 | ${m.ppl.toFixed(3)} | | ${m.loadMs.toFixed(0)} |`);
  console.error(`dense: ${m.sample}`);
}
for (const src of dirs) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dsa-compress-bench-'));
  try {
    cpSync(src, dir, { recursive: true });
    const name = path.basename(src);
    const fp = floatOnnxFile(dir);
    const fpBytes = onnxFileSize(fp);
    const base = denseBytes || fpBytes;
    const pct = (b: number): string => ((100 * b) / base).toFixed(1);
    const m0 = await measure(dir, 'fp32');
    rows.push(`| ${name} | pruned fp32 | onnx/model.onnx | ${fpBytes} | ${pct(fpBytes)} | ${m0.ppl.toFixed(3)} | | ${m0.loadMs.toFixed(0)} |`);
    console.error(`${name} fp32: ${m0.sample}`);
    for (const kind of ['q8', 'q4'] as const) {
      const t0 = performance.now();
      const q = writeQuantized(dir, kind);
      const qs = ((performance.now() - t0) / 1000).toFixed(1);
      const m = await measure(dir, kind);
      rows.push(`| ${name} | + ${kind} | ${q.file} | ${q.bytes} | ${pct(q.bytes)} | ${m.ppl.toFixed(3)} | ${((100 * (m.ppl - m0.ppl)) / m0.ppl).toFixed(2)}% | ${m.loadMs.toFixed(0)} |`);
      console.error(`${name} ${kind} (quantized in ${qs} s): ${m.sample}`);
    }
    const t0 = performance.now();
    const c = compressFolder(dir);
    const cs = ((performance.now() - t0) / 1000).toFixed(1);
    const mc = await measure(dir, 'fp32');
    rows.push(`| ${name} | + compressed | ${c.file} | ${c.bytes} | ${pct(c.bytes)} | ${mc.ppl.toFixed(3)} | ${((100 * (mc.ppl - m0.ppl)) / m0.ppl).toFixed(2)}% | ${mc.loadMs.toFixed(0)} |`);
    console.error(`${name} compressed (in ${cs} s): ${mc.sample}`);
    const { gzipSync } = await import('node:zlib');
    const gz = gzipSync(readFileSync(fp.replace(dir, src)), { level: 9 }).length;
    const gzc = gzipSync(readFileSync(fp), { level: 9 }).length;
    rows.push(`| ${name} | gzip -9 of pruned fp32 | (reference) | ${gz} | ${pct(gz)} | | | |`);
    rows.push(`| ${name} | gzip -9 of compressed | (reference) | ${gzc} | ${pct(gzc)} | | | |`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
console.log(rows.join('\n'));
