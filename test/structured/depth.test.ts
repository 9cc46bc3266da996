/**
 * Structured depth pruning (`--target depth`) end to end. References independent of the surgery:
 * - logits: the ORIGINAL graph with each removed sub-layer's output projection zeroed (o_proj / down_proj weights and
 *   their biases: the branch adds exactly 0 to the residual), run by onnxruntime;
 * - block influence: float64 1 − mean cos(x_in, x_out) from the residual Add's inputs/outputs of the original graph,
 *   captured as extra outputs (the Llama export names them /model/layers.N/Add and Add_1);
 * - loss increase: float64 cross-entropy from the logits of the zeroed reference;
 * - generate with the KV cache = greedy steps without cache; the saved folder generates the same tokens in a separate
 *   Node process importing transformers.js only.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { AutoModelForCausalLM, Tensor, env } from '@huggingface/transformers';
import '../../src/index.js';
import { pruneModel, savePruned, owl, DsaPruneError } from '../../src/index.js';
import { attachModel, discoverLinears, inspectModel, installLoadingHook } from '../../src/model/index.js';
import { buildFeeds } from '../../src/eval/forward.js';
import { encodeModel, readModelFile, setTensorFloat32, tensorDims, tensorToFloat32, type ModelProto } from '../../src/model/onnx.js';
import { selectDepthUnits } from '../../src/methods/structured/index.js';
import { main } from '../../src/cli/main.js';
import { memoryIo } from '../../src/cli/io.js';
import { tokens, logitsOf, maxRel } from './helpers.js';

env.allowRemoteModels = false;
installLoadingHook();
const LONG = 600_000;
const repo = path.resolve(import.meta.dirname, '../..');
const storiesDir = path.join(repo, 'models/stories260k');
const calibFile = path.join(repo, 'data/tinystories/tinystories_calibration.txt');
const layoutsDir = path.resolve(repo, '../shared/models/layouts');
const hasLayouts = existsSync(layoutsDir);
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-depth-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The original graph with the output projection (weights + bias) of every removed sub-layer zeroed. */
function zeroedReference(onnxPath: string, config: Record<string, unknown>, removed: string[]): ModelProto {
  const m = readModelFile(onnxPath);
  const g = m.graph;
  const { linears } = discoverLinears(g, { config });
  for (const r of removed) {
    const [b, kind] = r.split('.');
    const l = linears.find((x) => x.block === Number(b) && x.role === (kind === 'attention' ? 'o' : 'down'))!;
    expect(l, r).toBeDefined();
    const t = g.initializer.find((x) => x.name === l.weight)!;
    setTensorFloat32(t, new Float32Array(tensorToFloat32(t).length));
    const node = g.node.find((n) => n.name === l.node)!;
    const biasName = node.op_type === 'Gemm' ? node.input[2] : g.node.find((n) => n.op_type === 'Add' && n.input.includes(node.output[0]!))?.input.find((i) => i !== node.output[0]);
    const bt = biasName ? g.initializer.find((x) => x.name === biasName) : undefined;
    if (bt && tensorDims(bt).reduce((a, c) => a * c, 1) === l.dOut) setTensorFloat32(bt, new Float32Array(l.dOut));
  }
  g.value_info = [];
  return m;
}

/** Float64 mean next-token cross-entropy from logits [batch × seqlen × vocab]. */
function meanCE(logits: Float32Array, ids: Int32Array, batch: number, seqlen: number, vocab: number): number {
  let s = 0;
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < seqlen - 1; t++) {
      const row = logits.subarray((b * seqlen + t) * vocab, (b * seqlen + t + 1) * vocab);
      let mx = -Infinity;
      for (let v = 0; v < vocab; v++) mx = Math.max(mx, row[v]!);
      let z = 0;
      for (let v = 0; v < vocab; v++) z += Math.exp(row[v]! - mx);
      s += Math.log(z) + mx - row[ids[b * seqlen + t + 1]!]!;
    }
  }
  return s / (batch * (seqlen - 1));
}

