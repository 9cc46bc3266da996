/**
 * SparseGPT where its onnxruntime path runs: at 256 × 520 the lazy OBS updates run as float32 Gemm (same masks as the
 * plain-loop float64 implementation of METHODS.md and as the TypeScript-only path, `configureBlas({ enabled: false })`,
 * weights within float32 tolerance); at 1040 inputs the Hinv runs on the blocked float64 kernels (9 panels) and
 * equals the TypeScript kernel's.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { BLAS_MIN_WORK, configureBlas, releaseBlas } from '../../src/model/blas.js';
import { BLAS_NB } from '../../src/methods/cholesky-blas.js';
import { SPARSEGPT_BLAS_MIN_DIN, sparseGptHinv, sparseGptHinvAsync, sparsegpt } from '../../src/methods/index.js';
import type { MethodContext } from '../../src/methods/index.js';
import type { InputStats, Pattern } from '../../src/types.js';
import { randomMatrix, rng } from '../kernels/rng.js';
import { diagOf, naiveSparseGpt, randomGram } from './naive.js';

afterAll(() => releaseBlas());

const dOut = 256, dIn = 520;
const hinvDin = 1040;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}
function maskDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) if ((a[i] === 0) !== (b[i] === 0)) d++;
  return d;
}

describe(`sparsegpt on the onnxruntime path (${dOut} × ${dIn})`, () => {
  it('the sizes really take the onnxruntime path (lazy update above the threshold, Hinv above its threshold)', () => {
    expect(dOut * 128 * (dIn - 128)).toBeGreaterThanOrEqual(BLAS_MIN_WORK); // the first column block
    expect(hinvDin).toBeGreaterThanOrEqual(SPARSEGPT_BLAS_MIN_DIN);
    expect(hinvDin).toBeGreaterThan(BLAS_NB);
  });

  it(`sparseGptHinvAsync at ${hinvDin} inputs equals sparseGptHinv (float64) to 1e-10 relative`, async () => {
    const g = randomGram(hinvDin, 600, rng(3), [7]);
    const a = sparseGptHinv(g, 5, hinvDin);
    const b = await sparseGptHinvAsync(g, 5, hinvDin);
    let scale = 0;
    for (const x of a.hinv) scale = Math.max(scale, Math.abs(x));
    expect(maxAbsDiff(a.hinv, b.hinv) / scale).toBeLessThan(1e-10);
    expect(b.deadCount).toBe(1);
    expect(b.attempts).toBe(a.attempts);
  });

  const cases: [string, number, Pattern][] = [
    ['50 %', 0.5, { kind: 'unstructured' }],
    ['70 %', 0.7, { kind: 'unstructured' }],
    ['2:4', 0.5, { kind: 'nm', n: 2, m: 4 }],
  ];
  for (const [label, s, pattern] of cases)
    it(`${label}: masks equal to the naive float64 SparseGPT and to the TypeScript path, weights within 1e-4`, async () => {
      // 300 tokens < 520 inputs: XᵀX is singular, only the 1 % damping makes H definite (ill-conditioned like a real layer)
      const gram = randomGram(dIn, 300, rng(17 + s * 10));
      const st: InputStats = { sq: diagOf(gram, dIn), gram, nsamples: 5, tokens: 300 };
      const w0 = randomMatrix(dOut, dIn, 31);
      const ctx = (weight: Float32Array): MethodContext => ({
        weight, dOut, dIn, sparsity: s, pattern, budget: 'reference', stats: st, name: 'test.layer',
      });
      const expected = naiveSparseGpt(w0, dOut, dIn, gram, st.nsamples, s, pattern, 'reference');
      const w = w0.slice();
      await sparsegpt.prune(ctx(w));
      expect(maskDiff(w, expected.w)).toBe(0);
      expect(maxAbsDiff(w, expected.w)).toBeLessThan(1e-4);
      const wTs = w0.slice();
      configureBlas({ enabled: false });
      try {
        // a fresh gram copy so the Hinv cache does not serve the onnxruntime factor
        await sparsegpt.prune({ ...ctx(wTs), stats: { ...st, gram: gram.slice() } });
      } finally {
        configureBlas({ enabled: true });
      }
      expect(maskDiff(w, wTs)).toBe(0);
      expect(maxAbsDiff(w, wTs)).toBeLessThan(1e-4);
    });
});
