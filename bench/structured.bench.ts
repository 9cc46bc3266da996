/**
 * Structured FFN pruning on bench-12l: for 10 / 20 / 30 % of the block linear parameters removed (FLAP score with bias
 * compensation, uniform shares, sequential), in one run: plain onnxruntime forward throughput (tokens/s, batch 8 × 512)
 * before/after, transformers.js generate throughput (greedy, 128 new tokens, batch 1) before/after, the speed-up the
 * multiply-accumulate count predicts, ONNX file bytes, SOTU perplexity. Then the quality comparisons at 20 %: flap vs
 * wanda-sp vs magnitude (uniform), uniform vs OWL, and unstructured Wanda at the same parameter fraction — on SOTU and
 * on WikiText-2 (a second held-out text).
 *
 *   npx tsx bench/structured.bench.ts                 # 128 × 512 calibration (the protocol)
 *   npx tsx bench/structured.bench.ts --nsamples 32 --eval-windows 32   # quicker
 *   npx tsx bench/structured.bench.ts --sparsities 0.25 --skip-quality    # the 25 % target only
 *   npx tsx bench/structured.bench.ts --sparsities none --skip-quality --q4   # equal size after q4 only
 *   npx tsx bench/structured.bench.ts --depth --nsamples 16 --eval-windows 16   # --target depth rows (bi, loss at 10 / 20 %)
 *   npx tsx bench/structured.bench.ts --sparsities none --quality 1,4,10 --searched search.json   # a structured search's widths vs uniform / OWL
 *   npm run bench -- structured
 *
 * Timing on a shared machine is noisy: dense and pruned are measured alternately in the same run, and the ratios are
 * what to read: the two sessions run alternately and the best run of each counts.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { AutoModelForCausalLM, AutoTokenizer, Tensor, env } from '@huggingface/transformers';
import '../src/index.js';
import { flapGlobal, owl, pruneModel, savePruned, uniform } from '../src/index.js';
import { perplexity } from '../src/eval/perplexity.js';
import { buildFeeds } from '../src/eval/forward.js';
import { tokenizeText } from '../src/data/text.js';
import { disableAutoPrint, record, value } from './harness.js';
import { BATCH, SEQLEN, alternatingForwardTps, benchSessionOptions, calibrationWindows, haveBench12l, modelDir, nsamplesArg, shared } from './bench12l.js';
import { onnxFileBytes } from '../src/save.js';
import { searchedShares } from '../src/search/structured-fitness.js';

env.allowRemoteModels = false;
const NSAMPLES = nsamplesArg();
const argAfter = (flag: string): string | undefined => (process.argv.includes(flag) ? process.argv[process.argv.indexOf(flag) + 1] : undefined);
const EVAL_WINDOWS = Number(argAfter('--eval-windows') ?? 64);
/** `--sparsities 0.25` (default 0.1,0.2,0.3); `--skip-quality` leaves out the 20 % comparisons. */
const SPARSITIES = (argAfter('--sparsities') ?? '0.1,0.2,0.3').split(',').map(Number).filter((x) => x > 0 && x < 1); // 'none': quality only
const SKIP_QUALITY = process.argv.includes('--skip-quality');
/** `--forward-shape 32x128`: batch × length of the plain forward (default BATCH × SEQLEN, the calibration shape). */
const [FWD_B, FWD_T] = (argAfter('--forward-shape') ?? `${BATCH}x${SEQLEN}`).split('x').map(Number) as [number, number];
const cfg = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as Record<string, number>;
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-structured-bench-'));

/** Multiply-accumulates per token of a forward at SEQLEN: block linears + lm_head + attention scores (QKᵀ, AV). */
function macsPerToken(ffnWidths: number[], seqlen = FWD_T): number {
  const h = cfg.hidden_size!;
  const hd = cfg.head_dim ?? h / cfg.num_attention_heads!;
  const q = cfg.num_attention_heads! * hd;
  const kv = cfg.num_key_value_heads! * hd;
  const ctx = (seqlen + 1) / 2; // mean causal context
  let m = 0;
  for (const f of ffnWidths) m += h * q * 2 + h * kv * 2 + 3 * h * f + 2 * ctx * q;
  return m + cfg.vocab_size! * h;
}

const onnxBytes = (dir: string, file = 'model.onnx'): number => onnxFileBytes(path.join(dir, 'onnx'), file);