describe('selectDepthUnits: the ranking prefix nearest the budget', () => {
  it('equals a brute force over every prefix (ties: the smaller), and refuses removing everything', () => {
    let seed = 3;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let trial = 0; trial < 200; trial++) {
      const n = 2 + Math.floor(rnd() * 10);
      const params = Array.from({ length: n }, () => (rnd() < 0.5 ? 4096 : 6144));
      const scores = Array.from({ length: n }, () => rnd());
      const S = rnd() * 0.8;
      const P = params.reduce((a, b) => a + b, 0);
      const order = scores.map((_, i) => i).sort((a, b) => scores[a]! - scores[b]! || a - b);
      let best = 0;
      let bestErr = Math.abs(S * P);
      let sum = 0;
      for (let k = 1; k <= n; k++) {
        sum += params[order[k - 1]!]!;
        if (Math.abs(sum - S * P) < bestErr) {
          best = k;
          bestErr = Math.abs(sum - S * P);
        }
      }
      if (best === n) {
        expect(() => selectDepthUnits(scores, params, S)).toThrow(/remove every/);
        continue;
      }
      const got = selectDepthUnits(scores, params, S);
      expect(got).toEqual(order.slice(0, best).sort((a, b) => a - b));
    }
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
  // Block linear parameters: attention 4 × 64 × 64 (q 64, k/v 32 outputs: 64·64 + 2·64·32 + 64·64 = 12288), MLP 3 × 64 × 172.
  const attn = 64 * 64 + 2 * 64 * 32 + 64 * 64;
  const mlp = 3 * 64 * 172;

  it('bi: scores = float64 1 − mean cos of the residual Adds; pruned logits = zeroed dense graph; budget nearest prefix', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const report = await pruneModel(model, { method: 'structured', target: ['depth'], depthScore: 'bi', sparsity: 0.3, calibration: { ids: calIds }, nsamples, seqlen });
    const d = report.structured!.depth!;
    expect(d.units).toHaveLength(10);
    expect(d.units.map((u) => u.params)).toEqual(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? attn : mlp)));
    // Independent BI: capture r and r + f(x) of every residual Add of the original graph.
    const m = readModelFile(onnxPath);
    const pairs: [string, string][] = [];
    for (let b = 0; b < 5; b++) {
      for (const name of [`/model/layers.${b}/Add`, `/model/layers.${b}/Add_1`]) {
        const n = m.graph.node.find((x) => x.name === name)!;
        const branch = n.input.find((i) => /o_proj|down_proj/.test(i))!;
        pairs.push([n.input.find((i) => i !== branch)!, n.output[0]!]);
      }
    }
    const names = [...new Set(pairs.flat())];
    for (const t of names) m.graph.output.push({ name: t });
    const s = await ort.InferenceSession.create(encodeModel(m), { logSeverityLevel: 3 });
    const out = await s.run(buildFeeds(s as never, calIds, nsamples, seqlen, { config }), names);
    pairs.forEach(([a, b], k) => {
      const x = out[a]!.data as Float32Array;
      const y = out[b]!.data as Float32Array;
      const D = 64;
      let c = 0;
      const T = x.length / D;
      for (let t = 0; t < T; t++) {
        let xy = 0;
        let xx = 0;
        let yy = 0;
        for (let j = 0; j < D; j++) {
          xy += x[t * D + j]! * y[t * D + j]!;
          xx += x[t * D + j]! ** 2;
          yy += y[t * D + j]! ** 2;
        }
        c += xy / Math.sqrt(xx * yy);
      }
      expect(T).toBe(nsamples * seqlen);
      expect(Math.abs(d.units[k]!.score - (1 - c / T))).toBeLessThan(1e-5);
    });
    // Budget: the prefix of the ascending ranking nearest 0.3 · ΣP.
    const P = 5 * (attn + mlp);
    expect(d.targetParams).toBeCloseTo(0.3 * P, 6);
    const order = d.units.map((_, i) => i).sort((a, b) => d.units[a]!.score - d.units[b]!.score || a - b);
    const removedIdx = d.units.map((u, i) => (u.removed ? i : -1)).filter((i) => i >= 0);
    expect(new Set(order.slice(0, removedIdx.length))).toEqual(new Set(removedIdx));
    const err = Math.abs(d.removedParams - 0.3 * P);
    const prefix = (k: number) => order.slice(0, k).reduce((a, i) => a + d.units[i]!.params, 0);
    expect(err).toBeLessThanOrEqual(Math.abs(prefix(removedIdx.length + 1) - 0.3 * P));
    expect(err).toBeLessThanOrEqual(Math.abs(prefix(removedIdx.length - 1) - 0.3 * P));
    expect(report.realizedSparsity).toBeCloseTo(d.removedParams / P, 12);
    // Logits of the pruned graph = original graph with the removed branches zeroed.
    const pruned = await logitsOf(model.sessions.model, evalIds, 2, 48, config);
    const ref = await ort.InferenceSession.create(encodeModel(zeroedReference(onnxPath, config, d.removed)), { logSeverityLevel: 3 });
    expect(maxRel(pruned, await logitsOf(ref, evalIds, 2, 48, config))).toBeLessThan(1e-5);
    // The graph really lost those linears' parameters, and the linears are gone.
    // (each removed sub-layer also drops its RMSNorm weight, 64 values)
    expect(report.structured!.params.before - report.structured!.params.after).toBe(d.removedParams + 64 * d.removed.length);
    const pm = await attachModel(model);
    expect(pm.linears.filter((l) => l.block >= 0).reduce((a, l) => a + l.dIn * l.dOut, 0)).toBe(P - d.removedParams);
    expect((await inspectModel(model)).removedSubLayers).toEqual(d.removed);
    // An attention removed while its block's MLP stays: generate with the KV cache = greedy without cache.
    expect(d.removed.some((r) => r.endsWith('.attention') && !d.removed.includes(r.replace('attention', 'mlp')))).toBe(true);
    const prompt = [1, 55, 300, 12];
    const input_ids = new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
    const attention_mask = new Tensor('int64', BigInt64Array.from(prompt.map(() => 1n)), [1, prompt.length]);
    const gen = (await model.generate({ input_ids, attention_mask, max_new_tokens: 12, do_sample: false } as never)) as { tolist(): bigint[][] };
    const seq = [...prompt];
    for (let k = 0; k < 12; k++) {
      const lg = await logitsOf(model.sessions.model, Int32Array.from(seq), 1, seq.length, config);
      const last = lg.subarray((seq.length - 1) * vocab, seq.length * vocab);
      let best = 0;
      for (let i = 1; i < vocab; i++) if (last[i]! > last[best]!) best = i;
      seq.push(best);
    }
    expect(gen.tolist()[0]!.map(Number)).toEqual(seq);
  }, LONG);

  it('loss: scores = float64 cross-entropy increase of each sub-layer removed alone (zeroed reference)', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const report = await pruneModel(model, { method: 'structured', target: 'depth', depthScore: 'loss', sparsity: 0.2, calibration: { ids: calIds }, nsamples, seqlen });
    const d = report.structured!.depth!;
    const dense = await ort.InferenceSession.create(onnxPath, { logSeverityLevel: 3 });
    const base = meanCE(await logitsOf(dense, calIds, nsamples, seqlen, config), calIds, nsamples, seqlen, vocab);
    expect(Math.abs(d.denseLoss! - base)).toBeLessThan(1e-4);
    for (const k of [0, 3, 8]) {
      const u = d.units[k]!;
      const ref = await ort.InferenceSession.create(encodeModel(zeroedReference(onnxPath, config, [`${u.block}.${u.kind}`])), { logSeverityLevel: 3 });
      const ce = meanCE(await logitsOf(ref, calIds, nsamples, seqlen, config), calIds, nsamples, seqlen, vocab);
      expect(Math.abs(u.score - (ce - base))).toBeLessThan(2e-4);
    }
    const pruned = await logitsOf(model.sessions.model, evalIds, 2, 48, config);
    const ref = await ort.InferenceSession.create(encodeModel(zeroedReference(onnxPath, config, d.removed)), { logSeverityLevel: 3 });
    expect(maxRel(pruned, await logitsOf(ref, evalIds, 2, 48, config))).toBeLessThan(1e-5);
  }, LONG);

  it('whole blocks: generate with the KV cache = greedy without cache; saved folder generates the same in a plain process', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const report = await pruneModel(model, { method: 'structured', target: ['depth'], depthUnit: 'block', sparsity: 0.2, calibration: { ids: calIds }, nsamples, seqlen });
    const d = report.structured!.depth!;
    expect(d.units.filter((u) => u.removed)).toHaveLength(1); // 0.2 × 5 blocks = one block
    expect(d.removed.some((r) => r.endsWith('.attention'))).toBe(true);
    const prompt = [1, 101, 207, 263, 431];
    const input_ids = new Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, prompt.length]);
    const attention_mask = new Tensor('int64', BigInt64Array.from(prompt.map(() => 1n)), [1, prompt.length]);
    const gen = (await model.generate({ input_ids, attention_mask, max_new_tokens: 16, do_sample: false } as never)) as { tolist(): bigint[][] };
    const cached = gen.tolist()[0]!.map(Number);
    const seq = [...prompt];
    for (let k = 0; k < 16; k++) {
      const lg = await logitsOf(model.sessions.model, Int32Array.from(seq), 1, seq.length, config);
      const last = lg.subarray((seq.length - 1) * vocab, seq.length * vocab);
      let best = 0;
      for (let i = 1; i < vocab; i++) if (last[i]! > last[best]!) best = i;
      seq.push(best);
    }
    expect(cached).toEqual(seq);
    // The KV-cache I/O is unchanged: same input and output names, present = past ++ zeros for the removed attention.
    const dense = await ort.InferenceSession.create(onnxPath, { logSeverityLevel: 3 });
    expect(model.sessions.model.inputNames).toEqual(dense.inputNames);
    expect(model.sessions.model.outputNames).toEqual(dense.outputNames);
    const removedBlock = d.units.find((u) => u.removed)!.block;
    const o = await model.sessions.model.run(buildFeeds(model.sessions.model, Int32Array.from(prompt), 1, prompt.length, { config }));
    const pk = o[`present.${removedBlock}.key`]!;
    expect(pk.dims).toEqual([1, 4, prompt.length, 8]);
    expect(Array.from(pk.data as Float32Array).every((x) => x === 0)).toBe(true);

    const out = path.join(work, 'stories-block20');
    await savePruned(model, out);
    const manifest = JSON.parse(readFileSync(path.join(out, 'pruning.json'), 'utf8'));
    expect(manifest.structured.depth.removed).toEqual(d.removed);
    expect((await inspectModel(out)).removedSubLayers).toEqual(d.removed);
    expect(readFileSync(path.join(out, 'config.json'), 'utf8')).toBe(readFileSync(path.join(storiesDir, 'config.json'), 'utf8'));
    const script = `import { AutoModelForCausalLM, Tensor, env } from '@huggingface/transformers';
env.allowRemoteModels = false;
const m = await AutoModelForCausalLM.from_pretrained(${JSON.stringify(out)}, { dtype: 'fp32' });
const p = ${JSON.stringify(prompt)};
const ids = new Tensor('int64', BigInt64Array.from(p.map(BigInt)), [1, p.length]);
const mask = new Tensor('int64', BigInt64Array.from(p.map(() => 1n)), [1, p.length]);
const g = await m.generate({ input_ids: ids, attention_mask: mask, max_new_tokens: 16, do_sample: false });
console.log(JSON.stringify(g.tolist()[0].map(Number)));`;
    const file = path.join(repo, `.depth-plain-${process.pid}.mjs`);
    writeFileSync(file, script);
    try {
      const stdout = execFileSync(process.execPath, [file], { encoding: 'utf8' });
      expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual(cached);
    } finally {
      rmSync(file, { force: true });
    }
    const bytes = (dir: string) => readdirSync(path.join(dir, 'onnx')).reduce((a, f) => a + statSync(path.join(dir, 'onnx', f)).size, 0);
    expect(bytes(out)).toBeLessThan(bytes(storiesDir));
  }, LONG);

  it('refuses bad requests before any work', async () => {
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const base = { method: 'structured', calibration: { ids: calIds }, nsamples, seqlen } as const;
    await expect(pruneModel(model, { ...base, target: 'depth', score: 'flap', sparsity: 0.2 })).rejects.toThrow(/--score flap.*--target depth/);
    await expect(pruneModel(model, { ...base, target: 'depth', score: 'wanda-sp', sparsity: 0.2 })).rejects.toThrow(/scores channels/);
    await expect(pruneModel(model, { ...base, target: ['ffn', 'depth'], sparsity: 0.2 })).rejects.toThrow(/cannot be combined with ffn/);
    await expect(pruneModel(model, { ...base, target: 'depth', sparsity: 0.99 })).rejects.toThrow(/would remove every sub-layer/);
    await expect(pruneModel(model, { ...base, target: 'depth', depthUnit: 'block', sparsity: 0.95 })).rejects.toThrow(/would remove every block/);
    await expect(pruneModel(model, { ...base, target: 'depth', sparsity: 0.2, allocator: owl() })).rejects.toThrow(/does not apply to --target depth/);
    await expect(pruneModel(model, { ...base, target: 'depth', depthScore: 'nope', sparsity: 0.2 })).rejects.toThrow(DsaPruneError);
    await expect(pruneModel(model, { method: 'structured', target: 'depth', sparsity: 0.2 })).rejects.toThrow(/needs calibration data/);
    await expect(pruneModel(model, { ...base, target: 'ffn', depthScore: 'bi', sparsity: 0.2 })).rejects.toThrow(/apply to --target depth only/);
    const pm = await attachModel(model);
    expect(pm.linears).toHaveLength(35);
  }, LONG);

  it('refuses a KV-cache layout it cannot keep consistent (present not Concat(past, new)), before any work', async () => {
    const m = readModelFile(onnxPath);
    const cat = m.graph.node.find((n) => n.output[0] === 'present.2.key')!;
    cat.output[0] = 'present.2.key_inner';
    m.graph.node.splice(m.graph.node.indexOf(cat) + 1, 0, { op_type: 'Identity', name: '/model/layers.2/self_attn/IdentityPresent', input: ['present.2.key_inner'], output: ['present.2.key'], attribute: [] });
    for (const n of m.graph.node) if (n !== cat && n.op_type !== 'Identity') n.input = n.input.map((i) => (i === 'present.2.key' ? 'present.2.key_inner' : i));
    const bytes = encodeModel(m);
    const session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
    const model = { sessions: { model: session }, config };
    const before = await logitsOf(session, evalIds, 2, 48, config);
    await expect(pruneModel(model, { method: 'structured', target: 'depth', sparsity: 0.2, calibration: { ids: calIds }, nsamples, seqlen }))
      .rejects.toThrow(/attention of block 2 .*KV-cache output present\.2\.key is not Concat\(past, new\)/);
    expect(model.sessions.model).toBe(session);
    expect(maxRel(await logitsOf(model.sessions.model, evalIds, 2, 48, config), before)).toBe(0);
  }, LONG);

  it('CLI --json: params and bytes before/after measured from the files; inspect lists the removed sub-layers', async () => {
    const out = path.join(work, 'cli-depth');
    const io = memoryIo();
    const code = await main(['prune', storiesDir, '--out', out, '--method', 'structured', '--target', 'depth', '--depth-score', 'bi', '--sparsity', '0.25',
      '--calibration', calibFile, '--nsamples', '4', '--seqlen', '64', '--json'], io);
    expect(io.stderrText).toBe('');
    expect(code).toBe(0);
    const j = JSON.parse(io.stdoutText);
    const dirBytes = (dd: string) => readdirSync(dd).reduce((a, f) => a + statSync(path.join(dd, f)).size, 0);
    expect(j.bytes.before).toBe(dirBytes(path.join(storiesDir, 'onnx')));
    expect(j.bytes.after).toBe(dirBytes(path.join(out, 'onnx')));
    expect(j.bytes.after).toBeLessThan(j.bytes.before);
    expect(j.params.before - j.params.after).toBe(j.structured.depth.removedParams + 64 * j.structured.depth.removed.length);
    const ins = memoryIo();
    expect(await main(['inspect', out], ins)).toBe(0);
    expect(ins.stdoutText).toContain(`removed sub-layers (identity on the residual): ${j.structured.depth.removed.join(' ')}`);
  }, LONG);
});

