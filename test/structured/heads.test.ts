/**
 * Structured head pruning (`--target heads`, whole KV groups) end to end. The reference for a pruned graph is
 * independent of the surgery: the ORIGINAL ONNX graph with the removed groups' o-projection input columns zeroed (an
 * exact equivalent of removing them: a head reaches the block output only through its o columns) — and, for ffn,heads,
 * the removed FFN channels zeroed too; for flap, o's bias change added through a new Add — run by onnxruntime.
 * FLAP's compensation on o is checked against a float64 computation from the dense model's o inputs.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { AutoModelForCausalLM, Tensor, env } from '@huggingface/transformers';
import '../../src/index.js';
import { pruneModel, savePruned, explicit, owl, DsaPruneError } from '../../src/index.js';
import { attachModel, discoverLinears, inspectModel, installLoadingHook } from '../../src/model/index.js';
import { attentionLayout, planHeadRewrites } from '../../src/model/surgery-heads.js';
import { buildFeeds } from '../../src/eval/forward.js';
import { DataType, createNode, createTensor, encodeModel, readModelFile, setTensorFloat32, tensorDims, tensorToFloat32, type ModelProto } from '../../src/model/onnx.js';
import { headGroupCount, splitHeadsBudget } from '../../src/methods/structured/index.js';
import type { PruneReport } from '../../src/prune.js';
import { tokens, logitsOf, maxRel } from './helpers.js';

env.allowRemoteModels = false;
installLoadingHook();
const LONG = 600_000;
const repo = path.resolve(import.meta.dirname, '../..');
const storiesDir = path.join(repo, 'models/stories260k');
const layoutsDir = path.resolve(repo, '../shared/models/layouts');
const benchDir = path.resolve(repo, '../shared/models/bench-12l');
const hasLayouts = existsSync(layoutsDir);
const hasBench = existsSync(path.join(benchDir, 'onnx/model.onnx'));
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-heads-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function numberOf(c: Record<string, unknown>, ...keys: string[]): number | undefined {
  for (const k of keys) if (typeof c[k] === 'number') return c[k] as number;
  return undefined;
}

/** Head counts of the ORIGINAL config (test-side reading, independent of src). */
function headsOf(c: Record<string, unknown>): { H: number; G: number; d: number } {
  const H = numberOf(c, 'num_attention_heads', 'n_head')!;
  const G = numberOf(c, 'num_key_value_heads') ?? H;
  const d = numberOf(c, 'head_dim') ?? numberOf(c, 'hidden_size', 'n_embd')! / H;
  return { H, G, d };
}

/** The Add after a node's output (bias), or Gemm's C: the initializer's values, or undefined. */
function outputBias(proto: ModelProto, nodeName: string, dOut: number): Float32Array | undefined {
  const g = proto.graph;
  const node = g.node.find((n) => n.name === nodeName)!;
  const valuesOf = (name: string | undefined): Float32Array | undefined => {
    for (let k = 0; name && k < 8; k++) {
      const t = g.initializer.find((x) => x.name === name);
      if (t) return tensorToFloat32(t);
      const p = g.node.find((n) => n.output.includes(name!));
      if (!p || p.op_type !== 'Identity') return undefined;
      name = p.input[0];
    }
    return undefined;
  };
  if (node.op_type === 'Gemm' && node.input[2]) return valuesOf(node.input[2]);
  const adds = g.node.filter((n) => n.input.includes(node.output[0]!));
  if (adds.length === 1 && adds[0]!.op_type === 'Add') {
    const v = valuesOf(adds[0]!.input.find((x) => x !== node.output[0]));
    if (v && v.length === dOut) return v;
  }
  return undefined;
}

/** FLAP's change of o's bias per block as the pruned graph holds it (pruned − original; original zeros when none). */
function oCompensation(pruned: ModelProto, originalPath: string, config: Record<string, unknown>, role: 'o' | 'down' = 'o'): Float32Array[] {
  const orig = readModelFile(originalPath);
  const os_ = discoverLinears(orig.graph, { config }).linears.filter((l) => l.role === role);
  return os_.map((l) => {
    const a = outputBias(pruned, l.node, l.dOut) ?? new Float32Array(l.dOut);
    const b = outputBias(orig, l.node, l.dOut) ?? new Float32Array(l.dOut);
    return a.map((x, i) => x - b[i]!);
  });
}

