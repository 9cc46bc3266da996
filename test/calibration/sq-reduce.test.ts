/**
 * Σx² as Mul(x, x) + ReduceSum over the rows (src/calibration/graph.ts sumOfSquares, the default since session 7)
 * against the one ReduceSumSquare it replaces (`configureSqReduction('sum-square')`) and against an independent JS
 * computation: both must sum each column's float32 squares in row order in float32, i.e. give the same bits.
 * - the head graph (final norm → X → statistics, with X exposed) fed 8 × 512 random hidden states at 576 (SmolLM2)
 *   and 1536 (its intermediate width) wide inputs: its Σx² equals a JS row-order float32 loop over the exposed X, bit
 *   for bit, with either reduction, at 1 and 2 threads;
 * - runCalibration on stories260k and a one-block SmolLM2-width layout (sequential gated / split, one-shot, with Σx):
 *   every linear's Σx² and Σx are the same bits with either reduction;
 * - the default graphs hold no ReduceSumSquare.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildBlock, configureSqReduction, planGraph, runCalibration, type CalibrationOptions, type SqReduction } from '../../src/calibration/index.js';
import { buildHead, headInput } from '../../src/calibration/graph.js';
import { discoverLinears } from '../../src/model/discover.js';
import { DataType, decodeModel, type GraphProto } from '../../src/model/onnx.js';
import type { InputStats } from '../../src/types.js';
import { buildCommunityModel, COMMUNITY_SHAPES, type CommunityShape } from '../fixtures/community.js';
import { loadFixture, repoRoot, tokens, type FixtureModel } from './fixture.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-sq-reduce-'));
const smol: CommunityShape = { ...COMMUNITY_SHAPES['smollm2-135m']!, blocks: 1, vocab: 300 };
const smolDir = path.join(work, 'smol');
// A 1536-wide hidden state, so that the head's input is as wide as SmolLM2's down_proj input.
const wide: CommunityShape = { ...COMMUNITY_SHAPES['smollm2-135m']!, blocks: 1, hidden: 1536, heads: 12, kvHeads: 4, headDim: 128, inter: 64, vocab: 300 };
const wideDir = path.join(work, 'wide');
beforeAll(() => {
  buildCommunityModel(smolDir, smol, { readme: false, fp16: false });
  buildCommunityModel(wideDir, wide, { readme: false, fp16: false });
}, 180_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));
afterEach(() => {
  configureSqReduction('mul-sum');
});

const bits = (a: Float32Array | Float64Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Σ over rows of x² in float32, row after row (the order both reductions must keep). */
function rowOrderSq(x: Float32Array, d: number): Float32Array {
  const acc = new Float32Array(d);
  for (let r = 0; r < x.length / d; r++) for (let j = 0; j < d; j++) acc[j] = acc[j]! + Math.fround(x[r * d + j]! * x[r * d + j]!);
  return acc;
}

function allOps(g: GraphProto): string[] {
  return g.node.flatMap((n) => [n.op_type ?? '', ...n.attribute.flatMap((a) => (a.g ? allOps(a.g) : []))]);
}

