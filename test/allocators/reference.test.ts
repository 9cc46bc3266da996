/**
 * The score → sparsity step in `reference` budget mode reproduces reference.json's block_sparsity from its
 * allocation_scores, for every OWL and DSA-README run of both fixture models (to 1e-6).
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { allocationFromScores, dsa, owl, type AllocationInput } from '../../src/allocators/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const refFile = path.join(path.resolve(repoRoot, '../shared'), 'reference/reference.json');
const have = existsSync(refFile);

interface Run {
  method: string;
  pattern: string;
  sparsity: number;
  allocation: string;
  block_sparsity?: number[];
  allocation_scores?: number[] | null;
}
const runs: { model: string; run: Run }[] = [];
if (have) {
  const ref = JSON.parse(readFileSync(refFile, 'utf8')) as { models: Record<string, { runs: Run[] }> };
  for (const [model, m] of Object.entries(ref.models)) {
    for (const run of m.runs) if (run.allocation === 'owl' || run.allocation === 'dsa-readme') runs.push({ model, run });
  }
}

const inputFor = (n: number, sparsity: number): AllocationInput => ({
  blocks: Array.from({ length: n }, (_, index) => ({ index, params: 1000, linears: [], z: new Float32Array(0) })),
  sparsity,
  budget: 'reference',
});

describe.skipIf(!have)(`reference.json allocations (${have ? refFile : 'skipped: ../shared/reference/reference.json not found'})`, () => {
  it('has OWL and DSA runs for both models', () => {
    expect(runs.filter((r) => r.run.allocation === 'owl').length).toBeGreaterThanOrEqual(12);
    expect(runs.filter((r) => r.run.allocation === 'dsa-readme').length).toBeGreaterThanOrEqual(12);
    expect(new Set(runs.map((r) => r.model)).size).toBe(2);
  });

  it('allocationFromScores reproduces every block_sparsity to 1e-6', () => {
    for (const { model, run } of runs) {
      const scores = run.allocation_scores!;
      const sign = run.allocation === 'owl' ? -1 : 1;
      const got = allocationFromScores(scores, scores.map(() => 1), run.sparsity, 0.08, 'reference', { sign });
      expect(got.length).toBe(run.block_sparsity!.length);
      got.forEach((s, i) =>
        expect(Math.abs(s - run.block_sparsity![i]), `${model} ${run.method} ${run.allocation} ${run.sparsity} block ${i}`).toBeLessThan(1e-6),
      );
    }
  });

  it('the OWL and DSA allocators map the same scores the same way (their fromScores step)', () => {
    for (const { run } of runs) {
      const scores = run.allocation_scores!;
      const a = run.allocation === 'owl' ? owl() : dsa();
      const got = a.fromScores!(scores, inputFor(scores.length, run.sparsity)).blockSparsity;
      got.forEach((s, i) => expect(Math.abs(s - run.block_sparsity![i])).toBeLessThan(1e-6));
    }
  });

  it('DSA reference mapping: NaN → 0 gives the published allocations from the raw (NaN) importances', () => {
    for (const { run } of runs.filter((r) => r.run.allocation === 'dsa-readme')) {
      // The reference stored the mapped scores; the raw importances were NaN where it stored 0.
      const raw = run.allocation_scores!.map((s) => (s === 0 ? NaN : s));
      const got = dsa().fromScores!(raw, inputFor(raw.length, run.sparsity)).blockSparsity;
      got.forEach((s, i) => expect(Math.abs(s - run.block_sparsity![i])).toBeLessThan(1e-6));
    }
  });
});
