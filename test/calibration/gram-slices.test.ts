/**
 * The Gram XᵀX computed from column slices (only the blocks on and below the diagonal multiplied, the rest mirrored:
 * src/calibration/graph.ts gramNodes) against the one full Gemm it replaces: every entry is the same K-long float32
 * dot product, so the accumulated float64 statistics must be the same bits. Forced narrow slices on stories260k and
 * a tiny onnx-community layout (fp32, fp16); the default slicing at SmolLM2-135M's real widths (576, 1536; one block,
 * small vocabulary); bench-12l (640-wide down_proj input) when ../shared is present. The full-Gemm path itself is
 * checked against an independent float64 computation in independent.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildBlock, configureGramSlicing, gramSlices, planGraph, runCalibration, type CalibrationOptions } from '../../src/calibration/index.js';
import { DataType, decodeModel } from '../../src/model/onnx.js';
import type { InputStats } from '../../src/types.js';
import { buildCommunityModel, COMMUNITY_SHAPES, type CommunityShape } from '../fixtures/community.js';
import { hasShared, loadFixture, repoRoot, shared, type FixtureModel, tokens } from './fixture.js';

async function stats(m: FixtureModel, n: number, t: number, width: number, blockGraphs: CalibrationOptions['blockGraphs'] = 'gated'): Promise<Map<string, InputStats>> {
  const prev = configureGramSlicing({ width });
  try {
    const out = new Map<string, InputStats>();
    await runCalibration(m, tokens(n * t, Number(m.config?.vocab_size ?? 512), 777), {
      nsamples: n, seqlen: t, batchSize: 2, threads: 2, needs: { sq: true, gram: true }, blockGraphs,
    }, (_b, s) => {
      for (const [k, v] of s) out.set(k, v);
    });
    return out;
  } finally {
    configureGramSlicing(prev);
  }
}

const bits = (a: Float64Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Sliced (width `width`) and unsliced Grams of every linear: same bits; returns how many inputs were sliced. */
async function expectSameGram(load: () => FixtureModel, width: number, n = 4, t = 32, graphs: CalibrationOptions['blockGraphs'] = 'gated'): Promise<number> {
  const full = await stats(load(), n, t, 0, graphs);
  const sliced = await stats(load(), n, t, width, graphs);
  expect(sliced.size).toBe(full.size);
  let slicedInputs = 0;
  const prev = configureGramSlicing({ width });
  const seen = new Set<InputStats>();
  for (const [k, want] of full) {
    const got = sliced.get(k)!;
    expect(bits(got.gram!).equals(bits(want.gram!)), `${k} gram`).toBe(true);
    expect(bits(got.sq).equals(bits(want.sq)), `${k} sq`).toBe(true);
    if (!seen.has(got)) {
      seen.add(got);
      if (gramSlices(Math.sqrt(got.gram!.length)).length > 1) slicedInputs++;
    }
  }
  configureGramSlicing(prev);
  return slicedInputs;
}

const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-gram-slices-'));
const tiny: CommunityShape = { ...COMMUNITY_SHAPES['qwen2.5-0.5b']!, blocks: 2, hidden: 64, inter: 96, heads: 4, kvHeads: 2, headDim: 16, vocab: 300 };
const tinyDir = path.join(work, 'tiny');
const smol: CommunityShape = { ...COMMUNITY_SHAPES['smollm2-135m']!, blocks: 1, vocab: 300 };
const smolDir = path.join(work, 'smol');
beforeAll(() => {
  buildCommunityModel(tinyDir, tiny, { readme: false });
  buildCommunityModel(smolDir, smol, { readme: false, fp16: false });
}, 120_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));
afterEach(() => {
  configureGramSlicing({ width: 192, maxSlices: 8 });
});

describe('gramSlices', () => {
  it('one slice below 2 × width or when off; else ≤ maxSlices slices, multiples of 16 but the last, summing to dIn', () => {
    configureGramSlicing({ width: 192, maxSlices: 8 });
    expect(gramSlices(383)).toEqual([383]);
    expect(gramSlices(576)).toEqual([192, 192, 192]);
    expect(gramSlices(1536)).toEqual([192, 192, 192, 192, 192, 192, 192, 192]);
    expect(gramSlices(640)).toEqual([224, 224, 192]);
    for (const d of [384, 577, 896, 4864, 8192]) {
      const s = gramSlices(d);
      expect(s.reduce((a, b) => a + b, 0)).toBe(d);
      expect(s.length).toBeLessThanOrEqual(8);
      expect(s.slice(0, -1).every((w) => w % 16 === 0)).toBe(true);
    }
    configureGramSlicing({ width: 0 });
    expect(gramSlices(8192)).toEqual([8192]);
  });

  it('the statistics graph multiplies b(b+1)/2 slice pairs per sliced input', () => {
    const m = loadFixture(path.join(repoRoot, 'models/stories260k'));
    const plan = planGraph(m.proto, m.linears);
    const types = new Map(plan.prefixOutputs.map((t) => [t, DataType.FLOAT]));
    configureGramSlicing({ width: 32 });
    const ops = decodeModel(buildBlock(plan, 0, { stats: true, gram: true, outputs: false, canonical: true }, types).bytes).graph.node.map((n) => n.op_type);
    // stories260k block 0: three 64-wide inputs (2 slices: 3 Gemms each) and one 172-wide (5 slices: 15 Gemms)
    expect(gramSlices(64)).toEqual([32, 32]);
    expect(gramSlices(172)).toEqual([48, 48, 48, 28]);
    expect(ops.filter((o) => o === 'Gemm').length).toBe(3 * 3 + 10);
    expect(ops.filter((o) => o === 'Split').length).toBe(4);
  });
});

describe('sliced Gram = full Gram, bit for bit', () => {
  it('stories260k, forced 16-wide slices (gated and split graphs)', async () => {
    const load = () => loadFixture(path.join(repoRoot, 'models/stories260k'));
    expect(await expectSameGram(load, 16)).toBe(4 * 5);
    expect(await expectSameGram(load, 16, 3, 24, 'split')).toBe(4 * 5);
  }, 120_000);

  it('onnx-community layout (GQA, q/k/v bias, KV-cache I/O), fp32 and fp16, forced 16-wide slices', async () => {
    expect(await expectSameGram(() => loadFixture(tinyDir, 'model.onnx'), 16)).toBe(4 * 2);
    expect(await expectSameGram(() => loadFixture(tinyDir, 'model_fp16.onnx'), 16)).toBe(4 * 2);
  }, 120_000);

  it('SmolLM2-135M widths (576, 1536), default slicing, 2 × 256 tokens', async () => {
    expect(await expectSameGram(() => loadFixture(smolDir, 'model.onnx'), 192, 2, 256)).toBe(4);
  }, 180_000);

  it.skipIf(!hasShared)('bench-12l (640-wide down_proj input), default slicing (needs ../shared/models)', async () => {
    expect(await expectSameGram(() => loadFixture(path.join(shared, 'models/bench-12l')), 192, 2, 64)).toBe(12);
  }, 180_000);
  if (!hasShared) it.skip('bench-12l: ../shared/models is absent, skipped', () => {});
});