/** Dense and pruned forward tokens/s at the bench's forward shape, alternately, best of `reps` (bench12l.ts). */
const forwardTps = (dirs: [string, string], ids: Int32Array, reps = Number(argAfter('--forward-reps') ?? 7)): Promise<[number, number]> =>
  alternatingForwardTps(dirs, ids, { batch: FWD_B, seqlen: FWD_T, configs: [cfg, cfg], reps });

/** Kernel time of one profiled forward, by part of the graph (node names of the exporter's layout). */
interface TimeShares { ffn: number; attentionCore: number; projections: number; lmHead: number; other: number; total: number }

/**
 * Where one plain forward's time goes (onnxruntime's own profiler, the warm second run): the FFN (every node under
 * `/mlp/`: gate/up/down MatMuls and the element-wise activation, all of which shrink with the width), the attention
 * core (scores, mask, softmax, AV, rotary — they do not), the q/k/v/o projections, lm_head, the rest. The MAC count
 * alone misses that softmax and the mask add over [heads × T × T] are memory-bound and cost far more than their MACs.
 */
async function profileShares(dir: string, ids: Int32Array): Promise<TimeShares> {
  const prefix = path.join(work, `profile-${path.basename(dir)}-${Date.now()}`);
  const s = await ort.InferenceSession.create(path.join(dir, 'onnx/model.onnx'), { ...benchSessionOptions(), enableProfiling: true, profileFilePrefix: prefix });
  const feeds = buildFeeds(s, ids.subarray(0, FWD_B * FWD_T), FWD_B, FWD_T, { config: cfg });
  const REPS = 5;
  for (let r = 0; r < REPS + 1; r++) await s.run(feeds, ['logits']);
  s.endProfiling();
  await s.release();
  const file = readdirSync(work).map((f) => path.join(work, f)).find((f) => f.startsWith(prefix) && f.endsWith('.json'));
  if (!file) throw new Error(`onnxruntime wrote no profile for ${dir}`);
  const events = JSON.parse(readFileSync(file, 'utf8')) as { cat: string; name: string; ts: number; dur: number }[];
  rmSync(file, { force: true });
  // Each warm run on its own; the least disturbed one (smallest kernel total) counts, as in forwardTps.
  const runs = events.filter((e) => e.name === 'model_run').slice(1);
  let best: TimeShares | undefined;
  for (const run of runs) {
    const t: TimeShares = { ffn: 0, attentionCore: 0, projections: 0, lmHead: 0, other: 0, total: 0 };
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < run.ts || e.ts > run.ts + run.dur) continue;
      const n = e.name;
      const part: keyof TimeShares = n.includes('/mlp/') ? 'ffn'
        : /_proj\//.test(n) && n.includes('/self_attn/') ? 'projections'
          : n.includes('/self_attn/') ? 'attentionCore'
            : n.includes('lm_head') ? 'lmHead' : 'other';
      t[part] += e.dur;
      t.total += e.dur;
    }
    if (!best || t.total < best.total) best = t;
  }
  return best!;
}

/** New tokens/s of transformers.js generate (greedy, 128 new tokens, batch 1), dense and pruned alternately, best of `reps`. */
async function generateTps(dirs: [string, string], prompt: number[], reps = Number(argAfter('--gen-reps') ?? 3)): Promise<[number, number]> {
  const models = await Promise.all(dirs.map((d) => AutoModelForCausalLM.from_pretrained(d, { dtype: 'fp32' })));
  const input_ids = new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
  const attention_mask = new Tensor('int64', BigInt64Array.from(prompt.map(() => 1n)), [1, prompt.length]);
  const run = async (k: number) => {
    const t0 = performance.now();
    const out = (await models[k]!.generate({ input_ids, attention_mask, max_new_tokens: 128, min_new_tokens: 128, do_sample: false } as never)) as { dims: number[] };
    return (out.dims[1]! - prompt.length) / ((performance.now() - t0) / 1000);
  };
  for (let k = 0; k < 2; k++) await run(k);
  const best = [0, 0];
  for (let r = 0; r < reps; r++) for (let k = 0; k < 2; k++) best[k] = Math.max(best[k]!, await run(k));
  for (const m of models) await m.dispose();
  return [best[0]!, best[1]!];
}

