/**
 * Structured FFN pruning end to end. The reference for a pruned graph is independent of the surgery: the ORIGINAL
 * ONNX graph with the removed channels zeroed (their gate/up rows and biases AND their down columns — an exact
 * equivalent of removing them), run by onnxruntime; FLAP's bias compensation is checked against a float64
 * computation from the dense model's down-projection inputs, captured as extra graph outputs.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { AutoModelForCausalLM, env } from '@huggingface/transformers';
import '../../src/index.js';
import { pruneModel, savePruned, explicit, owl, DsaPruneError } from '../../src/index.js';
import { attachModel, discoverLinears, inspectModel, installLoadingHook } from '../../src/model/index.js';
import { buildFeeds } from '../../src/eval/forward.js';
import { DataType, createNode, createTensor, encodeModel, readModelFile, setTensorFloat32, tensorDims, tensorToFloat32, type ModelProto } from '../../src/model/onnx.js';
import { channelCounts, selectChannels } from '../../src/methods/structured/index.js';
import type { PruneReport } from '../../src/prune.js';
import { tokens, logitsOf, maxRel } from './helpers.js';

env.allowRemoteModels = false;
installLoadingHook();
const LONG = 600_000;
const repo = path.resolve(import.meta.dirname, '../..');
const storiesDir = path.join(repo, 'models/stories260k');
const layoutsDir = path.resolve(repo, '../shared/models/layouts');
const hasLayouts = existsSync(layoutsDir);
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-structured-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * The original graph with the channels NOT in `kept` zeroed in gate/up rows (+ biases) and down columns, and
 * `bias[b]` (when given) added after down's output through a new Add node: what removal must compute.
 */
function zeroedReference(onnxPath: string, config: Record<string, unknown>, report: PruneReport, bias?: (Float32Array | undefined)[]): Uint8Array {
  const m = readModelFile(onnxPath);
  const g = m.graph;
  const { linears, layout } = discoverLinears(g, { config });
  const init = (name: string) => g.initializer.find((t) => t.name === name)!;
  for (const blk of report.structured!.blocks) {
    const F = blk.ffnBefore;
    const gone = new Uint8Array(F).fill(1);
    for (const j of blk.kept) gone[j] = 0;
    for (const l of linears.filter((x) => x.block === blk.block)) {
      if (!['gate', 'up', 'gate_up', 'down'].includes(l.role)) continue;
      const t = init(l.weight);
      const w = tensorToFloat32(t);
      const [r0, c0] = tensorDims(t); // stored [r0 × c0]
      // Channel index along the stored axis: out_in stores [dOut, dIn]; in_out stores [dIn, dOut].
      const isDown = l.role === 'down';
      const channelAxisIsRow = (layout.get(l.name) === 'out_in') !== isDown;
      for (let r = 0; r < r0!; r++) {
        for (let c = 0; c < c0!; c++) {
          const ch = (channelAxisIsRow ? r : c) % F;
          if (gone[ch]) w[r * c0! + c] = 0;
        }
      }
      setTensorFloat32(t, w);
      if (!isDown) {
        const node = g.node.find((n) => n.name === l.node)!;
        const biasName = node.op_type === 'Gemm' ? node.input[2] : g.node.find((n) => n.op_type === 'Add' && n.input.includes(node.output[0]!))?.input.find((i) => i !== node.output[0]);
        const bt = biasName ? g.initializer.find((t) => t.name === biasName) : undefined;
        if (bt && tensorDims(bt).reduce((a, b) => a * b, 1) === l.dOut) {
          const b = tensorToFloat32(bt);
          for (let i = 0; i < b.length; i++) if (gone[i % F]) b[i] = 0;
          setTensorFloat32(bt, b);
        }
      }
    }
    const extra = bias?.[blk.block];
    if (extra) {
      const down = linears.find((x) => x.block === blk.block && x.role === 'down')!;
      const node = g.node.find((n) => n.name === down.node)!;
      const out = node.output[0]!;
      node.output[0] = `${out}_ref`;
      const bt = createTensor({ name: `ref_bias_${blk.block}`, dims: [extra.length], data_type: DataType.FLOAT });
      setTensorFloat32(bt, extra);
      g.initializer.push(bt);
      g.node.splice(g.node.indexOf(node) + 1, 0, createNode({ op_type: 'Add', name: `ref_add_${blk.block}`, input: [`${out}_ref`, bt.name!], output: [out] }));
    }
  }
  g.value_info = [];
  return encodeModel(m);
}

