/**
 * Kernel micro bench: GFLOP/s of SparseGPT's dense kernels in TypeScript and on onnxruntime's Gemm (intra-op
 * threads = cores), at the widths of SmolLM2-135M (576), Llama-3.2-1B hidden (2048) and its down_proj input (8192).
 *
 *   npx tsx bench/kernels.bench.ts                 # 576, 2048, 8192 (the TypeScript Hinv at 8192 is estimated, see below)
 *   npx tsx bench/kernels.bench.ts --sizes 576,2048
 *   npx tsx bench/kernels.bench.ts --full          # also run the TypeScript Hinv at 8192 (minutes)
 *   npm run bench -- kernels                       # through bench/run.ts, rows into bench/results/<day>.json
 *
 * Cases per width n:
 * - lazy OBS update C[m × n'] −= Err[m × 128] · Hinv[128 × n'] (n' = n − 128, m = min(n, 2048) rows, Err half zero as
 *   at 50 % sparsity): TypeScript subtractProduct (skips the zeros; its GFLOP/s are dense-equivalent), onnxruntime
 *   float32 and float64;
 * - Hinv = upper Cholesky of H⁻¹ (n³/2 multiply-adds counted: n³/6 Cholesky + n³/3 triangular inverse): the
 *   TypeScript kernel (upperCholeskyOfInverseInPlace) and the onnxruntime-backed one (…Async). At n = 8192 the
 *   TypeScript time is estimated from n = 2048 × 64 unless --full;
 * - one small product per size below the threshold, to show the onnxruntime per-call cost (BLAS_MIN_WORK).
 * Each case prints wall seconds and CPU seconds (user + system of the process, all onnxruntime threads) and
 * GFLOP/s = 2 · multiply-adds / seconds for both: on a shared machine the CPU figure (GFLOP per CPU-second) is the
 * fair one, the wall figure is what a user waits. Compare rows of one run.
 */
import os from 'node:os';
import { record, value } from './harness.js';
import { BLAS_MIN_WORK, blasSubtractProduct, releaseBlas } from '../src/model/blas.js';
import { upperCholeskyOfInverseInPlace } from '../src/kernels/cholesky.js';
import { upperCholeskyOfInverseInPlaceAsync } from '../src/methods/cholesky-blas.js';
import { subtractProduct } from '../src/kernels/gemm.js';
import { mulberry32 } from '../src/data/text.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const sizes = (arg('--sizes') ?? '576,2048,8192').split(',').map(Number).filter((x) => x > 0);
const full = process.argv.includes('--full');
const threads = os.availableParallelism();

/** SPD H = B·Bᵀ·c + diag, B [n × 64], then 1 % damping: conditioned like a dampened layer Hessian. */
function hessian(n: number, seed: number): Float64Array {
  const r = mulberry32(seed);
  const k = 64;
  const b = Float64Array.from({ length: n * k }, () => r() - 0.5);
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += b[i * k + t] * b[j * k + t];
      h[i * n + j] = h[j * n + i] = s * 100;
    }
  let tr = 0;
  for (let i = 0; i < n; i++) tr += h[i * n + i] += 1 + 10 * r();
  for (let i = 0; i < n; i++) h[i * n + i] += (0.01 * tr) / n;
  return h;
}

interface Timed { wall: number; cpu: number }

/** Median wall and CPU seconds over `repeat` runs after `warmup` untimed ones; records one time row and two GFLOP/s rows. */
async function timed(name: string, madds: number, fn: () => unknown, repeat = 1, warmup = 0, notes = ''): Promise<Timed> {
  for (let i = 0; i < warmup; i++) await fn();
  const runs: Timed[] = [];
  for (let i = 0; i < repeat; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    const wall = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    runs.push({ wall, cpu: (c.user + c.system) / 1e6 });
  }
  runs.sort((a, b) => a.wall - b.wall);
  const med = runs[Math.floor(runs.length / 2)];
  record({
    name, seconds: med.wall, min: runs[0].wall, max: runs[runs.length - 1].wall, repeat,
    notes: `cpu ${med.cpu.toFixed(3)} s${notes ? `; ${notes}` : ''}`,
  });
  if (madds > 0) {
    value(`${name}: GFLOP/s (wall)`, (2 * madds) / med.wall / 1e9, 'GFLOP/s');
    value(`${name}: GFLOP per CPU-second`, (2 * madds) / med.cpu / 1e9, 'GFLOP/s');
  }
  return med;
}