async function ppl(dir: string, ids: Int32Array, dtype: 'fp32' | 'q4' = 'fp32'): Promise<number> {
  const m = await AutoModelForCausalLM.from_pretrained(dir, { dtype });
  const r = await perplexity(m as never, ids, { seqlen: SEQLEN, limitWindows: EVAL_WINDOWS });
  await m.dispose();
  return r.ppl;
}

interface Variant { label: string; options: Record<string, unknown> }

async function main(): Promise<void> {
  if (!haveBench12l('structured')) return;
  disableAutoPrint();
  const tok = await AutoTokenizer.from_pretrained(modelDir);
  const sotu = tokenizeText(tok as never, readFileSync(path.join(shared, 'data/bench-corpus/eval_sotu_2001_2021.txt'), 'utf8'));
  const wiki = tokenizeText(tok as never, readFileSync(path.join(shared, 'data/text/wikitext2_raw_test.txt'), 'utf8'));
  const w = await calibrationWindows(NSAMPLES);
  const prompt = Array.from(sotu.subarray(0, 16));
  const base = { calibration: { ids: w }, nsamples: NSAMPLES, seqlen: SEQLEN, batchSize: BATCH };

  const prune = async (v: Variant, quantize?: 'q4'): Promise<{ dir: string; widths: number[]; seconds: number }> => {
    const model = await AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' });
    const t0 = performance.now();
    const r = await pruneModel(model, { ...base, ...v.options } as never);
    const seconds = (performance.now() - t0) / 1000;
    const dir = path.join(work, v.label.replace(/\W+/g, '_'));
    await savePruned(model, dir, quantize ? { quantize: [quantize] } : {});
    await model.dispose();
    return { dir, widths: r.structured?.blocks.map((b) => b.ffnAfter) ?? Array(cfg.num_hidden_layers).fill(cfg.intermediate_size), seconds };
  };

  const denseWidths = Array(cfg.num_hidden_layers).fill(cfg.intermediate_size) as number[];
  const dense = { bytes: onnxBytes(modelDir), sotu: await ppl(modelDir, sotu), wiki: await ppl(modelDir, wiki) };
  value('dense SOTU ppl', dense.sotu);
  value('dense WikiText-2 ppl', dense.wiki);
  process.stderr.write(`dense: SOTU ${dense.sotu.toFixed(2)}, WikiText-2 ${dense.wiki.toFixed(2)}, ${dense.bytes} bytes\n`);
  const table: string[] = [
    '| removed | FFN width (mean) | forward tok/s dense → pruned | measured speed-up | MAC-predicted | time-predicted | FFN kernel time pruned / dense | generate tok/s dense → pruned | generate speed-up | onnx bytes (× dense) | SOTU ppl | WikiText-2 ppl |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  if (DEPTH) {
    await depthRows({ w, forwardTps, generateTps, ppl, onnxBytes, dense, sotu, wiki, prompt });
    return;
  }
  const denseProfile = SPARSITIES.length ? await profileShares(modelDir, sotu) : undefined;
  if (denseProfile) {
    const pct = (x: number) => `${((100 * x) / denseProfile.total).toFixed(1)} %`;
    process.stderr.write(`dense forward ${FWD_B} × ${FWD_T}, kernel time ${(denseProfile.total / 1000).toFixed(0)} ms: FFN ${pct(denseProfile.ffn)}, attention core ${pct(denseProfile.attentionCore)}, q/k/v/o ${pct(denseProfile.projections)}, lm_head ${pct(denseProfile.lmHead)}, other ${pct(denseProfile.other)}\n`);
    value('dense FFN share of forward kernel time', denseProfile.ffn / denseProfile.total);
    value('dense attention-core share of forward kernel time', denseProfile.attentionCore / denseProfile.total);
  }
  for (const S of SPARSITIES) {
    const p = await prune({ label: `flap-${S}`, options: { method: 'structured', target: ['ffn'], score: 'flap', sparsity: S } });
    // Dense and pruned alternately, so machine load hits both alike.
    const [fd, fp] = await forwardTps([modelDir, p.dir], sotu);
    const [gd, gp] = await generateTps([modelDir, p.dir], prompt);
    const predicted = macsPerToken(denseWidths) / macsPerToken(p.widths);
    const bytes = onnxBytes(p.dir);
    const s = await ppl(p.dir, sotu);
    const wk = await ppl(p.dir, wiki);
    const meanW = p.widths.reduce((a, b) => a + b, 0) / p.widths.length;
    // What the FFN's measured share of the dense forward predicts if its time scales with the width.
    const timePredicted = denseProfile!.total / (denseProfile!.total - denseProfile!.ffn * (1 - meanW / cfg.intermediate_size!));
    const ffnRatio = (await profileShares(p.dir, sotu)).ffn / denseProfile!.ffn;
    value(`time-predicted speed-up ${S * 100}%`, timePredicted, '×');
    value(`FFN kernel time pruned / dense ${S * 100}%`, ffnRatio, '×', `width ratio ${(meanW / cfg.intermediate_size!).toFixed(3)}`);
    record({ name: `prune flap ${S * 100}%`, seconds: p.seconds });
    value(`forward speed-up ${S * 100}%`, fp / fd, '×', `${fd.toFixed(0)} → ${fp.toFixed(0)} tok/s`);
    value(`MAC-predicted speed-up ${S * 100}%`, predicted, '×');
    value(`generate speed-up ${S * 100}%`, gp / gd, '×', `${gd.toFixed(1)} → ${gp.toFixed(1)} tok/s`);
    value(`bytes ${S * 100}%`, bytes / dense.bytes, '× dense', `${bytes}`);
    value(`SOTU ppl flap ${S * 100}%`, s);
    const row = `| ${S * 100}% | ${meanW.toFixed(1)} / ${cfg.intermediate_size} | ${fd.toFixed(0)} → ${fp.toFixed(0)} | ${(fp / fd).toFixed(3)}× | ${predicted.toFixed(3)}× | ${timePredicted.toFixed(3)}× | ${ffnRatio.toFixed(3)} (width ${(meanW / cfg.intermediate_size!).toFixed(3)}) | ${gd.toFixed(1)} → ${gp.toFixed(1)} | ${(gp / gd).toFixed(3)}× | ${bytes.toLocaleString('en-US')} (${(bytes / dense.bytes).toFixed(3)}) | ${s.toFixed(2)} | ${wk.toFixed(2)} |`;
    table.push(row);
    process.stderr.write(`${row}\n`);
    rmSync(p.dir, { recursive: true, force: true });
  }

  // Quality at 20 %.
  const q: string[] = ['| 20 % of block linear parameters removed | SOTU ppl | WikiText-2 ppl | onnx bytes (× dense) |', '|---|---|---|---|',
    `| dense | ${dense.sotu.toFixed(2)} | ${dense.wiki.toFixed(2)} | 1.000 |`];
  const allVariants: Variant[] = [
    { label: 'structured flap, uniform', options: { method: 'structured', target: ['ffn'], score: 'flap', sparsity: 0.2, allocator: uniform() } },
    { label: 'structured wanda-sp, uniform', options: { method: 'structured', target: ['ffn'], score: 'wanda-sp', sparsity: 0.2, allocator: uniform() } },
    { label: 'structured magnitude, uniform', options: { method: 'structured', target: ['ffn'], score: 'magnitude', sparsity: 0.2, allocator: uniform() } },
    { label: 'structured flap, OWL (M 5, λ 0.08)', options: { method: 'structured', target: ['ffn'], score: 'flap', sparsity: 0.2, allocator: owl({ M: 5, lambda: 0.08 }) } },
    { label: 'structured wanda-sp, OWL (M 5, λ 0.08)', options: { method: 'structured', target: ['ffn'], score: 'wanda-sp', sparsity: 0.2, allocator: owl({ M: 5, lambda: 0.08 }) } },
    { label: 'unstructured Wanda 20 %, uniform (same zeros, dense file)', options: { method: 'wanda', sparsity: 0.2 } },
    { label: 'structured flap, flap-global (FLAP AL-AM ranking)', options: { method: 'structured', target: ['ffn'], score: 'flap', sparsity: 0.2, allocator: flapGlobal() } },
    { label: 'structured wanda-sp, flap-global (FLAP AL-AM ranking)', options: { method: 'structured', target: ['ffn'], score: 'wanda-sp', sparsity: 0.2, allocator: flapGlobal() } },
    { label: 'structured flap, flap-global, one-shot (FLAP\'s own mask)', options: { method: 'structured', target: ['ffn'], score: 'flap', sparsity: 0.2, allocator: flapGlobal(), mode: 'oneshot' } },
    { label: 'structured flap, uniform, one-shot', options: { method: 'structured', target: ['ffn'], score: 'flap', sparsity: 0.2, allocator: uniform(), mode: 'oneshot' } },
  ];
  // `--searched <search.json>`: the per-block shares a `dsa-prune search --method structured` found (index 10 on).
  for (const file of (argAfter('--searched') ?? '').split(',').filter(Boolean)) {
    const r = JSON.parse(readFileSync(file, 'utf8')) as { best: { blockSparsity: number[]; ffnWidths?: number[] }; structured: { score: string }; sparsity: number };
    allVariants.push({
      label: `structured ${r.structured.score}, searched (${path.basename(file)})`,
      options: { method: 'structured', target: ['ffn'], score: r.structured.score, sparsity: r.sparsity, allocator: searchedShares(r.best.blockSparsity, file) },
    });
    if (r.best.ffnWidths) process.stderr.write(`${file}: the search's faithful widths ${r.best.ffnWidths.join(' ')}\n`);
  }
  const only = argAfter('--quality');
  const variants = SKIP_QUALITY ? [] : only ? allVariants.filter((_, i) => only.split(',').map(Number).includes(i)) : allVariants;
  for (const v of variants) {
    const p = await prune(v);
    const s = await ppl(p.dir, sotu);
    const wk = await ppl(p.dir, wiki);
    const bytes = onnxBytes(p.dir);
    value(`SOTU ppl ${v.label}`, s);
    value(`WikiText-2 ppl ${v.label}`, wk);
    q.push(`| ${v.label} | ${s.toFixed(2)} | ${wk.toFixed(2)} | ${(bytes / dense.bytes).toFixed(3)} |`);
    process.stderr.write(`${q[q.length - 1]}\n`);
    if (v.options.method === 'structured') process.stderr.write(`  FFN widths per block: ${p.widths.join(' ')}\n`);
    rmSync(p.dir, { recursive: true, force: true });
  }
  // Equal file size after q4: what each kind of pruning buys once the weights are quantized.
  const q4: string[] = ['| q4 (MatMulNBits) | model_q4.onnx bytes (× dense q4) | SOTU ppl | WikiText-2 ppl |', '|---|---|---|---|'];
  if (process.argv.includes('--q4')) {
    const q4Variants: Variant[] = [
      { label: 'dense', options: { method: 'magnitude', sparsity: 0 } },
      { label: 'structured flap 20 %', options: { method: 'structured', target: ['ffn'], score: 'flap', sparsity: 0.2 } },
      { label: 'structured flap 30 %', options: { method: 'structured', target: ['ffn'], score: 'flap', sparsity: 0.3 } },
      { label: 'unstructured Wanda 50 %', options: { method: 'wanda', sparsity: 0.5 } },
    ];
    let denseQ4 = 0;
    for (const v of q4Variants) {
      const p = await prune({ ...v, label: `q4 ${v.label}` }, 'q4');
      const bytes = onnxBytes(p.dir, 'model_q4.onnx');
      if (!denseQ4) denseQ4 = bytes;
      const s = await ppl(p.dir, sotu, 'q4');
      const wk = await ppl(p.dir, wiki, 'q4');
      q4.push(`| ${v.label} | ${bytes.toLocaleString('en-US')} (${(bytes / denseQ4).toFixed(3)}) | ${s.toFixed(2)} | ${wk.toFixed(2)} |`);
      process.stderr.write(`${q4[q4.length - 1]}\n`);
      value(`q4 SOTU ppl ${v.label}`, s);
      rmSync(p.dir, { recursive: true, force: true });
    }
  }
  process.stdout.write(`\nbench-12l structured ffn (calibration ${NSAMPLES} × ${SEQLEN}, forward ${FWD_B} × ${FWD_T}, eval ${EVAL_WINDOWS} windows of ${SEQLEN}, ${os.availableParallelism()} cores, shared machine)\n\n${table.join('\n')}\n\n${q.join('\n')}\n\n${q4.length > 2 ? q4.join('\n') + '\n' : ''}`);
}

