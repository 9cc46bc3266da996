/**
 * Scale bench: a real-size onnx-community layout (test/fixtures/community.ts — published config, random weights),
 * loaded as a user does (loadModelDir → from_pretrained), pruned (sequential Wanda by default) on nsamples × seqlen
 * deterministic random token ids, saved. Rows: load, calibration, method, commit, save and total seconds (from the
 * prune report), one plain onnxruntime forward over the same tokens, the ratios to it, peak RSS and peak RSS / fp32
 * weight bytes. The fixture build and the forward run in child processes, so the peak RSS is the prune's own.
 *
 *   npm run bench -- scale [--shape smollm2-135m|qwen2.5-0.5b|llama3.2-1b|llama3.2-3b] [--nsamples 32] [--seqlen 512]
 *                          [--method wanda|sparsegpt|magnitude] [--blocks n] [--dir <fixture dir, kept>]
 *                          [--block-weights inputs|initializers] [--no-forward] [--trace <file.json>]
 *   --no-forward: skip the plain forward (and the rows that divide by it), for repeated peak-RSS runs.
 *   --trace: a memory trace (bench/memtrace.ts) with a mark at load, plan, every calibration batch, every linear's
 *   method call, commit and save; written as JSON (and each mark as it is made to <file.json>l, JSON lines), the
 *   phases that raised the high-water mark printed to stderr.
 *   npx tsx bench/scale.bench.ts --shape smollm2-135m                       # the same, directly
 *
 * Timings are wall seconds; on a shared machine read the ratios (same run), not the absolute numbers.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { buildFeeds } from '../src/eval/forward.js';
import { loadModelDir } from '../src/model/index.js';
import { planPrune, pruneModel } from '../src/prune.js';
import { savePruned } from '../src/save.js';
import { COMMUNITY_SHAPES } from '../test/fixtures/community.js';
import { ratio, record, value } from './harness.js';
import { tokenIds } from '../test/kernels/rng.js';
import { getMethod } from '../src/methods/index.js';
import { MemTrace } from './memtrace.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: opt } = parseArgs({
  options: {
    shape: { type: 'string', default: 'smollm2-135m' },
    nsamples: { type: 'string', default: '32' },
    seqlen: { type: 'string', default: '512' },
    method: { type: 'string', default: 'wanda' },
    blocks: { type: 'string' },
    dir: { type: 'string' },
    'block-weights': { type: 'string', default: 'inputs' },
    case: { type: 'string' },
    json: { type: 'boolean' },
    'no-forward': { type: 'boolean' },
    trace: { type: 'string' },
  },
  strict: false,
});
const shapeName = String(opt.shape);
const shape = COMMUNITY_SHAPES[shapeName];
if (!shape) throw new Error(`--shape must be one of ${Object.keys(COMMUNITY_SHAPES).join(', ')}`);
const nsamples = Number(opt.nsamples);
const seqlen = Number(opt.seqlen);
const method = String(opt.method) as 'wanda' | 'sparsegpt' | 'magnitude';
const blockWeights = String(opt['block-weights']) as 'inputs' | 'initializers';
const BATCH = 8;

/** CPU seconds (user + system, all threads of this process) since `c0`: on a shared machine less noisy than wall time. */
const cpuSince = (c0: NodeJS.CpuUsage): number => {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
};
const peakMB = (): number => (process.resourceUsage().maxRSS * 1024) / 2 ** 20;

/** Child: one plain forward of the model over the calibration tokens; prints { seconds, batch, peakMB }. */
async function forwardCase(dir: string): Promise<void> {
  const s = await ort.InferenceSession.create(path.join(dir, 'onnx/model.onnx'), { graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const ids = tokenIds(nsamples * seqlen, shape!.vocab);
  // Logits are [batch × seqlen × vocab] float32: batch so that they stay under 512 MB (Qwen's vocab is 151936).
  const batch = Math.max(1, Math.min(BATCH, Math.floor(2 ** 29 / (seqlen * shape!.vocab * 4))));
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < nsamples; i += batch) {
    const b = Math.min(batch, nsamples - i);
    await s.run(buildFeeds(s, ids.subarray(i * seqlen, (i + b) * seqlen), b, seqlen, { config }), ['logits']);
  }
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ seconds, cpuSeconds: cpuSince(c0), batch, peakMB: peakMB() }));
}

