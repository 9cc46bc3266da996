/**
 * Per-op onnxruntime profile of the sequential calibration passes against one plain forward (issue #17).
 *
 *   npx tsx bench/passes-profile.bench.ts --dir <SmolLM2-135M fixture> [--nsamples 16] [--case forward|calib|both|analyze]
 *
 * `calib`: runCalibration (sequential, sq only, no-op prune) with profiling on in every block session;
 * `forward`: the unmodified model over the same tokens at the same batch; `both`: the two in one process (forward
 * first), so that their shares are measured under the same load; `analyze`: only the aggregation, of --out/analyze. Writes onnxruntime's JSON profiles to
 * --out (default /tmp/dsa-passes-profile) and prints per-op-type kernel time shares (first run of each session
 * excluded: arena warm-up).
 */
import { readFileSync, readdirSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { buildFeeds } from '../src/eval/forward.js';
import { loadModelDir } from '../src/model/index.js';
import { runCalibration } from '../src/calibration/index.js';
import { tokenIds } from '../test/kernels/rng.js';

const { values: opt } = parseArgs({
  options: {
    dir: { type: 'string' }, nsamples: { type: 'string', default: '16' }, seqlen: { type: 'string', default: '512' },
    batch: { type: 'string', default: '8' }, case: { type: 'string', default: 'calib' }, out: { type: 'string', default: '/tmp/dsa-passes-profile' },
    vocab: { type: 'string', default: '49152' },
  },
});
const dir = path.resolve(String(opt.dir));
const nsamples = Number(opt.nsamples), seqlen = Number(opt.seqlen), batch = Number(opt.batch);
const out = path.resolve(String(opt.out), String(opt.case));
mkdirSync(out, { recursive: true });
const ids = tokenIds(nsamples * seqlen, Number(opt.vocab));
let k = 0;
const create = ort.InferenceSession.create.bind(ort.InferenceSession) as (...a: unknown[]) => Promise<ort.InferenceSession>;
(ort.InferenceSession as unknown as { create: unknown }).create = (src: unknown, o?: ort.InferenceSession.SessionOptions) =>
  create(src, { ...(o ?? {}), enableProfiling: true, profileFilePrefix: path.join(out, `s${k++}`) });

const c0 = process.cpuUsage();
if (opt.case === 'analyze') {
  // only the aggregation below, over the profiles already in --out/analyze
} else if (opt.case === 'forward' || opt.case === 'both') {
  const s = await ort.InferenceSession.create(path.join(dir, 'onnx/model.onnx'), { graphOptimizationLevel: 'all', logSeverityLevel: 3 });
  const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  for (let i = 0; i < nsamples; i += batch) {
    const b = Math.min(batch, nsamples - i);
    await s.run(buildFeeds(s, ids.subarray(i * seqlen, (i + b) * seqlen), b, seqlen, { config }), ['logits']);
  }
  await s.release();
}
if (opt.case === 'calib' || opt.case === 'both') {
  const { prunable: pm } = await loadModelDir(dir, { dtype: 'fp32' });
  const r = await runCalibration(pm, ids, { nsamples, seqlen, batchSize: batch, needs: { sq: true, gram: false } }, () => {});
  console.error(JSON.stringify(r.seconds));
}
const c = process.cpuUsage(c0);
console.error(`cpu ${((c.user + c.system) / 1e6).toFixed(1)} s`);

// Aggregate per session file: each model_run classified as a statistics run (a ReduceSumSquare / ReduceSum ran in it) or not,
// each session's first run skipped (arena warm-up).
interface Ev { cat: string; name: string; dur: number; ts: number; args?: { op_name?: string } }
for (const f of readdirSync(out).filter((x) => x.endsWith('.json')).sort()) {
  const text = readFileSync(path.join(out, f), 'utf8');
  if (text.length === 0) continue; // a session never released (transformers.js's own)
  const ev = JSON.parse(text) as Ev[];
  const runs = ev.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  if (runs.length === 0) continue;
  const nodes = ev.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  const groups = new Map<string, { runs: number; runUs: number; by: Map<string, number>; total: number }>();
  runs.forEach((r, i) => {
    if (i === 0 && runs.length > 1) return;
    const inRun = nodes.filter((e) => e.ts >= r.ts && e.ts <= r.ts + r.dur);
    const kind = inRun.some((e) => e.args?.op_name === 'ReduceSumSquare' || e.args?.op_name === 'ReduceSum') ? 'stats' : 'plain';
    const g = groups.get(kind) ?? { runs: 0, runUs: 0, by: new Map<string, number>(), total: 0 };
    groups.set(kind, g);
    g.runs++;
    g.runUs += r.dur;
    for (const e of inRun) {
      const op = e.args?.op_name ?? '?';
      g.by.set(op, (g.by.get(op) ?? 0) + e.dur);
      if (op !== 'If') g.total += e.dur;
    }
  });
  for (const [kind, g] of groups) {
    const rows = [...g.by].sort((a, b) => b[1] - a[1]).map(([op, d]) => `${op.padEnd(24)} ${(d / 1e3 / g.runs).toFixed(1).padStart(8)} ms ${((100 * d) / g.total).toFixed(1).padStart(5)} %`);
    console.log(`${f} [${kind}]: runs ${g.runs}, model_run ${(g.runUs / 1e3 / g.runs).toFixed(1)} ms/run, kernels (If excluded) ${(g.total / 1e3 / g.runs).toFixed(1)} ms/run\n  ${rows.join('\n  ')}`);
  }
}