// ---- --depth: structured --target depth rows (whole sub-layers removed; BI and loss scores) ----

/** `--depth` runs only these rows; `--depth-sparsities 0.1,0.2`, `--depth-scores bi,loss`, `--depth-unit sublayer|block`. */
const DEPTH = process.argv.includes('--depth');

/** Multiply-accumulates per token with the sub-layers in `removed` (`block.kind`) gone (same model as macsPerToken). */
function depthMacsPerToken(removed: string[]): number {
  const h = cfg.hidden_size!;
  const hd = cfg.head_dim ?? h / cfg.num_attention_heads!;
  const q = cfg.num_attention_heads! * hd;
  const kv = cfg.num_key_value_heads! * hd;
  const ctx = (SEQLEN + 1) / 2;
  let m = cfg.vocab_size! * h;
  for (let b = 0; b < cfg.num_hidden_layers!; b++) {
    if (!removed.includes(`${b}.attention`)) m += h * q * 2 + h * kv * 2 + 2 * ctx * q;
    if (!removed.includes(`${b}.mlp`)) m += 3 * h * cfg.intermediate_size!;
  }
  return m;
}

interface DepthBench {
  w: Int32Array;
  forwardTps: typeof forwardTps;
  generateTps: typeof generateTps;
  ppl: typeof ppl;
  onnxBytes: typeof onnxBytes;
  dense: { bytes: number; sotu: number; wiki: number };
  sotu: Int32Array;
  wiki: Int32Array;
  prompt: number[];
}