/** Values of a float initializer behind a tensor name (through Identity aliases), or undefined. */
function valuesOf(proto: ModelProto, name: string): Float32Array | undefined {
  for (let k = 0; k < 8; k++) {
    const t = proto.graph.initializer.find((x) => x.name === name);
    if (t) return tensorToFloat32(t);
    const p = proto.graph.node.find((n) => n.output.includes(name));
    if (!p || p.op_type !== 'Identity') return undefined;
    name = p.input[0]!;
  }
  return undefined;
}

/** The output bias of a down projection node: Gemm's C, or the one Add consuming its output (zeros when none). */
function downBias(proto: ModelProto, nodeName: string, dOut: number): Float32Array {
  const g = proto.graph;
  const node = g.node.find((n) => n.name === nodeName)!;
  if (node.op_type === 'Gemm' && node.input[2]) return valuesOf(proto, node.input[2]) ?? new Float32Array(dOut);
  const adds = g.node.filter((n) => n.input.includes(node.output[0]!));
  if (adds.length === 1 && adds[0]!.op_type === 'Add') {
    const v = valuesOf(proto, adds[0]!.input.find((x) => x !== node.output[0])!);
    if (v && v.length === dOut) return v;
  }
  return new Float32Array(dOut);
}

/** FLAP compensation per block as the pruned graph holds it: its down bias minus the original one. */
function compensationOf(pruned: ModelProto, originalPath: string, config: Record<string, unknown>): Float32Array[] {
  const orig = readModelFile(originalPath);
  const ls = discoverLinears(orig.graph, { config }).linears.filter((l) => l.role === 'down');
  return ls.map((l) => {
    const a = downBias(pruned, l.node, l.dOut);
    const b = downBias(orig, l.node, l.dOut);
    return a.map((x, o) => x - b[o]!);
  });
}

