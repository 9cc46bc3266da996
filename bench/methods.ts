/**
 * Micro bench of the uniform methods on random layers. CPU time is the fair figure on a busy machine.
 *
 *   npx tsx bench/methods.ts [d ...]            one square layer per d (default 768, 2048): the SparseGPT Hinv
 *                                               (Cholesky of the inverse), a whole SparseGPT prune, SparseGPT 2:4 on
 *                                               the same gram (Hinv from the cache), Wanda and magnitude at 50 %
 *   npx tsx bench/methods.ts --block 576,1536,192 [--blocks 3]
 *                                               SparseGPT 50 % on the 7 linears of decoder blocks with that hidden,
 *                                               ffn and k/v width (SmolLM2-135M: 576,1536,192; Qwen2.5-0.5B:
 *                                               896,4864,128), q/k/v and gate/up sharing a gram as in the pipeline
 *                                               (one Hinv each); wall and CPU seconds per linear and per block,
 *                                               averaged over the blocks after the first (JIT warm-up)
 * No assertions.
 */
import { sparseGptHinv, sparsegpt, wanda, magnitude } from '../src/methods/index.js';
import { releaseBlas } from '../src/model/blas.js';
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

const statsOf = (g: Float64Array, d: number): InputStats =>
  ({ sq: Float64Array.from({ length: d }, (_, j) => g[j * d + j]), gram: g, nsamples: 128, tokens: 128 * 512 });

async function measure(f: () => unknown): Promise<{ wall: number; cpu: number }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await f();
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

const unstructured: Pattern = { kind: 'unstructured' };
const argv = process.argv.slice(2);
const blockAt = argv.indexOf('--block');
if (blockAt >= 0) {
  const [h, f, kv] = argv[blockAt + 1]!.split(',').map(Number) as [number, number, number];
  const blocksAt = argv.indexOf('--blocks');
  const blocks = blocksAt >= 0 ? Number(argv[blocksAt + 1]) : 3;
  const linears: [string, number, number, string][] = [
    ['q', h, h, 'qkv'], ['k', kv, h, 'qkv'], ['v', kv, h, 'qkv'], ['o', h, h, 'o'],
    ['gate', f, h, 'gateup'], ['up', f, h, 'gateup'], ['down', h, f, 'down'],
  ];
  const sum: Record<string, { wall: number; cpu: number }> = {};
  for (let b = 0; b < blocks; b++) {
    const r = rand(b + 1);
    // a fresh gram per input and block, as calibration hands them over (the Hinv cache is keyed by the gram)
    const grams: Record<string, InputStats> = { qkv: statsOf(gram(h, r), h), o: statsOf(gram(h, r), h), gateup: statsOf(gram(h, r), h), down: statsOf(gram(f, r), f) };
    let block = { wall: 0, cpu: 0 };
    for (const [name, dOut, dIn, g] of linears) {
      const w = Float32Array.from({ length: dOut * dIn }, r);
      const t = await measure(() => sparsegpt.prune({ weight: w, dOut, dIn, stats: grams[g], sparsity: 0.5, pattern: unstructured, budget: 'reference', name }));
      block = { wall: block.wall + t.wall, cpu: block.cpu + t.cpu };
      if (b > 0 || blocks === 1) sum[name] = { wall: (sum[name]?.wall ?? 0) + t.wall, cpu: (sum[name]?.cpu ?? 0) + t.cpu };
    }
    console.log(`block ${b}: ${block.wall.toFixed(3)} s wall, ${block.cpu.toFixed(3)} s cpu`);
  }
  const n = Math.max(1, blocks - 1);
  let tot = { wall: 0, cpu: 0 };
  for (const [name, t] of Object.entries(sum)) {
    tot = { wall: tot.wall + t.wall, cpu: tot.cpu + t.cpu };
    console.log(`${name.padEnd(5)} ${(t.wall / n).toFixed(3)} s wall, ${(t.cpu / n).toFixed(3)} s cpu`);
  }
  console.log(`per block (mean of ${n}): ${(tot.wall / n).toFixed(3)} s wall, ${(tot.cpu / n).toFixed(3)} s cpu (Hinv included: one per shared input)`);
  await releaseBlas();
} else {
  const sizes = argv.map(Number).filter((x) => x > 0);
  for (const d of sizes.length ? sizes : [768, 2048]) {
    const r = rand(d);
    const w0 = Float32Array.from({ length: d * d }, r);
    const g = gram(d, r);
    const stats = statsOf(g, d);
    const time = async (label: string, f: () => unknown) => {
      const { wall, cpu } = await measure(f);
      console.log(`${String(d).padStart(5)}×${String(d).padEnd(5)} ${label.padEnd(32)} ${wall.toFixed(3)} s wall, ${cpu.toFixed(3)} s cpu`);
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
  await releaseBlas();
}
