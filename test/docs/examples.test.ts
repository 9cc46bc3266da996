/**
 * Every file in examples/ runs here (imported as a module, its main() called), so the examples cannot rot.
 * Checks are independent of the code under test: realised sparsity from the saved weights' own report is compared
 * with the requested target, generation after reload must equal generation before saving, budgets are recomputed.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const examplesDir = path.join(repoRoot, 'examples');
const T = 600_000; // the machine may be heavily loaded; each example uses ~10–20 s of CPU

describe('examples/', () => {
  it('every example has a test below', () => {
    const files = readdirSync(examplesDir).filter((f) => f.endsWith('.ts')).sort();
    expect(files).toEqual(['custom-allocator.ts', 'prune-and-evaluate.ts', 'prune-and-generate.ts', 'search-then-apply.ts']);
  });

  it('prune-and-generate: pruned model generates, saves, reloads to the same text', { timeout: T }, async () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'dsa-doc-gen-'));
    const saved = process.argv[2];
    process.argv[2] = path.join(out, 'model');
    try {
      const { main } = await import('../../examples/prune-and-generate.js');
      const r = await main();
      expect(Math.abs(r.realizedSparsity - 0.5)).toBeLessThan(1e-3);
      expect(r.before.startsWith('Once upon a time')).toBe(true);
      expect(r.after).not.toBe(r.before); // pruning changed the model
      expect(r.reloaded).toBe(r.after); // the saved folder is the pruned model
      expect(existsSync(path.join(out, 'model', 'pruning.json'))).toBe(true);
    } finally {
      if (saved === undefined) process.argv.splice(2, 1);
      else process.argv[2] = saved;
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('prune-and-evaluate: perplexity rises with pruning; OWL keeps the budget', { timeout: T }, async () => {
    const { main } = await import('../../examples/prune-and-evaluate.js');
    const r = await main();
    expect(r.dense).toBeGreaterThan(1);
    expect(r.uniform).toBeGreaterThan(r.dense);
    expect(r.owl).toBeGreaterThan(r.dense);
    // stories260k blocks all have the same size: the exact budget means a plain mean of 0.5
    const mean = r.owlBlocks.reduce((a, b) => a + b, 0) / r.owlBlocks.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(2e-3);
    expect(new Set(r.owlBlocks.map((s) => s.toFixed(3))).size).toBeGreaterThan(1); // non-uniform
  });

  it('custom-allocator: the property check passes and the allocator prunes the model', { timeout: T }, async () => {
    const { main, cvImportance } = await import('../../examples/custom-allocator.js');
    const r = await main();
    expect(r.checked).toEqual(expect.arrayContaining(['budget', 'permutationEquivariant', 'affineInvariantImportance']));
    expect(Math.abs(r.realizedSparsity - 0.5)).toBeLessThan(2e-3);
    // the example's importance, naively in float64: a constant block has CV 0, a spread-out one a negative score
    const z = (xs: number[]) => ({ index: 0, params: xs.length, linears: [], z: Float32Array.from(xs) });
    const [flat, spread] = cvImportance({ blocks: [z([1, 1, 1, 1]), z([0, 0, 0, 4])], sparsity: 0.5, budget: 'exact' });
    expect(flat).toBeCloseTo(0, 6);
    expect(spread).toBeCloseTo(-Math.sqrt(3), 5); // mean 1, population std √3
  });

  it('search-then-apply: a tiny search returns a usable function', { timeout: T }, async () => {
    const { main } = await import('../../examples/search-then-apply.js');
    const r = await main(4);
    expect(typeof r.expression).toBe('string');
    expect(r.lambda).toBeGreaterThan(0);
    expect(Number.isFinite(r.fitness)).toBe(true);
    expect(Number.isFinite(r.dsaPpl) && Number.isFinite(r.uniformPpl)).toBe(true);
  });
});