/**
 * The original graph with, per block of the report: the o input columns of the removed KV groups zeroed, the removed
 * FFN channels zeroed (gate/up rows + biases, down columns), and `oBias[b]` added after o through a new Add.
 */
function zeroedReference(onnxPath: string, config: Record<string, unknown>, report: PruneReport, oBias?: Float32Array[], downBias?: Float32Array[]): Uint8Array {
  const m = readModelFile(onnxPath);
  const g = m.graph;
  const { linears, layout } = discoverLinears(g, { config });
  const init = (name: string) => g.initializer.find((t) => t.name === name)!;
  const { H, G, d } = headsOf(config);
  const nRep = H / G;
  for (const blk of report.structured!.blocks) {
    const o = linears.find((x) => x.block === blk.block && x.role === 'o')!;
    if (blk.keptGroups) {
      const gone = new Uint8Array(H * d).fill(1);
      for (const grp of blk.keptGroups) gone.fill(0, grp * nRep * d, (grp + 1) * nRep * d);
      const t = init(o.weight);
      const w = tensorToFloat32(t);
      const [r0, c0] = tensorDims(t);
      const inAxisIsRow = layout.get(o.name) !== 'out_in'; // in_out stores [dIn, dOut]
      for (let r = 0; r < r0!; r++) for (let c = 0; c < c0!; c++) if (gone[inAxisIsRow ? r : c]) w[r * c0! + c] = 0;
      setTensorFloat32(t, w);
    }
    if (blk.ffnAfter < blk.ffnBefore) {
      const F = blk.ffnBefore;
      const gone = new Uint8Array(F).fill(1);
      for (const j of blk.kept) gone[j] = 0;
      for (const l of linears.filter((x) => x.block === blk.block && ['gate', 'up', 'gate_up', 'down'].includes(x.role))) {
        const t = init(l.weight);
        const w = tensorToFloat32(t);
        const [r0, c0] = tensorDims(t);
        const channelAxisIsRow = (layout.get(l.name) === 'out_in') !== (l.role === 'down');
        for (let r = 0; r < r0!; r++) for (let c = 0; c < c0!; c++) if (gone[(channelAxisIsRow ? r : c) % F]) w[r * c0! + c] = 0;
        setTensorFloat32(t, w);
      }
    }
    const down = linears.find((x) => x.block === blk.block && x.role === 'down')!;
    for (const [lin, extra, tag] of [[o, oBias?.[blk.block], 'o'], [down, downBias?.[blk.block], 'down']] as const) {
      if (!extra) continue;
      const node = g.node.find((n) => n.name === lin.node)!;
      const out = node.output[0]!;
      node.output[0] = `${out}_ref`;
      const bt = createTensor({ name: `ref_${tag}bias_${blk.block}`, dims: [extra.length], data_type: DataType.FLOAT });
      setTensorFloat32(bt, extra);
      g.initializer.push(bt);
      g.node.splice(g.node.indexOf(node) + 1, 0, createNode({ op_type: 'Add', name: `ref_${tag}add_${blk.block}`, input: [`${out}_ref`, bt.name!], output: [out] }));
    }
  }
  g.value_info = [];
  return encodeModel(m);
}

/** Greedy continuation by full forwards without cache (plain onnxruntime), argmax of the last position. */
async function greedyNoCache(session: ort.InferenceSession, prompt: number[], n: number, vocab: number, config: Record<string, unknown>): Promise<number[]> {
  const seq = [...prompt];
  for (let k = 0; k < n; k++) {
    const lg = await logitsOf(session, Int32Array.from(seq), 1, seq.length, config);
    const last = lg.subarray((seq.length - 1) * vocab, seq.length * vocab);
    let best = 0;
    for (let i = 1; i < vocab; i++) if (last[i]! > last[best]!) best = i;
    seq.push(best);
  }
  return seq;
}