async function depthRows(x: DepthBench): Promise<void> {
  const sparsities = (argAfter('--depth-sparsities') ?? '0.1,0.2').split(',').map(Number);
  const scores = (argAfter('--depth-scores') ?? 'bi,loss').split(',');
  const unit = argAfter('--depth-unit') ?? 'sublayer';
  const table = [
    '| removed (target) | score | sub-layers removed | realised | forward tok/s dense → pruned | measured speed-up | MAC-predicted | generate tok/s dense → pruned | onnx bytes (× dense) | SOTU ppl | WikiText-2 ppl | prune s |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    `| 0 % (dense) | | | | | | | | ${x.dense.bytes.toLocaleString('en-US')} (1.000) | ${x.dense.sotu.toFixed(2)} | ${x.dense.wiki.toFixed(2)} | |`,
  ];
  for (const S of sparsities) {
    for (const score of scores) {
      const model = await AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' });
      const t0 = performance.now();
      const r = await pruneModel(model, { calibration: { ids: x.w }, nsamples: NSAMPLES, seqlen: SEQLEN, batchSize: BATCH, method: 'structured', target: ['depth'], depthScore: score, depthUnit: unit, sparsity: S });
      const seconds = (performance.now() - t0) / 1000;
      const removed = r.structured!.depth!.removed;
      const realised = r.realizedSparsity;
      const dir = path.join(work, `depth-${score}-${S}`);
      await savePruned(model, dir);
      await model.dispose();
      const [fd, fp] = await x.forwardTps([modelDir, dir], x.sotu);
      const [gd, gp] = process.argv.includes('--skip-generate') ? [NaN, NaN] : await x.generateTps([modelDir, dir], x.prompt);
      const predicted = depthMacsPerToken([]) / depthMacsPerToken(removed);
      const bytes = x.onnxBytes(dir);
      const s = await x.ppl(dir, x.sotu);
      const wk = await x.ppl(dir, x.wiki);
      value(`depth ${score} ${S * 100}% SOTU ppl`, s);
      value(`depth ${score} ${S * 100}% forward speed-up`, fp / fd, '×', `${fd.toFixed(0)} → ${fp.toFixed(0)} tok/s`);
      const row = `| ${S * 100}% | ${score}${unit === 'block' ? ' (blocks)' : ''} | ${removed.join(' ')} | ${(realised * 100).toFixed(2)}% | ${fd.toFixed(0)} → ${fp.toFixed(0)} | ${(fp / fd).toFixed(3)}× | ${predicted.toFixed(3)}× | ${gd.toFixed(1)} → ${gp.toFixed(1)} | ${bytes.toLocaleString('en-US')} (${(bytes / x.dense.bytes).toFixed(3)}) | ${s.toFixed(2)} | ${wk.toFixed(2)} | ${seconds.toFixed(0)} |`;
      table.push(row);
      process.stderr.write(`${row}\n`);
      rmSync(dir, { recursive: true, force: true });
    }
  }
  process.stdout.write(`\nbench-12l structured depth (calibration ${NSAMPLES} × ${SEQLEN}, eval ${EVAL_WINDOWS} windows of ${SEQLEN}, ${os.availableParallelism()} cores, shared machine)\n\n${table.join('\n')}\n`);
}

try {
  await main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
