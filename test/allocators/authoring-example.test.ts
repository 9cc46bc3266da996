/**
 * The worked example of docs/allocator-authoring.md, run as a test. The code between the two markers below must
 * appear verbatim in the doc (the last test checks it), so the doc cannot drift from code that runs.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// In your project: `from 'dsa-prune'` and `from 'dsa-prune/testing'`.
import { custom, exactBudget, weightedMean, type AllocationInput, type Allocator } from '../../src/allocators/index.js';
import { checkAllocator } from '../../src/testing/index.js';

// --- example start ---
/** Share of a block's Wanda mass held by its top 1% entries (how concentrated its important weights are). */
function topShare(z: Float32Array, fraction = 0.01): number {
  const k = Math.max(1, Math.floor(z.length * fraction));
  const sorted = Float32Array.from(z).sort(); // ascending copy; z itself must not be modified
  let top = 0;
  let all = 0;
  for (let i = 0; i < sorted.length; i++) {
    all += sorted[i];
    if (i >= sorted.length - k) top += sorted[i];
  }
  return all > 0 ? top / all : 0;
}

// A larger importance prunes more: concentrated blocks (high top share) get a negative importance, so less pruning.
const concentration = custom(
  'concentration',
  (input: AllocationInput) => input.blocks.map((b) => -topShare(b.z)),
  { output: 'importance', lambda: 0.08, properties: { permutationEquivariant: true, affineInvariantImportance: true } },
);

// An allocator written from scratch: keep the last block at half the target, the others share the rest exactly.
const protectLast: Allocator = {
  name: 'protect-last',
  describe: () => 'protect-last: last block at S/2, the others shifted to meet the budget',
  needsStatistics: false,
  allocate({ blocks, sparsity, budget }) {
    const raw = blocks.map((_, i) => (i === blocks.length - 1 && blocks.length > 1 ? sparsity / 2 : sparsity));
    const params = blocks.map((b) => b.params);
    return { blockSparsity: budget === 'exact' ? exactBudget(raw, params, sparsity) : raw };
  },
};
// --- example end ---

describe('allocator authoring example (docs/allocator-authoring.md)', () => {
  it('concentration allocator: exact budget, less pruning for concentrated blocks', () => {
    const blocks = [0.001, 0.02, 0.005].map((outliers, index) => {
      const z = new Float32Array(4000);
      for (let i = 0; i < z.length; i++) z[i] = ((i * 7919) % 1000) / 1000 + (i % Math.round(1 / outliers) === 0 ? 100 : 0);
      return { index, params: z.length, linears: [], z };
    });
    const a = concentration.allocate({ blocks, sparsity: 0.7, budget: 'exact' });
    expect(Math.abs(weightedMean(a.blockSparsity, [4000, 4000, 4000]) - 0.7)).toBeLessThan(1e-12);
    // top-1% shares ≈ 0.18, 0.40, 0.50: the most concentrated block (2) is pruned least.
    expect(a.blockSparsity[2]).toBeLessThan(a.blockSparsity[1]);
    expect(a.blockSparsity[1]).toBeLessThan(a.blockSparsity[0]);
  });

  it('both allocators pass checkAllocator', () => {
    const r1 = checkAllocator(concentration, { numRuns: 50, budget: 'both' });
    const r2 = checkAllocator(protectLast, { numRuns: 50, budget: 'both' });
    expect(r1.checked).toEqual(expect.arrayContaining(['budget', 'determinism', 'permutationEquivariant', 'affineInvariantImportance']));
    expect(r2.accepted).toBe(100);
  });

  it('protect-last would fail a false permutation-equivariance claim', () => {
    const claim = { ...protectLast, properties: { permutationEquivariant: true } };
    expect(() => checkAllocator(claim, { numRuns: 50, inputs: { minBlocks: 3, minSparsity: 0.2 } })).toThrow(/permutationEquivariant/);
  });

  it('the doc shows exactly this code', () => {
    const here = fileURLToPath(import.meta.url);
    const src = readFileSync(here, 'utf8');
    const code = src.slice(src.indexOf('// --- example start ---\n') + 25, src.indexOf('// --- example end ---'));
    const doc = readFileSync(path.resolve(path.dirname(here), '../../docs/allocator-authoring.md'), 'utf8');
    expect(code.length).toBeGreaterThan(500);
    expect(doc).toContain(code);
  });
});