const layoutNames = hasLayouts ? readdirSync(layoutsDir).filter((dd) => existsSync(path.join(layoutsDir, dd, 'onnx/model.onnx'))) : [];
describe.skipIf(!hasLayouts)('every layout of ../shared/models/layouts (skipped when ../shared is absent)', () => {
  for (const name of layoutNames) {
    it(`${name}: depth removal (bi and loss) = dense graph with the removed output projections zeroed`, async () => {
      const dir = path.join(work, `layout-${name}`);
      cpSync(path.join(layoutsDir, name), dir, { recursive: true });
      const onnxPath = path.join(dir, 'onnx/model.onnx');
      const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      const vocab = Number(config.vocab_size);
      const cal = tokens(4 * 16, vocab, 5);
      const evalIds = tokens(2 * 12, vocab, 6);
      for (const depthScore of ['bi', 'loss'] as const) {
        const session = await ort.InferenceSession.create(onnxPath, { logSeverityLevel: 3 });
        const model = { sessions: { model: session }, config };
        const report = await pruneModel(model, { method: 'structured', target: ['depth'], depthScore, sparsity: 0.4, calibration: { ids: cal }, nsamples: 4, seqlen: 16 });
        const d = report.structured!.depth!;
        expect(d.removed.length).toBeGreaterThan(0);
        expect(report.structured!.params.before - report.structured!.params.after).toBeGreaterThanOrEqual(d.removedParams);
        const pruned = await logitsOf(model.sessions.model, evalIds, 2, 12, config);
        const ref = await ort.InferenceSession.create(encodeModel(zeroedReference(onnxPath, config, d.removed)), { logSeverityLevel: 3 });
        expect(maxRel(pruned, await logitsOf(ref, evalIds, 2, 12, config)), `${name} ${depthScore} ${d.removed.join(' ')}`).toBeLessThan(1e-5);
      }
    }, LONG);
  }
});