async function generateCached(model: { generate: (x: never) => Promise<unknown> }, prompt: number[], n: number): Promise<number[]> {
  const input_ids = new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
  const attention_mask = new Tensor('int64', BigInt64Array.from(prompt.map(() => 1n)), [1, prompt.length]);
  const gen = (await model.generate({ input_ids, attention_mask, max_new_tokens: n, min_new_tokens: n, do_sample: false } as never)) as { tolist(): bigint[][] };
  return gen.tolist()[0]!.map(Number);
}

const blockParams = (c: Record<string, unknown>, hidden: number, F: number): number => {
  const { H, G, d } = headsOf(c);
  return hidden * H * d * 2 + hidden * G * d * 2 + 3 * hidden * F;
};

describe('head budget (plain arrays)', () => {
  const blocks = Array.from({ length: 5 }, (_, i) => ({ index: i, params: 45312, kvHeads: 4, paramsPerGroup: 3072 }));
  it('heads alone: r = round(S·ΣP / (B·c)); refusals with codes', () => {
    expect(headGroupCount(blocks, Array(5).fill(0.07), 0.07)).toBe(1);
    expect(headGroupCount(blocks, Array(5).fill(0.2), 0.2)).toBe(3);
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(DsaPruneError);
        return (e as DsaPruneError).code;
      }
      return undefined;
    };
    expect(code(() => headGroupCount(blocks, [0.05, 0.05, 0.1, 0.1, 0.05], 0.07))).toBe('invalid-input'); // per-block shares differ
    expect(() => headGroupCount(blocks, Array(5).fill(0.02), 0.02)).toThrow(/below half a KV group per block/);
    expect(() => headGroupCount(blocks, Array(5).fill(0.25), 0.25)).toThrow(/would remove 4 of the 4 KV groups/);
  });
  it('ffn,heads: r = round(S·G) groups, the FFN takes each share minus the heads part; total exact', () => {
    const shares = [0.1, 0.2, 0.3, 0.25, 0.15];
    const S = 0.2;
    const { groups, ffnShares, ffnSparsity } = splitHeadsBudget(blocks, shares, S);
    expect(groups).toBe(1);
    ffnShares.forEach((s, i) => expect(s * 45312).toBeCloseTo(shares[i]! * 45312 - 3072, 6));
    expect(ffnSparsity * 5 * 45312).toBeCloseTo(S * 5 * 45312 - 5 * 3072, 6);
    expect(() => splitHeadsBudget(blocks, [0.05, 0.2, 0.3, 0.25, 0.2], 0.2)).toThrow(/block 0's share 5.00% is smaller than its heads part/);
  });
});