function speedup(name: string, slow: Timed, fast: Timed): void {
  value(`${name} (wall)`, slow.wall / fast.wall, '×');
  value(`${name} (CPU)`, slow.cpu / fast.cpu, '×');
}

async function lazyUpdate(n: number): Promise<void> {
  const m = Math.min(n, 2048), k = 128, cols = n - k;
  const r = mulberry32(n);
  const w = Float32Array.from({ length: m * n }, () => r() - 0.5);
  const err = Float64Array.from({ length: m * k }, () => (r() < 0.5 ? 0 : r() - 0.5));
  const u = Float64Array.from({ length: k * n }, () => r() - 0.5);
  const views = [{ data: w, offset: k, ld: n }, { data: err, offset: 0, ld: k }, { data: u, offset: k, ld: n }] as const;
  const madds = m * k * cols;
  const label = `lazy update ${m}×${k}×${cols}`;
  const repeat = n <= 2048 ? 3 : 1;
  const ts = await timed(`${label}: TypeScript`, madds, () => subtractProduct(...views, m, k, cols), repeat, 0, 'Err 50 % zero (skipped); dense-equivalent GFLOP/s');
  for (const dtype of ['float32', 'float64'] as const) {
    const t = await timed(`${label}: onnxruntime ${dtype}`, madds, () => blasSubtractProduct(...views, m, k, cols, { dtype }), repeat, 1, `${threads} threads`);
    speedup(`${label}: TypeScript / onnxruntime ${dtype}`, ts, t);
  }
}

/** TypeScript Hinv at n = 2048 (for the estimate at larger n; needs 2048 in --sizes before them). */
let tsHinv2048: Timed | undefined;

async function hinv(n: number): Promise<void> {
  const h = hessian(n, 7 + n);
  const madds = n ** 3 / 2;
  const small = n <= 2048;
  const fast = await timed(`Hinv n=${n}: onnxruntime (blocked, float64)`, madds, async () => {
    const u = h.slice();
    if ((await upperCholeskyOfInverseInPlaceAsync(u, n)) >= 0) throw new Error('not positive definite');
  }, small ? 3 : 1, small ? 1 : 0, `${threads} threads; n³/2 multiply-adds`);
  if (small || full) {
    const ts = await timed(`Hinv n=${n}: TypeScript`, madds, () => {
      const u = h.slice();
      if (upperCholeskyOfInverseInPlace(u, n) >= 0) throw new Error('not positive definite');
    }, small ? 3 : 1, 0, '1 thread');
    speedup(`Hinv n=${n}: TypeScript / onnxruntime`, ts, fast);
    if (n === 2048) tsHinv2048 = ts;
  } else if (tsHinv2048) {
    const f = (n / 2048) ** 3;
    const est = { wall: tsHinv2048.wall * f, cpu: tsHinv2048.cpu * f };
    record({ name: `Hinv n=${n}: TypeScript (estimated)`, seconds: est.wall, notes: `cpu ${est.cpu.toFixed(1)} s; n=2048 × ${f}` });
    speedup(`Hinv n=${n}: TypeScript (estimated) / onnxruntime`, est, fast);
  }
}

/** Below BLAS_MIN_WORK: a 64 × 128 × 16 update (131 072 multiply-adds), 200 calls, to show the per-call cost. */
async function smallCall(): Promise<void> {
  const m = 64, k = 128, cols = 16;
  const r = mulberry32(5);
  const w = Float32Array.from({ length: m * cols }, () => r() - 0.5);
  const err = Float64Array.from({ length: m * k }, () => (r() < 0.5 ? 0 : r() - 0.5));
  const u = Float64Array.from({ length: k * cols }, () => r() - 0.5);
  const views = [{ data: w, offset: 0, ld: cols }, { data: err, offset: 0, ld: k }, { data: u, offset: 0, ld: cols }] as const;
  const reps = 200;
  const label = `small update ${m}×${k}×${cols} ×${reps} (threshold ${BLAS_MIN_WORK} multiply-adds)`;
  const ts = await timed(`${label}: TypeScript`, reps * m * k * cols, () => {
    for (let i = 0; i < reps; i++) subtractProduct(...views, m, k, cols);
  }, 3, 1);
  const ort = await timed(`${label}: onnxruntime float32`, reps * m * k * cols, async () => {
    for (let i = 0; i < reps; i++) await blasSubtractProduct(...views, m, k, cols, { dtype: 'float32' });
  }, 3, 1);
  speedup(`${label}: TypeScript / onnxruntime`, ts, ort);
}

await smallCall();
for (const n of sizes) {
  await lazyUpdate(n);
  await hinv(n);
}
await releaseBlas();
