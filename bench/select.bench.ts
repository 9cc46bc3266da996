/**
 * Wanda's method phase on typed arrays: CPU nanoseconds per weight of the per-row cut (the generic setSmallest path
 * against zeroSmallestF32, the float32 histogram kernel Wanda uses), of countZeros, and of the whole wanda.prune, on
 * SmolLM2-135M's linear shapes (1536 × 576 and 576 × 1536) with an outlier-channel Σx² like the scale fixture's.
 *
 *   npx tsx bench/select.bench.ts          # or: npm run bench -- select
 *
 * CPU seconds (process.cpuUsage, one thread) are the fair figure on a shared machine; the best of 5 repetitions.
 */
import { countZeros } from '../src/kernels/dense.js';
import { setSmallest, zeroSmallestF32 } from '../src/kernels/select.js';
import { wandaMetric } from '../src/methods/metrics.js';
import { wanda } from '../src/methods/wanda.js';
import { mulberry32 } from '../src/data/text.js';
import { value } from './harness.js';

const cpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
function best(reps: number, f: () => void): number {
  let b = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = cpu();
    f();
    b = Math.min(b, cpu() - t);
  }
  return b;
}

for (const [dOut, dIn] of [[1536, 576], [576, 1536]] as const) {
  const rand = mulberry32(dOut * 7 + dIn);
  const w0 = new Float32Array(dOut * dIn).map(() => { let s = 0; for (let i = 0; i < 6; i++) s += rand(); return (s - 3) * 0.02; });
  const sq = new Float64Array(dIn).map((_, j) => (j % 144 === 0 ? 400 : 1) * 4096 * (1 + (j % 5) / 10));
  const metric = wandaMetric(w0, dOut, dIn, sq, 8);
  const scratch = new Float32Array(dIn);
  const k = dIn >> 1;
  const n = dOut * dIn;
  const tag = `wanda ${dOut}×${dIn}`;
  const generic = best(5, () => { const w = w0.slice(); for (let i = 0; i < dOut; i++) setSmallest(metric, k, w, 0, i * dIn, dIn, i * dIn, scratch); });
  const f32 = best(5, () => { const w = w0.slice(); for (let i = 0; i < dOut; i++) zeroSmallestF32(metric, k, w, i * dIn, dIn, i * dIn, scratch); });
  const pruned = w0.slice();
  for (let i = 0; i < dOut; i++) zeroSmallestF32(metric, k, pruned, i * dIn, dIn, i * dIn, scratch);
  const zeros = best(5, () => { countZeros(pruned); });
  const whole = best(5, () => {
    wanda.prune({ weight: w0.slice(), dOut, dIn, stats: { sq, nsamples: 8, tokens: 4096 }, sparsity: 0.5, pattern: { kind: 'unstructured' }, budget: 'reference', name: tag });
  });
  value(`${tag}: row cut, generic setSmallest`, (generic / n) * 1e9, 'ns/weight', 'CPU');
  value(`${tag}: row cut, zeroSmallestF32`, (f32 / n) * 1e9, 'ns/weight', `CPU; ${(generic / f32).toFixed(2)}× the generic path`);
  value(`${tag}: countZeros`, (zeros / n) * 1e9, 'ns/weight', 'CPU');
  value(`${tag}: wanda.prune (metric + cut + count)`, (whole / n) * 1e9, 'ns/weight', 'CPU');
}
