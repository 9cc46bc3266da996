/**
 * Sequential calibration with gated block graphs (the default: one session, the statistics in the then branch of an If
 * and the block's tail in its else branch) and split block graphs (a statistics-only and an outputs-only session) against
 * the combined graph (one session whose graph holds both, serving both passes: the code before the split). Both run
 * the same float32 onnxruntime nodes for what is fetched and accumulate in the same order, so every statistic (Σx²,
 * XᵀX, Σx of every linear), every tensor handed from one block to the next and the hidden-state sums must be the same
 * bits — with a callback that really prunes, so the output passes run on changed weights. On stories260k, a tiny
 * onnx-community layout (test/fixtures/community.ts: GQA, q/k/v biases, KV-cache I/O) in fp32 and fp16, and the
 * architecture layouts of ../shared/models/layouts when present. The statistics of the split path are also checked
 * against an independent float64 computation in independent.test.ts (which runs the default, split).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBlock, planGraph, runCalibration, type CalibrationOptions, type CalibrationReport } from '../../src/calibration/index.js';
import { DataType, decodeModel, fp16ToFloat32 } from '../../src/model/onnx.js';
import type { InputStats } from '../../src/types.js';
import { buildCommunityModel, COMMUNITY_SHAPES, type CommunityShape } from '../fixtures/community.js';
import { hasShared, loadFixture, repoRoot, shared, type FixtureModel, tokens } from './fixture.js';

const N = 5;
const T = 24;

/** Zero the smaller-magnitude half of each linear of block b (the same weights in both runs). */
function pruneHalf(m: FixtureModel, b: number): void {
  for (const l of m.linears.filter((x) => x.block === b)) {
    const w = m.readInitializer(l.weight);
    const thr = Float32Array.from(w, Math.abs).sort()[Math.floor(w.length / 2)]!;
    for (let i = 0; i < w.length; i++) if (Math.abs(w[i]!) <= thr) w[i] = 0;
    m.writeInitializer(l.weight, w);
  }
}

interface Run {
  report: CalibrationReport;
  stats: Map<string, InputStats>;
  carried: Map<string, { dims: readonly number[]; type: string; bytes: Buffer }>;
}

async function run(load: () => FixtureModel, blockGraphs: CalibrationOptions['blockGraphs'], blockWeights?: CalibrationOptions['blockWeights']): Promise<Run> {
  const m = load();
  const vocab = Number(m.config?.vocab_size ?? 512);
  const stats = new Map<string, InputStats>();
  const carried: Run['carried'] = new Map();
  const report = await runCalibration(m, tokens(N * T, vocab, 12345), {
    nsamples: N, seqlen: T, batchSize: 2, threads: 2, needs: { sq: true, gram: true, sum: true }, blockGraphs, blockWeights,
    onCarried: (b, i, tensors) => {
      for (const [name, t] of Object.entries(tensors)) {
        const d = t.data as unknown as ArrayBufferView;
        carried.set(`${b}/${i}/${name}`, { dims: [...t.dims], type: t.type, bytes: Buffer.from(Buffer.from(d.buffer, d.byteOffset, d.byteLength)) });
      }
    },
  }, (b, s) => {
    for (const [k, v] of s) stats.set(k, v);
    pruneHalf(m, b);
  });
  return { report, stats, carried };
}

const bits = (a: Float64Array | undefined): Buffer | undefined => (a ? Buffer.from(a.buffer, a.byteOffset, a.byteLength) : undefined);

async function expectSameBits(load: () => FixtureModel, sessions?: { split: number; combined: number }): Promise<void> {
  const combined = await run(load, 'combined');
  for (const graphs of ['gated', 'split'] as const) await sameBits(load, combined, await run(load, graphs), graphs, sessions);
}

async function sameBits(
  load: () => FixtureModel, combined: Run, split: Run, graphs: 'gated' | 'split', sessions?: { split: number; combined: number },
): Promise<void> {
  expect(split.stats.size).toBe(combined.stats.size);
  expect(split.stats.size).toBe(load().linears.filter((l) => l.block >= 0).length);
  for (const [k, want] of combined.stats) {
    const got = split.stats.get(k)!;
    expect(got, k).toBeDefined();
    expect(bits(got.sq)!.equals(bits(want.sq)!), `${k} sq`).toBe(true);
    expect(bits(got.gram)!.equals(bits(want.gram)!), `${k} gram`).toBe(true);
    expect(bits(got.sum)!.equals(bits(want.sum)!), `${k} sum`).toBe(true);
    expect(got.tokens).toBe(want.tokens);
  }
  // Every tensor handed on (all blocks but the last, every batch) in both runs, with the same bytes.
  const L = combined.report.blocks.length;
  expect(split.carried.size).toBe(combined.carried.size);
  expect(combined.carried.size).toBeGreaterThanOrEqual((L - 1) * Math.ceil(N / 2));
  for (const [k, want] of combined.carried) {
    const got = split.carried.get(k);
    expect(got, k).toBeDefined();
    expect(got!.type).toBe(want.type);
    expect(got!.dims).toEqual(want.dims);
    expect(got!.bytes.equals(want.bytes), `carried ${k}`).toBe(true);
  }
  for (let b = 0; b < L; b++) {
    expect(split.report.blocks[b]!.inputSum).toBe(combined.report.blocks[b]!.inputSum);
    expect(split.report.blocks[b]!.inputSumSq).toBe(combined.report.blocks[b]!.inputSumSq);
  }
  const s = split.report.blockSessionsByKind!;
  const c = combined.report.blockSessions!;
  expect(combined.report.blockSessionsByKind).toEqual({ statistics: 0, output: 0, combined: c, gated: 0 });
  if (graphs === 'gated') {
    // Gated: one session per run of identical blocks, as combined.
    expect(s).toEqual({ statistics: 0, output: 0, combined: 0, gated: c });
  } else {
    // Split: one statistics session and one outputs session per run of identical blocks.
    expect(s.combined + s.gated).toBe(0);
    expect(s.statistics).toBeGreaterThanOrEqual(1);
    expect(s.output).toBeGreaterThanOrEqual(1);
    expect(split.report.blockSessions).toBe(s.statistics + s.output);
    if (sessions) expect(split.report.blockSessions).toBe(sessions.split);
  }
  if (sessions) expect(c).toBe(sessions.combined);
}

