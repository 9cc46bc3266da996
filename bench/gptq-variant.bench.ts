/**
 * GPTQ q4 variants of an already pruned folder (docs/compression.md, "GPTQ q4").
 *   npx tsx bench/gptq-variant.bench.ts <prunedDir> --calibration <file> --eval <file> [--nsamples 128] [--seqlen 512]
 *     [--eval-seqlen 512] [--windows 64] [--percdamp 0.01] [--range-search 6] [--mode sequential] [--q4-embedding q4|q8]
 *     [--act-order] [--asymmetric | --symmetric] [--lm-head tied|untied] [--rtn] [--min-elements N] [--exclude <weight,…>] [--no-embeddings]
 *     [--head-block N] [--out <dir>] [--keep]
 * --head-block: quantizeOptions.headBlockSize (q4 block of the lm_head and the 4-bit embedding table only; default 32).
 * --eval takes a comma-separated list of texts (each measured on its first `windows` windows); --keep leaves the
 * written folder in place (default: removed after the measurement).
 * Loads the pruned fp32 folder, rebuilds the calibration windows (their sha256 is printed: compare with pruning.json),
 * saves q4 with gptq (--rtn: round-to-nearest; --min-elements 200000 --no-embeddings: only bench-12l's lm_head
 * quantized; --exclude <lm_head weight> --no-embeddings: only the block linears) and measures its perplexity with transformers.js from_pretrained(dir, { dtype: 'q4' }).
 */
import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onnxFileSize } from '../src/compress/index.js';
import { loadModelDir } from '../src/model/index.js';
import { perplexity } from '../src/eval/index.js';
import { savePruned } from '../src/save.js';
import { takeOption } from './harness.js';

const args = process.argv.slice(2);
const opt = (name: string, d?: string): string | undefined => takeOption(args, name, d);
const calibration = opt('calibration')!;
const evalFile = opt('eval')!;
const nsamples = Number(opt('nsamples', '128'));
const seqlen = Number(opt('seqlen', '512'));
const evalSeqlen = Number(opt('eval-seqlen', '512'));
const windows = Number(opt('windows', '64'));
const percdamp = Number(opt('percdamp', '0.01'));
const rangeSearch = Number(opt('range-search', '6'));
const mode = opt('mode', 'sequential') as 'sequential' | 'oneshot';
const flag = (name: string): boolean => {
  const i = args.indexOf(name);
  if (i >= 0) args.splice(i, 1);
  return i >= 0;
};
const actOrder = flag('--act-order');
const rtn = flag('--rtn');
const noEmbeddings = flag('--no-embeddings');
const keep = flag('--keep');
// --asymmetric / --symmetric: GPTQ's calibration; neither: the product default (asymmetric in sequential mode)
const asymmetric = flag('--asymmetric') ? true : flag('--symmetric') ? false : undefined;
const lmHeadOpt = opt('lm-head'); // tied | untied
const lmHead = lmHeadOpt === 'tied' || lmHeadOpt === 'untied' ? lmHeadOpt : undefined;
const minElements = Number(opt('min-elements', '0'));
const exclude = opt('exclude')?.split(',') ?? [];
const embedding = opt('q4-embedding', 'q4') as 'q4' | 'q8';
const headBlockOpt = opt('head-block');
const headBlockSize = headBlockOpt === undefined ? undefined : Number(headBlockOpt);
const out = opt('out', path.join(os.tmpdir(), `dsa-gptq-variant-${process.pid}`))!;
const dir = args[0]!;

const { model } = await loadModelDir(dir);
rmSync(out, { recursive: true, force: true });
const quantizeOptions = {
  embedding, minElements, exclude, ...(noEmbeddings ? { embeddings: false } : {}),
  ...(headBlockSize !== undefined ? { headBlockSize } : {}),
};
const g = await savePruned(model, out, rtn
  ? { quantize: 'q4', quantizeOptions }
  : { quantize: 'q4', quantizeOptions, gptq: { percdamp, rangeSearch, mode, actOrder, asymmetric, lmHead }, calibration: { files: [calibration] }, nsamples, seqlen });
await (model as { dispose?: () => Promise<unknown> }).dispose?.();
const tf = await import('@huggingface/transformers');
tf.env.allowRemoteModels = false;
const m = await tf.AutoModelForCausalLM.from_pretrained(path.resolve(out), { dtype: 'q4', local_files_only: true });
const tok = await tf.AutoTokenizer.from_pretrained(path.resolve(out), { local_files_only: true });
const ppls: string[] = [];
for (const f of evalFile.split(',')) {
  const r = await perplexity(m as never, readFileSync(f, 'utf8'), { seqlen: evalSeqlen, tokenizer: tok as never, limitWindows: windows });
  ppls.push(`${path.basename(f)} ppl ${r.ppl.toFixed(3)}`);
}
await (m as { dispose?: () => Promise<unknown> }).dispose?.();
const what = rtn ? 'RTN q4' : `GPTQ q4 percdamp ${percdamp}${actOrder ? ' act_order' : ''}${asymmetric === undefined ? ' (default calibration)' : asymmetric ? ' asymmetric' : ' symmetric'}${lmHead ? ` lm_head ${lmHead}` : ''} rangeSearch ${rangeSearch} ${mode}`;
const scope = `${noEmbeddings ? 'fp32 embedding' : `${embedding} embedding`}${headBlockSize !== undefined ? `, head block ${headBlockSize}` : ''}${minElements ? `, only weights ≥ ${minElements} elements` : ''}${exclude.length ? `, float: ${exclude.join(' ')}` : ''}`;
const bytes = onnxFileSize(path.join(out, 'onnx/model_q4.onnx'));
const cpu = process.cpuUsage();
console.log(`${what}, ${scope}: ${bytes} bytes; ${ppls.join('; ')} on ${windows} × ${evalSeqlen} (calibration sha256 ${g?.gptq?.calibration.sha256}, GPTQ ${g?.gptq?.seconds.toFixed(0)} s wall; process CPU ${((cpu.user + cpu.system) / 1e6).toFixed(0)} s)`);
if (!keep) rmSync(out, { recursive: true, force: true });
