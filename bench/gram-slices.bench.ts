/**
 * The Gram XᵀX from column slices (src/calibration/graph.ts gramNodes) against one full Gemm: sequential calibration
 * with SparseGPT's statistics (Σx², XᵀX) and a method that does nothing, so the CPU seconds are the passes' own;
 * alternating runs, each configuration `--repeat` times. CPU time (user + system of the process: every onnxruntime
 * thread) is the figure on a shared machine; the statistics pass is also reported in wall seconds. Default --threads 1:
 * with a thread pool onnxruntime's idle workers spin, and the spinning (more, shorter nodes: more of it) is counted as CPU.
 *
 *   npx tsx bench/gram-slices.bench.ts --dir <model folder> [--nsamples 8] [--seqlen 512] [--repeat 2] [--width 192] [--threads 1]
 *
 * The folder is an onnx-community layout (e.g. `npx tsx test/fixtures/community.ts smollm2-135m /tmp/smol --no-fp16`,
 * or the scale bench's --dir). No assertions: test/calibration/gram-slices.test.ts checks the bits.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { configureGramSlicing, runCalibration } from '../src/calibration/index.js';
import { loadFixture } from '../test/calibration/fixture.js';
import { tokenIds } from '../test/kernels/rng.js';

const { values: opt } = parseArgs({
  options: { dir: { type: 'string' }, nsamples: { type: 'string', default: '8' }, seqlen: { type: 'string', default: '512' }, repeat: { type: 'string', default: '2' }, width: { type: 'string', default: '192' }, threads: { type: 'string', default: '1' } },
});
if (!opt.dir) throw new Error('--dir <model folder> is required');
const threads = Number(opt.threads);
const nsamples = Number(opt.nsamples), seqlen = Number(opt.seqlen), repeat = Number(opt.repeat), width = Number(opt.width);

async function once(w: number): Promise<{ cpu: number; statistics: number; output: number; total: number }> {
  configureGramSlicing({ width: w });
  const m = loadFixture(opt.dir!);
  const ids = tokenIds(nsamples * seqlen, Number(m.config?.vocab_size ?? 49152));
  const c0 = process.cpuUsage();
  const r = await runCalibration(m, ids, { nsamples, seqlen, batchSize: 8, threads, needs: { sq: true, gram: true } }, () => {});
  const c = process.cpuUsage(c0);
  return { cpu: (c.user + c.system) / 1e6, statistics: r.seconds.statistics, output: r.seconds.output, total: r.seconds.total };
}

const rows: Record<string, { cpu: number; statistics: number; output: number; total: number }[]> = { full: [], sliced: [] };
for (let i = 0; i < repeat; i++) {
  for (const [name, w] of [['full', 0], ['sliced', width]] as const) {
    const la = os.loadavg()[0]!;
    const r = await once(w);
    rows[name]!.push(r);
    console.log(`${name.padEnd(6)} run ${i}: CPU ${r.cpu.toFixed(1)} s, statistics pass ${r.statistics.toFixed(1)} s wall, output pass ${r.output.toFixed(1)} s wall, total ${r.total.toFixed(1)} s wall (load ${la.toFixed(1)} → ${os.loadavg()[0]!.toFixed(1)})`);
  }
}
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const f = mean(rows.full!.map((r) => r.cpu)), s = mean(rows.sliced!.map((r) => r.cpu));
console.log(`calibration CPU, sliced / full: ${(s / f).toFixed(3)} (${s.toFixed(1)} / ${f.toFixed(1)} s, mean of ${repeat}); statistics pass wall sliced / full ${(mean(rows.sliced!.map((r) => r.statistics)) / mean(rows.full!.map((r) => r.statistics))).toFixed(3)}`);