const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-calib-split-'));
const tiny: CommunityShape = { ...COMMUNITY_SHAPES['qwen2.5-0.5b']!, blocks: 3, hidden: 64, inter: 96, heads: 4, kvHeads: 2, headDim: 16, vocab: 300 };
const tinyDir = path.join(work, 'tiny');
beforeAll(() => {
  buildCommunityModel(tinyDir, tiny, { readme: false });
}, 60_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('split block graphs', () => {
  it('the statistics graph stops at the last linear input, the outputs graph has no reductions', () => {
    const m = loadFixture(path.join(repoRoot, 'models/stories260k'));
    const plan = planGraph(m.proto, m.linears);
    const types = new Map(plan.prefixOutputs.map((t) => [t, DataType.FLOAT])); // element types only label the inputs here
    const ops = (bytes: Uint8Array): string[] => decodeModel(bytes).graph.node.map((n) => n.op_type ?? '');
    const count = (xs: string[], op: string): number => xs.filter((x) => x === op).length;
    const stats = buildBlock(plan, 0, { stats: true, gram: true, outputs: false, canonical: true }, types);
    const outs = buildBlock(plan, 0, { stats: false, gram: false, outputs: true, canonical: true }, types);
    const both = buildBlock(plan, 0, { stats: true, gram: true, outputs: true, canonical: true }, types);
    const down = m.linears.find((l) => l.name === 'model.layers.0.mlp.down_proj')!.weight;
    expect(stats.weightInputs.map((w) => w.name)).not.toContain(down);
    expect(stats.storeOutputs).toEqual([]);
    expect(outs.weightInputs.map((w) => w.name)).toContain(down);
    // 7 linears: 6 in the statistics graph (no down_proj), 7 in the outputs graph; 4 distinct inputs → 4 reductions + 4 Grams.
    expect(count(ops(stats.bytes), 'MatMul') - count(ops(both.bytes), 'MatMul')).toBe(-1);
    expect(count(ops(outs.bytes), 'MatMul')).toBe(count(ops(both.bytes), 'MatMul'));
    expect(count(ops(stats.bytes), 'ReduceSum')).toBe(4);
    expect(count(ops(stats.bytes), 'Gemm')).toBe(4);
    expect(count(ops(outs.bytes), 'ReduceSum') + count(ops(outs.bytes), 'Gemm')).toBe(0);
    // Gated: the main graph holds what the statistics need (the statistics graph's MatMuls, no down_proj); the If's
    // then branch the reductions, its else branch the tail (down_proj and the last residual Add).
    const gated = decodeModel(buildBlock(plan, 0, { stats: true, gram: true, outputs: true, canonical: true, gate: true }, types).bytes);
    const main = gated.graph.node.map((n) => n.op_type ?? '');
    expect(count(main, 'MatMul')).toBe(count(ops(stats.bytes), 'MatMul'));
    expect(count(main, 'ReduceSum') + count(main, 'Gemm')).toBe(0);
    const gateNode = gated.graph.node.find((n) => n.op_type === 'If')!;
    const branch = (k: string): string[] => gateNode.attribute.find((a) => a.name === k)!.g!.node.map((n) => n.op_type ?? '');
    expect(count(branch('then_branch'), 'ReduceSum')).toBe(4);
    expect(count(branch('then_branch'), 'MatMul')).toBe(0);
    expect(count(branch('else_branch'), 'MatMul')).toBe(1);
    expect(count(branch('else_branch'), 'Add')).toBeGreaterThanOrEqual(1);
    expect(count(branch('else_branch'), 'ReduceSum')).toBe(0);
  });

  it('fp16 blocks keep the tail in the main graph of the gated graph (other bits across the If)', () => {
    const m = loadFixture(tinyDir, 'model_fp16.onnx');
    const plan = planGraph(m.proto, m.linears);
    const types = new Map(plan.prefixOutputs.map((t) => [t, DataType.FLOAT16]));
    const gated = decodeModel(buildBlock(plan, 0, { stats: true, gram: false, outputs: true, canonical: true, gate: true }, types).bytes);
    const gateNode = gated.graph.node.find((n) => n.op_type === 'If')!;
    expect(gateNode.attribute.find((a) => a.name === 'else_branch')!.g!.node.every((n) => n.op_type === 'Constant')).toBe(true);
    const combined = decodeModel(buildBlock(plan, 0, { stats: true, gram: false, outputs: true, canonical: true }, types).bytes);
    const matmuls = (g: typeof gated): number => g.graph.node.filter((n) => n.op_type === 'MatMul').length;
    expect(matmuls(gated)).toBe(matmuls(combined));
  });
});

describe('gated and split block graphs give the same bits as the combined graph', () => {
  it('stories260k: statistics, carried hidden states and hidden sums; 1 session gated and combined, 2 split', async () => {
    await expectSameBits(() => loadFixture(path.join(repoRoot, 'models/stories260k')), { split: 2, combined: 1 });
  }, 60_000);

  it('onnx-community layout (GQA, q/k/v bias, KV-cache I/O), fp32', async () => {
    await expectSameBits(() => loadFixture(tinyDir, 'model.onnx'));
  }, 60_000);

  it('onnx-community layout, fp16 graph and weights', async () => {
    const m = loadFixture(tinyDir, 'model_fp16.onnx');
    expect(m.linears.every((l) => l.dtype === 'float16')).toBe(true);
    await expectSameBits(() => loadFixture(tinyDir, 'model_fp16.onnx'));
  }, 60_000);

  const layouts = ['llama-hf', 'gpt2', 'opt', 'phi3'];
  for (const name of layouts) {
    const dir = path.join(shared, 'models/layouts', name);
    it.skipIf(!hasShared || !existsSync(dir))(`layout ${name} (needs ../shared/models/layouts)`, async () => {
      await expectSameBits(() => loadFixture(dir));
    }, 60_000);
  }
  if (!hasShared) it.skip('layouts: ../shared/models is absent, layout cases skipped', () => {});
});

/** Largest |a − b| over the largest |a| (0 when both are all zero). */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(a[i]!));
  }
  return m > 0 ? d / m : d;
}

