/**
 * Micro bench of the uniform methods on one random layer: `npx tsx bench/methods.ts [d ...]` (default 768, 2048).
 * Prints wall and CPU seconds for the SparseGPT Hinv (Cholesky of the inverse), a whole SparseGPT prune, SparseGPT
 * 2:4 on the same gram (its Hinv then comes from the cache), Wanda and magnitude at 50 % unstructured.
 * CPU time is the fair figure on a busy machine (the kernels are single-threaded). No assertions.
 */
import { sparseGptHinv, sparsegpt, wanda, magnitude } from '../src/methods/index.js';
import type { InputStats, Pattern } from '../src/types.js';
import { mulberry32 } from '../src/data/text.js';

const rand = (seed: number) => {
  const u = mulberry32(seed);
  return () => u() - 0.5;
};

/** SPD gram = c·I + B·Bᵀ with B [d × 64]: cheap to build, condition like a real layer input. */
function gram(d: number, r: () => number): Float64Array {
  const k = 64;
  const b = Float64Array.from({ length: d * k }, r);
  const g = new Float64Array(d * d);
  for (let i = 0; i < d; i++)
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += b[i * k + t] * b[j * k + t];
      g[i * d + j] = g[j * d + i] = s * 100;
    }
  for (let i = 0; i < d; i++) g[i * d + i] += 1 + 10 * (r() + 0.5);
  return g;
}

const sizes = process.argv.slice(2).map(Number).filter((x) => x > 0);
const unstructured: Pattern = { kind: 'unstructured' };
for (const d of sizes.length ? sizes : [768, 2048]) {
  const r = rand(d);
  const w0 = Float32Array.from({ length: d * d }, r);
  const g = gram(d, r);
  const stats: InputStats = { sq: Float64Array.from({ length: d }, (_, j) => g[j * d + j]), gram: g, nsamples: 128, tokens: 128 * 512 };
  const time = async (label: string, f: () => unknown) => {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await f();
    const s = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    const cpu = (c.user + c.system) / 1e6;
    console.log(`${String(d).padStart(5)}×${String(d).padEnd(5)} ${label.padEnd(32)} ${s.toFixed(3)} s wall, ${cpu.toFixed(3)} s cpu`);
  };
  await time('sparsegpt Hinv (chol of inverse)', () => sparseGptHinv(g, 128, d));
  const base = { dOut: d, dIn: d, stats, budget: 'reference' as const, sparsity: 0.5 };
  await time('sparsegpt 50% (total)', () => sparsegpt.prune({ ...base, weight: w0.slice(), pattern: unstructured }));
  await time('sparsegpt 2:4 (Hinv reused)', () =>
    sparsegpt.prune({ ...base, weight: w0.slice(), pattern: { kind: 'nm', n: 2, m: 4 } }),
  );
  await time('wanda 50%', () => wanda.prune({ ...base, weight: w0.slice(), pattern: unstructured }));
  await time('magnitude 50%', () => magnitude.prune({ ...base, weight: w0.slice(), pattern: unstructured }));
}