describe('stories260k (models/stories260k)', () => {
  const config = JSON.parse(readFileSync(path.join(storiesDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const onnxPath = path.join(storiesDir, 'onnx/model.onnx');
  const vocab = Number(config.vocab_size);
  const nsamples = 8;
  const seqlen = 64;
  const calIds = tokens(nsamples * seqlen, vocab, 11);
  const evalIds = tokens(2 * 48, vocab, 99);
  const P = blockParams(config, 64, 172); // 45312
  const c = (2 + 2) * 8 * 64 + 2 * 8 * 64; // one KV group: 2 q heads + k + v rows (64 inputs), 2 heads of o columns

  for (const score of ['wanda-sp', 'flap', 'magnitude'] as const) {
    it(`heads, ${score}: pruned logits = original graph with the groups' o columns zeroed; config; exact params`, async () => {
      const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
      const report = await pruneModel(model, { method: 'structured', target: ['heads'], score, sparsity: 0.07, calibration: { ids: calIds }, nsamples, seqlen });
      const st = report.structured!;
      expect(P).toBe(45312);
      for (const b of st.blocks) {
        expect([b.headsBefore, b.headsAfter, b.kvHeadsBefore, b.kvHeadsAfter]).toEqual([8, 6, 4, 3]);
        expect(b.keptGroups!.length).toBe(3);
        expect(b.ffnAfter).toBe(b.ffnBefore);
      }
      expect(st.config).toEqual({ num_attention_heads: 6, num_key_value_heads: 3, head_dim: 8 });
      const pm = await attachModel(model);
      const pruned = await logitsOf(model.sessions.model, evalIds, 2, 48, pm.config);
      const ref = await ort.InferenceSession.create(zeroedReference(onnxPath, config, report, score === 'flap' ? oCompensation(pm.proto, onnxPath, config) : undefined), { logSeverityLevel: 3 });
      expect(maxRel(pruned, await logitsOf(ref, evalIds, 2, 48, config))).toBeLessThan(1e-5);
      const os_ = pm.linears.filter((l) => l.role === 'o');
      expect(os_.map((l) => l.dIn)).toEqual(Array(5).fill(48));
      expect(pm.linears.filter((l) => l.role === 'k').map((l) => l.dOut)).toEqual(Array(5).fill(24));
      // flap adds an o bias (64 per block) where there was none.
      expect(st.params.before - st.params.after).toBe(5 * c - (score === 'flap' ? 5 * 64 : 0));
      expect(report.realizedSparsity).toBeCloseTo(c / P, 12);
    }, LONG);
  }

  it('flap with biasCompensation: false: no o bias is added; logits = reference without bias', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const report = await pruneModel(model, { method: 'structured', target: 'heads', score: 'flap', biasCompensation: false, sparsity: 0.07, calibration: { ids: calIds }, nsamples, seqlen });
    expect(report.structured!.biasCompensation).toBe(false);
    expect(report.structured!.params.before - report.structured!.params.after).toBe(5 * c);
    const pm = await attachModel(model);
    const pruned = await logitsOf(model.sessions.model, evalIds, 2, 48, pm.config);
    const ref = await ort.InferenceSession.create(zeroedReference(onnxPath, config, report), { logSeverityLevel: 3 });
    expect(maxRel(pruned, await logitsOf(ref, evalIds, 2, 48, config))).toBeLessThan(1e-5);
  }, LONG);

  it('ffn,heads with OWL shares: one exact budget; logits = reference with both zeroed', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const S = 0.25;
    const report = await pruneModel(model, {
      method: 'structured', target: 'ffn,heads', score: 'wanda-sp', sparsity: S, allocator: owl({ M: 5, lambda: 0.08 }),
      calibration: { ids: calIds }, nsamples, seqlen,
    });
    const st = report.structured!;
    const r = Math.round(S * 4); // 1 group per block
    expect(st.blocks.every((b) => b.kvHeadsAfter === 4 - r)).toBe(true);
    const ffnRemoved = st.blocks.reduce((a, b) => a + b.ffnBefore - b.ffnAfter, 0);
    expect(ffnRemoved).toBe(Math.round((S * 5 * P - 5 * r * c) / 192));
    expect(new Set(st.blocks.map((b) => b.ffnAfter)).size).toBeGreaterThan(1);
    expect(st.params.before - st.params.after).toBe(5 * r * c + ffnRemoved * 192);
    const pm = await attachModel(model);
    const pruned = await logitsOf(model.sessions.model, evalIds, 2, 48, pm.config);
    const ref = await ort.InferenceSession.create(zeroedReference(onnxPath, config, report), { logSeverityLevel: 3 });
    expect(maxRel(pruned, await logitsOf(ref, evalIds, 2, 48, config))).toBeLessThan(1e-5);
  }, LONG);

  it('flap one-shot: o bias compensation = float64 Σ_removed mean(x_c)·W_o[:, c] from the dense model', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const report = await pruneModel(model, { method: 'structured', target: 'heads', score: 'flap', sparsity: 0.14, mode: 'oneshot', calibration: { ids: calIds }, nsamples, seqlen });
    const pm = await attachModel(model);
    const got = oCompensation(pm.proto, onnxPath, config);
    const m = readModelFile(onnxPath);
    const { linears, layout } = discoverLinears(m.graph, { config });
    const os_ = linears.filter((l) => l.role === 'o');
    const xNames = os_.map((l) => m.graph.node.find((n) => n.name === l.node)!.input[0]!);
    for (const x of xNames) m.graph.output.push({ name: x });
    const s = await ort.InferenceSession.create(encodeModel(m), { logSeverityLevel: 3 });
    const out = await s.run(buildFeeds(s as never, calIds, nsamples, seqlen, { config }), xNames);
    for (const [b, l] of os_.entries()) {
      const x = out[xNames[b]!]!.data as Float32Array;
      const F = l.dIn; // 64 = 8 heads × 8
      const N = x.length / F;
      const mean = new Float64Array(F);
      for (let t = 0; t < N; t++) for (let j = 0; j < F; j++) mean[j] += x[t * F + j]!;
      for (let j = 0; j < F; j++) mean[j] /= N;
      const kept = new Set(report.structured!.blocks[b]!.keptGroups);
      expect(kept.size).toBe(2); // 0.14 → 2 groups removed of 4
      const W = tensorToFloat32(m.graph.initializer.find((t) => t.name === l.weight)!);
      expect(layout.get(l.name)).toBe('in_out');
      const expected = new Float64Array(l.dOut);
      for (let j = 0; j < F; j++) if (!kept.has(Math.floor(j / 16))) for (let o = 0; o < l.dOut; o++) expected[o] += mean[j]! * W[j * l.dOut + o]!;
      let d = 0;
      let mx = 0;
      for (let o = 0; o < l.dOut; o++) {
        d = Math.max(d, Math.abs(got[b]![o]! - expected[o]!));
        mx = Math.max(mx, Math.abs(expected[o]!));
      }
      expect(mx).toBeGreaterThan(0);
      expect(d / mx).toBeLessThan(1e-4);
    }
  }, LONG);

  it('generate with the KV cache = greedy without cache; saved folder (config.json updated) generates the same in plain transformers.js', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    await pruneModel(model, { method: 'structured', target: ['heads'], score: 'flap', sparsity: 0.14, calibration: { ids: calIds }, nsamples, seqlen });
    const prompt = [1, 101, 207, 263, 431];
    const cached = await generateCached(model as never, prompt, 16);
    const pm = await attachModel(model);
    expect(cached).toEqual(await greedyNoCache(model.sessions.model, prompt, 16, vocab, pm.config));
    const out = path.join(work, 'stories-heads');
    await savePruned(model, out);
    const saved = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(saved).toEqual({ ...config, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8 });
    const manifest = JSON.parse(readFileSync(path.join(out, 'pruning.json'), 'utf8'));
    expect(manifest.structured.blocks.map((b: { keptGroups: number[] }) => b.keptGroups.length)).toEqual(Array(5).fill(2));
    const ins = await inspectModel(out);
    expect(ins.attnWidths).toEqual(Array(5).fill(32));
    const script = `import { AutoModelForCausalLM, Tensor, env } from '@huggingface/transformers';
env.allowRemoteModels = false;
const m = await AutoModelForCausalLM.from_pretrained(${JSON.stringify(out)}, { dtype: 'fp32' });
const p = ${JSON.stringify(prompt)};
const ids = new Tensor('int64', BigInt64Array.from(p.map(BigInt)), [1, p.length]);
const mask = new Tensor('int64', BigInt64Array.from(p.map(() => 1n)), [1, p.length]);
const g = await m.generate({ input_ids: ids, attention_mask: mask, max_new_tokens: 16, min_new_tokens: 16, do_sample: false });
console.log(JSON.stringify(g.tolist()[0].map(Number)));`;
    const file = path.join(repo, `.heads-plain-${process.pid}.mjs`);
    writeFileSync(file, script);
    try {
      const stdout = execFileSync(process.execPath, [file], { encoding: 'utf8' });
      expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual(cached);
    } finally {
      rmSync(file, { force: true });
    }
  }, LONG);

  it('refuses bad requests before any work, with codes', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const base = { method: 'structured', calibration: { ids: calIds }, nsamples, seqlen, score: 'magnitude' } as const;
    const codeOf = async (p: Promise<unknown>): Promise<string> => p.then(() => 'resolved', (e: unknown) => (e instanceof DsaPruneError ? e.code : `other: ${String(e)}`));
    expect(await codeOf(pruneModel(model, { ...base, target: 'heads', sparsity: 0.26 }))).toBe('invalid-input'); // every group
    expect(await codeOf(pruneModel(model, { ...base, target: 'heads', sparsity: 0.02 }))).toBe('invalid-input'); // < half a group
    expect(await codeOf(pruneModel(model, { ...base, target: 'heads', sparsity: 0.1, allocator: explicit([0.05, 0.05, 0.1, 0.15, 0.15]) }))).toBe('invalid-input');
    const pm = await attachModel(model);
    expect(pm.linears.filter((l) => l.role === 'o').map((l) => l.dIn)).toEqual(Array(5).fill(64));
    expect(pm.config.num_key_value_heads).toBe(4);
    // A fused attention contrib op in the graph: refused as unsupported.
    const proto = readModelFile(onnxPath);
    proto.graph.node.push(createNode({ op_type: 'GroupQueryAttention', domain: 'com.microsoft', name: '/model/layers.0/attn/GQA', input: [], output: ['gqa_out'] }));
    const fake = { proto, config, linears: discoverLinears(proto.graph, { config }).linears, source: { onnxPath: 'x/onnx/model.onnx' }, blocks: 5 };
    expect(() => attentionLayout(fake as never, 0)).toThrow(expect.objectContaining({ code: 'unsupported', message: expect.stringMatching(/fused attention op GroupQueryAttention/) }));
  }, LONG);
});