/**
 * blockWeights 'initializers' (pre-packed MatMuls, a session per pass) against the default ('inputs'): the same
 * statistics up to float32 rounding (pre-packing changes the accumulation order, so not the same bits), the same
 * tensors handed on up to rounding, one statistics session per block and one outputs session per block but the last.
 */
async function expectClose(load: () => FixtureModel, tol: number): Promise<void> {
  const ref = await run(load, 'gated');
  const init = await run(load, 'gated', 'initializers');
  const L = ref.report.blocks.length;
  expect(init.report.blockSessionsByKind).toEqual({ statistics: L, output: L - 1, combined: 0, gated: 0 });
  expect(init.stats.size).toBe(ref.stats.size);
  let worst = 0;
  for (const [k, want] of ref.stats) {
    const got = init.stats.get(k)!;
    worst = Math.max(worst, relDiff(want.sq, got.sq), relDiff(want.gram!, got.gram!));
    expect(relDiff(want.sq, got.sq), `${k} sq`).toBeLessThan(tol);
    expect(relDiff(want.gram!, got.gram!), `${k} gram`).toBeLessThan(tol);
  }
  expect(init.carried.size).toBe(ref.carried.size);
  for (const [k, want] of ref.carried) {
    const got = init.carried.get(k)!;
    expect(got.type).toBe(want.type);
    expect(got.dims).toEqual(want.dims);
    const view = (x: { type: string; bytes: Buffer }): ArrayLike<number> => (x.type === 'float16'
      ? fp16ToFloat32(new Uint16Array(x.bytes.buffer, x.bytes.byteOffset, x.bytes.byteLength / 2))
      : new Float32Array(x.bytes.buffer, x.bytes.byteOffset, x.bytes.byteLength / 4));
    expect(relDiff(view(want), view(got)), `carried ${k}`).toBeLessThan(tol);
  }
  // Not a vacuous comparison: block 0's q/k/v input (before any MatMul) is the same bits in both.
  const q0 = load().linears.find((l) => l.block === 0)!.name;
  expect(bits(init.stats.get(q0)!.sq)!.equals(bits(ref.stats.get(q0)!.sq)!)).toBe(true);
  expect(worst).toBeLessThan(tol);
}

describe("blockWeights 'initializers': the statistics of 'inputs' up to float32 rounding", () => {
  it('stories260k', async () => {
    await expectClose(() => loadFixture(path.join(repoRoot, 'models/stories260k')), 1e-4);
  }, 60_000);
  it('onnx-community layout, fp32', async () => {
    await expectClose(() => loadFixture(tinyDir, 'model.onnx'), 1e-4);
  }, 60_000);
  it('onnx-community layout, fp16 weights stay fp16', async () => {
    await expectClose(() => loadFixture(tinyDir, 'model_fp16.onnx'), 1e-2);
  }, 60_000);
});