function child(args: string[]): string {
  return execFileSync(process.execPath, [...process.execArgv, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * 2 ** 20 });
}

async function main(): Promise<void> {
  const keep = typeof opt.dir === 'string';
  const dir = keep ? path.resolve(String(opt.dir)) : path.join(mkdtempSync(path.join(os.tmpdir(), `dsa-scale-${shapeName}-`)), 'model');
  const blocksArg = opt.blocks ? ['--blocks', String(opt.blocks)] : [];
  try {
    if (!existsSync(path.join(dir, 'onnx/model.onnx'))) {
      const t = performance.now();
      child([path.join(here, '../test/fixtures/community.ts'), shapeName, dir, '--no-fp16', ...blocksArg]);
      console.error(`built ${shapeName} in ${((performance.now() - t) / 1000).toFixed(1)} s at ${dir}`);
    }
    const fwd = opt['no-forward'] ? { seconds: NaN, cpuSeconds: NaN, batch: 0, peakMB: NaN } : JSON.parse(child([fileURLToPath(import.meta.url), '--case', 'forward', '--dir', dir, '--shape', shapeName, '--nsamples', String(nsamples), '--seqlen', String(seqlen)]).trim().split('\n').pop()!) as { seconds: number; cpuSeconds: number; batch: number; peakMB: number };
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const blocks = Number(cfg.num_hidden_layers);
    const h = shape!.hidden, qd = shape!.heads * shape!.headDim, kvd = shape!.kvHeads * shape!.headDim;
    const params = 2 * shape!.vocab * h + blocks * (h * (qd + 2 * kvd) + qd * h + 3 * h * shape!.inter);
    const weightBytes = params * 4;

    const runtimeMB = process.memoryUsage().rss / 2 ** 20; // node + onnxruntime + transformers.js, before the model
    const trace = typeof opt.trace === 'string' ? new MemTrace(20, `${String(opt.trace)}l`) : undefined;
    trace?.mark('runtime');
    const t0 = performance.now();
    const { model, prunable } = await loadModelDir(dir, { dtype: 'fp32' });
    const load = (performance.now() - t0) / 1000;
    trace?.mark('loaded');
    let onProgress: ((p: { phase: string; block?: number }) => void) | undefined;
    if (trace) {
      // Marks inside the prune: every calibration batch (onProgress), every linear's method call, the commit.
      let batch = 0;
      let last = '';
      onProgress = (p) => {
        const key = `${p.phase} b${p.block ?? '-'}`;
        batch = key === last ? batch + 1 : 0;
        last = key;
        trace.mark(`${key} #${batch}`);
      };
      const m = getMethod(method);
      const prune = m.prune.bind(m);
      m.prune = async (ctx) => {
        trace.mark(`method ${ctx.name ?? '?'}`);
        const r = await prune(ctx);
        trace.mark(`after method ${ctx.name ?? '?'}`);
        return r;
      };
      const commit = prunable.commit.bind(prunable);
      prunable.commit = async (o) => {
        trace.mark('commit');
        await commit(o);
        trace.mark('after commit');
      };
    }
    const pruneOptions = { method, sparsity: 0.5, calibration: { ids: tokenIds(nsamples * seqlen, shape!.vocab) }, nsamples, seqlen, batchSize: BATCH, blockWeights, onProgress };
    const estimateMB = (await planPrune(model, pruneOptions)).memory.peakBytes / 2 ** 20;
    trace?.mark('planned');
    const c0 = process.cpuUsage();
    const report = await pruneModel(model, pruneOptions);
    const pruneCpu = cpuSince(c0);
    trace?.mark('pruned');
    const out = path.join(path.dirname(dir), 'pruned');
    rmSync(out, { recursive: true, force: true });
    const t1 = performance.now();
    await savePruned(model, out);
    const save = (performance.now() - t1) / 1000;
    trace?.mark('saved');
    if (process.env.DSA_BENCH_KEEP_PRUNED !== '1') rmSync(out, { recursive: true, force: true });
    if (trace) {
      trace.stop();
      trace.write(String(opt.trace));
      const f = (x: number): string => x.toFixed(0);
      for (const r of trace.rises().slice(0, 12)) {
        const a = r.at;
        console.error(`HWM ${f(r.from)} → ${f(r.to)} MiB in "${r.phase}"${a ? ` (highest sample: VmRSS ${f(a.vmRSS)}, anon ${f(a.rssAnon)}, file ${f(a.rssFile)}, heap ${f(a.heapUsed)} of ${f(a.heapTotal ?? 0)}, external ${f(a.external)}, arrayBuffers ${f(a.arrayBuffers)})` : ''}`);
      }
    }

    const tag = `${shapeName}${opt.blocks ? `@${String(opt.blocks)}b` : ''} ${method} ${nsamples}×${seqlen}${blockWeights === 'inputs' ? '' : ` (block weights as ${blockWeights})`}`;
    const forward = record({ name: `${tag}: one plain forward`, seconds: fwd.seconds, peakRssMB: fwd.peakMB, maxRssMB: fwd.peakMB, notes: `batch ${fwd.batch}, logits fetched` });
    const rows = {
      load: record({ name: `${tag}: load`, seconds: load }),
      calibration: record({ name: `${tag}: calibration`, seconds: report.seconds.calibration }),
      method: record({ name: `${tag}: method`, seconds: report.seconds.prune }),
      commit: record({ name: `${tag}: commit`, seconds: report.seconds.commit }),
      total: record({ name: `${tag}: pruneModel total`, seconds: report.seconds.total, peakRssMB: peakMB(), maxRssMB: peakMB() }),
      save: record({ name: `${tag}: save`, seconds: save }),
    };
    ratio(`${tag}: pruneModel / forward`, rows.total, forward);
    ratio(`${tag}: method / pruneModel`, rows.method, rows.total);
    value(`${tag}: pruneModel CPU / forward CPU`, pruneCpu / fwd.cpuSeconds, '×', `CPU s (user + system) ${pruneCpu.toFixed(1)} / ${fwd.cpuSeconds.toFixed(1)}`);
    const sec = report.seconds;
    if (sec.pruneCpu !== undefined) value(`${tag}: method CPU / pruneModel CPU`, sec.pruneCpu / pruneCpu, '×', `CPU s (user + system) ${sec.pruneCpu.toFixed(1)} / ${pruneCpu.toFixed(1)}; method CPU / forward CPU ${(sec.pruneCpu / fwd.cpuSeconds).toFixed(3)}`);
    if (sec.calibrationStatistics !== undefined) {
      value(`${tag}: calibration statistics / output passes`, sec.calibrationStatistics, 's', `output passes ${sec.calibrationOutput!.toFixed(1)} s, prefix ${sec.calibrationPrefix!.toFixed(1)} s, session builds ${sec.calibrationBuild!.toFixed(2)} s`);
    }
    ratio(`${tag}: save / forward`, rows.save, forward);
    value(`${tag}: peak RSS`, peakMB(), 'MB', 'load + prune + save, one process');
    value(`${tag}: fp32 weight bytes`, weightBytes / 2 ** 20, 'MB', `${(params / 1e6).toFixed(1)} M parameters`);
    value(`${tag}: peak RSS / weight bytes`, (peakMB() * 2 ** 20) / weightBytes, '×');
    value(`${tag}: runtime RSS before loading`, runtimeMB, 'MB', 'node + onnxruntime + transformers.js');
    value(`${tag}: (peak RSS − runtime) / weight bytes`, ((peakMB() - runtimeMB) * 2 ** 20) / weightBytes, '×');
    value(`${tag}: estimated peak (planPrune)`, estimateMB, 'MB', `src/model/memory.ts; measured / estimated = ${(peakMB() / estimateMB).toFixed(2)}`);
    value(`${tag}: realised sparsity`, report.realizedSparsity);
    console.error(JSON.stringify({ shape: shapeName, blocks, nsamples, seqlen, method, blockWeights, load, seconds: report.seconds, pruneCpu, save, forward: fwd, loadavg: os.loadavg(), peakMB: peakMB(), runtimeMB, estimateMB, weightMB: weightBytes / 2 ** 20 }));
  } finally {
    if (!keep) rmSync(path.dirname(dir), { recursive: true, force: true });
  }
}

if (opt.case === 'forward') await forwardCase(String(opt.dir));
else await main();