describe('channel counts (exact to one channel) and selection', () => {
  it('total removed = round(S·ΣP / c), each block within one channel of its share', () => {
    const blocks = Array.from({ length: 5 }, (_, i) => ({ index: i, params: 45312, width: 172, paramsPerChannel: 192 }));
    const shares = [0.1, 0.2, 0.3, 0.25, 0.4];
    const S = shares.reduce((a, b) => a + b, 0) / 5;
    const c = channelCounts(blocks, shares, S);
    expect(c.reduce((a, b) => a + b, 0)).toBe(Math.round((S * 5 * 45312) / 192));
    c.forEach((x, i) => expect(Math.abs(x - (shares[i]! * 45312) / 192)).toBeLessThan(1));
  });
  it('refuses a share that would empty a block', () => {
    const blocks = [{ index: 0, params: 45312, width: 172, paramsPerChannel: 192 }, { index: 1, params: 45312, width: 172, paramsPerChannel: 192 }];
    expect(() => channelCounts(blocks, [0.1, 0.75], 0.425)).toThrow(/block 1's share 75.00% would remove 177 of its 172 FFN channels/);
  });
  it('selects the lowest scores, ties by index', () => {
    const { keep, removed } = selectChannels(Float64Array.from([3, 1, 2, 1, 5]), 2);
    expect(Array.from(removed)).toEqual([1, 3]);
    expect(Array.from(keep)).toEqual([0, 2, 4]);
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

  for (const score of ['wanda-sp', 'flap', 'magnitude'] as const) {
    it(`${score}, sequential, OWL shares: pruned logits = zeroed dense graph (fp32), exact parameter count`, async () => {
      const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
      const report = await pruneModel(model, {
        method: 'structured', target: ['ffn'], score, sparsity: 0.25, allocator: owl({ M: 5, lambda: 0.08 }),
        calibration: { ids: calIds }, nsamples, seqlen,
      });
      const st = report.structured!;
      // Exact budget: total channels removed = round(0.25 · ΣP / 192).
      const P = 5 * 45312;
      expect(st.blocks.reduce((a, b) => a + b.ffnBefore - b.ffnAfter, 0)).toBe(Math.round((0.25 * P) / 192));
      expect(new Set(st.blocks.map((b) => b.ffnAfter)).size).toBeGreaterThan(1); // OWL: per-block widths differ
      const pm = await attachModel(model);
      const pruned = await logitsOf(model.sessions.model, evalIds, 2, 48, config);
      const refBytes = zeroedReference(onnxPath, config, report, score === 'flap' ? compensationOf(pm.proto, onnxPath, config) : undefined);
      const ref = await ort.InferenceSession.create(refBytes, { logSeverityLevel: 3 });
      expect(maxRel(pruned, await logitsOf(ref, evalIds, 2, 48, config))).toBeLessThan(1e-5);
      // The graph is really smaller.
      const downs = pm.linears.filter((l) => l.role === 'down');
      expect(downs.map((l) => l.dIn)).toEqual(st.blocks.map((b) => b.ffnAfter));
      const biases = score === 'flap' ? st.blocks.filter((b) => b.ffnAfter < b.ffnBefore).length * 64 : 0; // FLAP's new down biases
      expect(st.params.before - st.params.after).toBe(Math.round((0.25 * P) / 192) * 192 - biases);
    }, LONG);
  }

  it('flap one-shot: bias compensation = float64 Σ_removed mean(h_j)·W_down[:, j] from the dense model', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const report = await pruneModel(model, { method: 'structured', target: 'ffn', score: 'flap', sparsity: 0.2, mode: 'oneshot', calibration: { ids: calIds }, nsamples, seqlen });
    const pm = await attachModel(model);
    const got = compensationOf(pm.proto, onnxPath, config);
    // Dense model with every down projection's input as an extra output.
    const m = readModelFile(onnxPath);
    const { linears, layout } = discoverLinears(m.graph, { config });
    const downs = linears.filter((l) => l.role === 'down');
    const hNames = downs.map((l) => m.graph.node.find((n) => n.name === l.node)!.input[0]!);
    for (const h of hNames) m.graph.output.push({ name: h });
    const s = await ort.InferenceSession.create(encodeModel(m), { logSeverityLevel: 3 });
    const out = await s.run(buildFeeds(s as never, calIds, nsamples, seqlen, { config }), hNames);
    for (const [b, l] of downs.entries()) {
      const h = out[hNames[b]!]!.data as Float32Array;
      const F = l.dIn;
      const N = h.length / F;
      const mean = new Float64Array(F);
      for (let t = 0; t < N; t++) for (let j = 0; j < F; j++) mean[j] += h[t * F + j]!;
      for (let j = 0; j < F; j++) mean[j] /= N;
      const kept = new Set(report.structured!.blocks[b]!.kept);
      const W = tensorToFloat32(m.graph.initializer.find((t) => t.name === l.weight)!); // [F, dOut] (MatMul B)
      expect(layout.get(l.name)).toBe('in_out');
      const expected = new Float64Array(l.dOut);
      for (let j = 0; j < F; j++) if (!kept.has(j)) for (let o = 0; o < l.dOut; o++) expected[o] += mean[j]! * W[j * l.dOut + o]!;
      const g = got[b]!;
      let d = 0;
      let mx = 0;
      for (let o = 0; o < l.dOut; o++) {
        d = Math.max(d, Math.abs(g[o]! - expected[o]!));
        mx = Math.max(mx, Math.abs(expected[o]!));
      }
      expect(mx).toBeGreaterThan(0);
      expect(d / mx).toBeLessThan(1e-4);
    }
  }, LONG);

  it('generate with the KV cache = greedy steps without cache; save + reload without the plugin gives the same tokens', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    await pruneModel(model, { method: 'structured', target: ['ffn'], score: 'flap', sparsity: 0.3, calibration: { ids: calIds }, nsamples, seqlen });
    const prompt = [1, 101, 207, 263, 431];
    const input_ids = new (await import('@huggingface/transformers')).Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
    const attention_mask = new (await import('@huggingface/transformers')).Tensor('int64', BigInt64Array.from(prompt.map(() => 1n)), [1, prompt.length]);
    const gen = (await model.generate({ input_ids, attention_mask, max_new_tokens: 16, do_sample: false } as never)) as { tolist(): bigint[][] };
    const cached = gen.tolist()[0]!.map(Number);
    // Without cache: full forward each step, argmax of the last position (plain onnxruntime on the swapped session).
    const seq = [...prompt];
    for (let k = 0; k < 16; k++) {
      const lg = await logitsOf(model.sessions.model, Int32Array.from(seq), 1, seq.length, config);
      const last = lg.subarray((seq.length - 1) * vocab, seq.length * vocab);
      let best = 0;
      for (let i = 1; i < vocab; i++) if (last[i]! > last[best]!) best = i;
      seq.push(best);
    }
    expect(cached).toEqual(seq);

    const out = path.join(work, 'stories-flap30');
    await savePruned(model, out);
    const manifest = JSON.parse(readFileSync(path.join(out, 'pruning.json'), 'utf8'));
    expect(manifest.method).toBe('structured');
    expect(manifest.structured.blocks.map((b: { ffnAfter: number }) => b.ffnAfter)).toEqual((await inspectModel(out)).linears.filter((l) => l.role === 'down').map((l) => l.dIn));
    expect(readFileSync(path.join(out, 'config.json'), 'utf8')).toBe(readFileSync(path.join(storiesDir, 'config.json'), 'utf8'));
    // A plain Node process with transformers.js only (no dsa-prune import).
    const script = `import { AutoModelForCausalLM, Tensor, env } from '@huggingface/transformers';
env.allowRemoteModels = false;
const m = await AutoModelForCausalLM.from_pretrained(${JSON.stringify(out)}, { dtype: 'fp32' });
const p = ${JSON.stringify(prompt)};
const ids = new Tensor('int64', BigInt64Array.from(p.map(BigInt)), [1, p.length]);
const mask = new Tensor('int64', BigInt64Array.from(p.map(() => 1n)), [1, p.length]);
const g = await m.generate({ input_ids: ids, attention_mask: mask, max_new_tokens: 16, do_sample: false });
console.log(JSON.stringify(g.tolist()[0].map(Number)));`;
    const file = path.join(repo, `.structured-plain-${process.pid}.mjs`); // inside the repo so node_modules resolves
    writeFileSync(file, script);
    try {
      const stdout = execFileSync(process.execPath, [file], { encoding: 'utf8' });
      expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual(cached);
    } finally {
      rmSync(file, { force: true });
    }
    const bytes = (d: string) => readdirSync(path.join(d, 'onnx')).reduce((a, f) => a + readFileSync(path.join(d, 'onnx', f)).length, 0);
    expect(bytes(out)).toBeLessThan(bytes(storiesDir));
  }, LONG);

  it('refuses bad requests before any work', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const base = { method: 'structured', calibration: { ids: calIds }, nsamples, seqlen } as const;
    await expect(pruneModel(model, { ...base, target: 'depth', score: 'flap', sparsity: 0.2 })).rejects.toThrow(/--score flap.*--target depth/);
    await expect(pruneModel(model, { ...base, target: 'ffn', score: 'nope', sparsity: 0.2 })).rejects.toThrow(DsaPruneError);
    await expect(pruneModel(model, { ...base, target: 'ffn', score: 'magnitude', sparsity: 0.75 })).rejects.toThrow(/would remove 177 of its 172 FFN channels/);
    await expect(pruneModel(model, { ...base, target: 'ffn', score: 'magnitude', sparsity: 0.26, allocator: explicit([0.1, 0.1, 0.1, 0.1, 0.9]) })).rejects.toThrow(/block 4's share/);
    // Nothing changed.
    const pm = await attachModel(model);
    expect(pm.linears.filter((l) => l.role === 'down').map((l) => l.dIn)).toEqual([172, 172, 172, 172, 172]);
  }, LONG);
});

const layoutNames = hasLayouts ? readdirSync(layoutsDir).filter((d) => existsSync(path.join(layoutsDir, d, 'onnx/model.onnx'))) : [];
describe.skipIf(!hasLayouts)('every layout of ../shared/models/layouts (skipped when ../shared is absent)', () => {
  for (const name of layoutNames) {
    it(`${name}: ffn removal (wanda-sp and flap) = zeroed dense graph`, async () => {
      const dir = path.join(work, `layout-${name}`);
      cpSync(path.join(layoutsDir, name), dir, { recursive: true });
      const onnxPath = path.join(dir, 'onnx/model.onnx');
      const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      const vocab = Number(config.vocab_size);
      const cal = tokens(4 * 16, vocab, 5);
      const evalIds = tokens(2 * 12, vocab, 6);
      for (const score of ['wanda-sp', 'flap'] as const) {
        const session = await ort.InferenceSession.create(onnxPath, { logSeverityLevel: 3 });
        const model = { sessions: { model: session }, config };
        const blocks = readModelFile(onnxPath).graph.node.some((n) => /(layers|h)\.2\//.test(n.name ?? '')) ? 3 : 2;
        // Different shares per block: every block gets its own width (and shared biases must not be sliced twice).
        const allocator = explicit(Array.from({ length: blocks }, (_, b) => 0.1 + 0.2 * b / Math.max(1, blocks - 1)));
        const report = await pruneModel(model, { method: 'structured', target: ['ffn'], score, sparsity: 0.2, allocator, calibration: { ids: cal }, nsamples: 4, seqlen: 16 });
        const st = report.structured!;
        expect(st.blocks.every((b) => b.ffnAfter < b.ffnBefore)).toBe(true);
        expect(new Set(st.blocks.map((b) => b.ffnAfter)).size).toBe(st.blocks.length);
        const pm = await attachModel(model);
        const pruned = await logitsOf(model.sessions.model, evalIds, 2, 12, config);
        const ref = await ort.InferenceSession.create(zeroedReference(onnxPath, config, report, score === 'flap' ? compensationOf(pm.proto, onnxPath, config) : undefined), { logSeverityLevel: 3 });
        expect(maxRel(pruned, await logitsOf(ref, evalIds, 2, 12, config))).toBeLessThan(1e-5);
      }
    }, LONG);
  }
});

