/**
 * OWL outlier ratios and the DSA importance on the real stories260k block vectors (dense pass, 64 × 512 calibration
 * tokens, as reference.json) against reference.json's allocation_scores: D as counts of outliers (measured: identical;
 * one count of slack for a tie against the reference's float32 mean), and the one finite DSA importance (block 4).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { denseStatistics } from '../../src/calibration/index.js';
import { takeWindows, tokenizeText } from '../../src/data/text.js';
import { wandaMetric } from '../../src/methods/metrics.js';
import { DSA_PUBLISHED, dsa, importanceTrace, outlierRatio, owl, type BlockAllocationStats } from '../../src/allocators/index.js';
import { loadFixture, repoRoot, shared } from '../calibration/fixture.js';

const refPath = path.join(shared, 'reference/reference.json');
const calibPath = path.join(shared, 'data/text/tinystories_calibration.txt');
const modelDir = path.join(repoRoot, 'models/stories260k');
const have = existsSync(refPath) && existsSync(calibPath);

async function denseBlocks(): Promise<BlockAllocationStats[]> {
  env.allowRemoteModels = false;
  const tok = await AutoTokenizer.from_pretrained(modelDir);
  const ids = tokenizeText(tok as unknown as Parameters<typeof tokenizeText>[0], readFileSync(calibPath, 'utf8'));
  const m = loadFixture(modelDir);
  const stats = await denseStatistics(m, takeWindows(ids, 512, 64), { nsamples: 64, seqlen: 512, needs: { sq: true, gram: false } });
  const blocks: BlockAllocationStats[] = [];
  const nBlocks = Math.max(...m.linears.map((l) => l.block)) + 1;
  for (let b = 0; b < nBlocks; b++) {
    const ls = m.linears.filter((l) => l.block === b && l.role !== 'lm_head');
    const params = ls.reduce((a, l) => a + l.dIn * l.dOut, 0);
    const z = new Float32Array(params);
    let off = 0;
    for (const l of ls) {
      // ONNX stores W as [dIn × dOut]; the metric wants [dOut × dIn].
      const onnx = m.readInitializer(l.weight);
      const w = new Float32Array(l.dIn * l.dOut);
      for (let j = 0; j < l.dIn; j++) for (let i = 0; i < l.dOut; i++) w[i * l.dIn + j] = onnx[j * l.dOut + i];
      const s = stats.get(l.name)!;
      wandaMetric(w, l.dOut, l.dIn, s.sq, s.nsamples, z.subarray(off, off + l.dIn * l.dOut));
      off += l.dIn * l.dOut;
    }
    blocks.push({ index: b, params, linears: ls.map((l) => ({ name: l.name, role: l.role, params: l.dIn * l.dOut })), z });
  }
  return blocks;
}

describe.skipIf(!have)('allocation scores on the real stories260k statistics', () => {
  it('OWL D and the published DSA importance match reference.json', async () => {
    const ref = JSON.parse(readFileSync(refPath, 'utf8')) as { models: Record<string, { runs: { allocation: string; allocation_scores?: number[] | null; sparsity: number; block_sparsity: number[]; method: string }[] }> };
    const runs = ref.models.stories260k.runs;
    const owlRef = runs.find((r) => r.allocation === 'owl')!.allocation_scores!;
    const dsaRef = runs.find((r) => r.allocation === 'dsa-readme')!.allocation_scores!;
    const blocks = await denseBlocks();
    expect(blocks.length).toBe(5);
    for (const b of blocks) {
      expect(b.params).toBe(45312);
      const D = outlierRatio(b.z, 5);
      const count = Math.round((D * b.params) / 100);
      const refCount = Math.round((owlRef[b.index] * b.params) / 100);
      expect(Math.abs(count - refCount), `block ${b.index}: ${count} outliers vs ${refCount}`).toBeLessThanOrEqual(1);
    }
    // DSA: NaN on blocks 0..3 (atan(var) > 1), 1.3104 on block 4.
    const traces = blocks.map((b) => importanceTrace(DSA_PUBLISHED, b.z));
    expect(traces.slice(0, 4).every((t) => Number.isNaN(t.value))).toBe(true);
    expect(traces.slice(0, 4).every((t) => Math.atan(t.reduced) > 1)).toBe(true);
    expect(Math.abs(traces[4].value - dsaRef[4]) / dsaRef[4]).toBeLessThan(1e-6);

    // The allocations: reference mode reproduces block_sparsity; exact mode refuses the published function.
    const input = (sparsity: number, budget: 'exact' | 'reference') => ({ blocks, sparsity, budget });
    for (const r of runs.filter((x) => x.method === 'wanda' && (x.allocation === 'owl' || x.allocation === 'dsa-readme'))) {
      const a = (r.allocation === 'owl' ? owl() : dsa()).allocate(input(r.sparsity, 'reference'));
      a.blockSparsity.forEach((s, i) => expect(Math.abs(s - r.block_sparsity[i]), `${r.allocation} ${r.sparsity} block ${i}`).toBeLessThan(1e-6));
    }
    expect(() => dsa().allocate(input(0.7, 'exact'))).toThrow(/not finite in 4 of 5 blocks: asin of a value outside \[-1, 1\] .* in blocks 0,1,2,3/);
    const exact = owl().allocate(input(0.7, 'exact'));
    const mean = exact.blockSparsity.reduce((a, s) => a + s * 45312, 0) / (5 * 45312);
    expect(Math.abs(mean - 0.7)).toBeLessThan(1e-12);
  }, 300_000);
});