describe.skipIf(!hasBench)('bench-12l (../shared/models/bench-12l; skipped when absent): static head constants and KV-cache I/O', () => {
  it('heads flap: logits = zeroed reference; generate with cache = greedy without cache', async () => {
    const config = JSON.parse(readFileSync(path.join(benchDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const onnxPath = path.join(benchDir, 'onnx/model.onnx');
    const vocab = Number(config.vocab_size);
    const session = await ort.InferenceSession.create(onnxPath, { logSeverityLevel: 3 });
    const model = { sessions: { model: session }, config: { ...config } };
    const cal = tokens(4 * 64, vocab, 3);
    const report = await pruneModel(model, { method: 'structured', target: 'heads', score: 'flap', sparsity: 0.07, calibration: { ids: cal }, nsamples: 4, seqlen: 64, source: benchDir });
    expect(report.structured!.blocks.every((b) => b.kvHeadsAfter === 3 && b.headsAfter === 6)).toBe(true);
    const pm = await attachModel(model);
    const evalIds = tokens(2 * 40, vocab, 8);
    const pruned = await logitsOf(model.sessions.model, evalIds, 2, 40, pm.config);
    const ref = await ort.InferenceSession.create(zeroedReference(onnxPath, config, report, oCompensation(pm.proto, onnxPath, config)), { logSeverityLevel: 3 });
    expect(maxRel(pruned, await logitsOf(ref, evalIds, 2, 40, config))).toBeLessThan(1e-5);
    // KV cache: prefill then one step with the past, against the full forward's last position.
    const s = model.sessions.model;
    expect(s.inputNames.some((n) => n.startsWith('past_key_values.'))).toBe(true);
    const prompt = Int32Array.from([5, 77, 901, 13, 250, 3001]);
    const feeds = buildFeeds(s as never, prompt.subarray(0, 5), 1, 5, { config: pm.config });
    const first = await s.run(feeds);
    const past: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(first)) if (k.startsWith('present.')) past[k.replace('present.', 'past_key_values.')] = v;
    expect(past['past_key_values.0.key']!.dims).toEqual([1, 3, 5, 32]);
    const step = await s.run(buildFeeds(s as never, prompt.subarray(5), 1, 1, { config: pm.config, past: { length: 5, tensors: past } }), ['logits']);
    const full = await logitsOf(s, prompt, 1, 6, pm.config);
    expect(maxRel(step.logits!.data as Float32Array, full.subarray(5 * vocab))).toBeLessThan(1e-5);
  }, LONG);
});

describe.skipIf(!hasLayouts)('shape constants that cannot be classified (OPT fixture; skipped when ../shared is absent)', () => {
  it('a static head entry equal to neither head count is refused as unsupported; the real one is planned', () => {
    const dir = path.join(layoutsDir, 'opt');
    const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const proto = readModelFile(path.join(dir, 'onnx/model.onnx'));
    const found = discoverLinears(proto.graph, { config });
    const fake = { proto, config, linears: found.linears, layout: found.layout, source: { onnxPath: 'opt/onnx/model.onnx' }, blocks: 2 };
    const lay = attentionLayout(fake as never, 0);
    const plan = planHeadRewrites(fake as never, lay, 3);
    // q, k, v head reshapes [b, -1, 4, 16] → 3 each (OPT spells the head count as a constant).
    expect(plan.filter((r) => r.why === 'head reshape').map((r) => r.values.map(Number))).toEqual([[3], [3], [3]]);
    const c = proto.graph.node.find((n) => n.name === '/decoder/layers.0/self_attn/Constant_4')!;
    c.attribute.find((a) => a.name === 'value')!.t!.raw_data = new Uint8Array(BigInt64Array.from([5n]).buffer);
    expect(() => planHeadRewrites(fake as never, lay, 3)).toThrow(expect.objectContaining({ code: 'unsupported', message: expect.stringMatching(/static 5 in a head-shaped/) }));
  });
});

const layoutNames = hasLayouts ? readdirSync(layoutsDir).filter((d) => existsSync(path.join(layoutsDir, d, 'onnx/model.onnx'))) : [];
describe.skipIf(!hasLayouts)('every layout of ../shared/models/layouts (skipped when ../shared is absent)', () => {
  for (const name of layoutNames) {
    it(`${name}: heads removal (wanda-sp, flap; ffn,heads) = zeroed original graph, or refused with a reason`, async () => {
      const dir = path.join(work, `layout-${name}`);
      cpSync(path.join(layoutsDir, name), dir, { recursive: true });
      const onnxPath = path.join(dir, 'onnx/model.onnx');
      const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      const vocab = Number(config.vocab_size);
      const cal = tokens(4 * 16, vocab, 5);
      const evalIds = tokens(2 * 12, vocab, 6);
      const { G } = headsOf(config);
      for (const [target, score] of [['heads', 'wanda-sp'], ['heads', 'flap'], ['ffn,heads', 'flap']] as const) {
        const session = await ort.InferenceSession.create(onnxPath, { logSeverityLevel: 3 });
        const model = { sessions: { model: session }, config: { ...config } };
        const pm0 = await attachModel(model);
        const blocks = Math.max(...pm0.linears.map((l) => l.block)) + 1;
        const P = pm0.linears.filter((l) => l.block === 0).reduce((a, l) => a + l.dIn * l.dOut, 0);
        const perGroup = attentionLayout(pm0, 0).paramsPerGroup;
        // heads alone: exactly one group per block; ffn,heads: S with round(S·G) = 1 and room for FFN channels.
        const sparsity = target === 'heads' ? perGroup / P : Math.max(1 / G, perGroup / P + 0.05);
        const run = pruneModel(model, { method: 'structured', target, score, sparsity, calibration: { ids: cal }, nsamples: 4, seqlen: 16 });
        if (G === 1) {
          // Gemma's tiny fixture has one KV head: removing a group would empty the attention.
          await expect(run).rejects.toThrow(expect.objectContaining({ code: 'invalid-input', message: expect.stringMatching(/would remove 1 of the 1 KV groups/) }));
          break;
        }
        const report = await run;
        const st = report.structured!;
        expect(st.blocks.length).toBe(blocks);
        expect(st.blocks.every((b) => b.kvHeadsAfter === G - 1)).toBe(true);
        const pm = await attachModel(model);
        const pruned = await logitsOf(model.sessions.model, evalIds, 2, 12, pm.config);
        const flap = score === 'flap';
        const refBytes = zeroedReference(onnxPath, config, report, flap ? oCompensation(pm.proto, onnxPath, config) : undefined, flap && target !== 'heads' ? oCompensation(pm.proto, onnxPath, config, 'down') : undefined);
        const ref = await ort.InferenceSession.create(refBytes, { logSeverityLevel: 3 });
        expect([target, score, maxRel(pruned, await logitsOf(ref, evalIds, 2, 12, config)) < 1e-5]).toEqual([target, score, true]);
      }
    }, LONG);
  }
});