describe('Σx²: Mul + ReduceSum against ReduceSumSquare and a JS loop', () => {
  for (const [name, dir, width] of [['SmolLM2 width', smolDir, 576], ['down_proj width', wideDir, 1536]] as const) {
    it(`head graph, 8 × 512 tokens, ${width} wide: the same bits as a row-order float32 loop over the exposed X`, async () => {
      const m = loadFixture(dir);
      const plan = planGraph(m.proto, m.linears, path.join(dir, 'onnx'));
      const lm = discoverLinears(m.proto.graph, { includeLmHead: true, config: m.config }).linears.find((l) => l.role === 'lm_head')!;
      const head = headInput(plan, lm);
      expect(head.dIn, name).toBe(width);
      const B = 8, T = 512;
      const hidden = new Float32Array(B * T * width);
      let a = 12345;
      for (let i = 0; i < hidden.length; i++) {
        a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
        hidden[i] = ((a / 2 ** 32) - 0.5) * (i % 97 === 0 ? 40 : 3);
      }
      const got = new Map<string, Float32Array>();
      for (const r of ['sum-square', 'mul-sum'] as SqReduction[]) {
        configureSqReduction(r);
        const spec = buildHead(plan, head, { gram: false, expose: true }, new Map(plan.lastOutputs.map((t) => [t, DataType.FLOAT])));
        expect(spec.storeInputs.length).toBe(1);
        const ops = allOps(decodeModel(spec.bytes).graph);
        expect(ops.includes('ReduceSumSquare')).toBe(r === 'sum-square');
        for (const threads of [1, 2]) {
          const s = await ort.InferenceSession.create(spec.bytes, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', enableMemPattern: false, logSeverityLevel: 3 });
          const out = await s.run({ [spec.storeInputs[0]!]: new ort.Tensor('float32', hidden, [B, T, width]) }, [head.sqOutput, head.exposeOutput]);
          const sq = out[head.sqOutput]!.data as Float32Array;
          const x = out[head.exposeOutput]!.data as Float32Array;
          expect(x.length).toBe(B * T * width);
          expect(bits(sq).equals(bits(rowOrderSq(x, width))), `${r}, ${threads} threads`).toBe(true);
          got.set(`${r}/${threads}`, sq.slice());
          await s.release();
        }
      }
      const first = got.get('sum-square/1')!;
      for (const [k, v] of got) expect(bits(v).equals(bits(first)), k).toBe(true);
    }, 120_000);
  }

  async function stats(m: FixtureModel, r: SqReduction, o: Partial<CalibrationOptions>): Promise<Map<string, InputStats>> {
    configureSqReduction(r);
    const out = new Map<string, InputStats>();
    await runCalibration(m, tokens(4 * 64, Number(m.config?.vocab_size ?? 300), 4242), {
      nsamples: 4, seqlen: 64, batchSize: 2, threads: 2, needs: { sq: true, gram: false, sum: true }, ...o,
    }, (_b, s) => {
      for (const [k, v] of s) out.set(k, v);
    });
    return out;
  }

  for (const [name, load] of [
    ['stories260k', () => loadFixture(path.join(repoRoot, 'models/stories260k'))],
    ['one SmolLM2-135M block', () => loadFixture(smolDir)],
  ] as const) {
    for (const o of [{}, { blockGraphs: 'split' }, { mode: 'oneshot' }] as Partial<CalibrationOptions>[]) {
      it(`${name}, ${JSON.stringify(o)}: every linear's Σx² and Σx the same bits with either reduction`, async () => {
        const old = await stats(load(), 'sum-square', o);
        const now = await stats(load(), 'mul-sum', o);
        expect(now.size).toBe(old.size);
        expect(old.size).toBeGreaterThan(0);
        for (const [k, want] of old) {
          const got = now.get(k)!;
          expect(bits(got.sq).equals(bits(want.sq)), `${k} sq`).toBe(true);
          expect(bits(got.sum!).equals(bits(want.sum!)), `${k} sum`).toBe(true);
          expect(want.sq.some((v) => v > 0)).toBe(true);
        }
      }, 120_000);
    }
  }

  it('the default block graphs square with Mul and reduce with ReduceSum, one per distinct input; no ReduceSumSquare', () => {
    const m = loadFixture(path.join(repoRoot, 'models/stories260k'));
    const plan = planGraph(m.proto, m.linears);
    const types = new Map(plan.prefixOutputs.map((t) => [t, DataType.FLOAT]));
    const gated = decodeModel(buildBlock(plan, 0, { stats: true, gram: false, outputs: true, canonical: true, gate: true }, types).bytes);
    const thenBranch = gated.graph.node.find((n) => n.op_type === 'If')!.attribute.find((a) => a.name === 'then_branch')!.g!;
    const ops = thenBranch.node.map((n) => n.op_type ?? '');
    expect(ops.filter((x) => x === 'ReduceSum').length).toBe(plan.statsInputs[0]!.length);
    expect(ops.filter((x) => x === 'Mul').length).toBe(plan.statsInputs[0]!.length);
    expect(allOps(gated.graph)).not.toContain('ReduceSumSquare');
  });
});
