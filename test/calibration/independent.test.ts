/**
 * Statistics of the block sub-graphs against an independent computation: the whole model as one graph with the linear
 * inputs exposed as extra outputs, summed naively in float64 in JS (fixture.ts). Covers both modes, a sequential run
 * whose callback really prunes (the reference is recomputed on the partly pruned model at each block), and the
 * architecture layouts in ../shared/models/layouts.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { planGraph, runCalibration } from '../../src/calibration/index.js';
import type { InputStats } from '../../src/types.js';
import { hasShared, loadFixture, referenceStats, repoRoot, shared, type FixtureModel, tokens } from './fixture.js';

function activation(m: FixtureModel, linear: string): string {
  const l = m.linears.find((x) => x.name === linear)!;
  return m.proto.graph.node.find((n) => n.name === l.node)!.input[0]!;
}

/** max relative error of sq (per entry) and of the Gram matrix (relative to its largest entry). */
function compare(got: InputStats, want: { sq: Float64Array; gram?: Float64Array }): { sq: number; gram: number } {
  let sq = 0;
  for (let j = 0; j < want.sq.length; j++) sq = Math.max(sq, Math.abs(got.sq[j]! - want.sq[j]!) / Math.max(want.sq[j]!, 1e-12));
  let gram = 0;
  if (want.gram) {
    let scale = 0;
    for (const v of want.gram) scale = Math.max(scale, Math.abs(v));
    for (let j = 0; j < want.gram.length; j++) gram = Math.max(gram, Math.abs(got.gram![j]! - want.gram[j]!) / scale);
  }
  return { sq, gram };
}

/** Zero the smaller-magnitude half of each linear of block b (a stand-in for a pruning method). */
function pruneHalf(m: FixtureModel, b: number): void {
  for (const l of m.linears.filter((x) => x.block === b)) {
    const w = m.readInitializer(l.weight);
    const sorted = Float32Array.from(w, Math.abs).sort();
    const thr = sorted[Math.floor(sorted.length / 2)]!;
    for (let i = 0; i < w.length; i++) if (Math.abs(w[i]!) <= thr) w[i] = 0;
    m.writeInitializer(l.weight, w);
  }
}

async function checkModel(dir: string, nsamples: number, seqlen: number, batchSize: number, seqBlocks?: number[]): Promise<void> {
  const dense = loadFixture(dir);
  const vocab = Number(dense.config?.vocab_size ?? 100);
  const w = tokens(nsamples * seqlen, vocab, 7);
  const ref = await referenceStats(dense, w, nsamples, seqlen, 4, true);

  // One-shot, with a pruning callback: statistics stay those of the dense model.
  const a = loadFixture(dir);
  let seen = 0;
  const report = await runCalibration(a, w, { nsamples, seqlen, batchSize, mode: 'oneshot', needs: { sq: true, gram: true } }, (b, stats) => {
    for (const l of a.linears.filter((x) => x.block === b)) {
      const e = compare(stats.get(l.name)!, ref.get(activation(a, l.name))!);
      expect(e.sq, `${l.name} sq`).toBeLessThan(1e-5);
      expect(e.gram, `${l.name} gram`).toBeLessThan(1e-5);
      seen++;
    }
    pruneHalf(a, b);
  });
  expect(seen).toBe(dense.linears.filter((l) => l.block >= 0).length);
  for (const r of report.blocks) expect(Number.isFinite(r.inputSum), `block ${r.block} input sum`).toBe(true);

  // Sequential, pruning each block in the callback: block b's statistics are those of the model with blocks < b pruned.
  const s = loadFixture(dir);
  seen = 0;
  let differsFromDense = false;
  await runCalibration(s, w, { nsamples, seqlen, batchSize, needs: { sq: true, gram: true } }, async (b, stats) => {
    if (seqBlocks && !seqBlocks.includes(b)) {
      pruneHalf(s, b);
      return;
    }
    const now = await referenceStats(s, w, nsamples, seqlen, 4, true, b);
    for (const l of s.linears.filter((x) => x.block === b)) {
      const x = activation(s, l.name);
      const e = compare(stats.get(l.name)!, now.get(x)!);
      expect(e.sq, `${l.name} sq`).toBeLessThan(1e-5);
      expect(e.gram, `${l.name} gram`).toBeLessThan(1e-5);
      if (b > 0 && compare(stats.get(l.name)!, ref.get(x)!).sq > 1e-3) differsFromDense = true;
      seen++;
    }
    pruneHalf(s, b);
  });
  expect(seen).toBe(dense.linears.filter((l) => l.block >= 0 && (!seqBlocks || seqBlocks.includes(l.block))).length);
  expect(differsFromDense, 'pruning earlier blocks must change later statistics').toBe(true);
}

describe('statistics equal an independent float64 computation', () => {
  it('stories260k (embedded), both modes, with pruning in the callback', async () => {
    await checkModel(path.join(repoRoot, 'models/stories260k'), 6, 48, 4);
  }, 300_000);

  it.skipIf(!hasShared)('bench-12l, both modes, with pruning in the callback', async () => {
    await checkModel(path.join(shared, 'models/bench-12l'), 3, 32, 2, [1, 11]);
  }, 600_000);

  const layouts = ['llama-hf', 'mistral', 'qwen2', 'gemma', 'phi3', 'gpt2', 'opt'];
  for (const name of layouts) {
    const dir = path.join(shared, 'models/layouts', name);
    it.skipIf(!existsSync(dir))(`layout ${name}: block sub-graphs split and instrumented correctly`, async () => {
      const m = loadFixture(dir);
      const plan = planGraph(m.proto, m.linears);
      expect(plan.nBlocks).toBe(2);
      expect(plan.carried[0]!.length).toBeGreaterThan(0);
      await checkModel(dir, 3, 16, 2);
    }, 300_000);
  }
});
