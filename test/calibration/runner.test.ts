/** Runner behaviour on the embedded stories260k: callback order, shared statistics, batching, progress, abort, errors. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeWithExternalData } from '../../src/model/external.js';
import { createNode, createTensor, DataType, readModelFile } from '../../src/model/onnx.js';
import { describe, expect, it } from 'vitest';
import { blockOfNode, planGraph, runCalibration, denseStatistics } from '../../src/calibration/index.js';
import { DsaPruneError, EXIT } from '../../src/errors.js';
import type { Progress } from '../../src/types.js';
import { loadFixture, repoRoot } from './fixture.js';

const dir = path.join(repoRoot, 'models/stories260k');
const N = 5;
const T = 24;
const windows = Int32Array.from({ length: N * T }, (_, i) => 3 + ((i * 7919) % 500));

describe('calibration runner', () => {
  it('names blocks from node scopes', () => {
    expect(blockOfNode('/model/layers.3/mlp/down_proj/MatMul')).toBe(3);
    expect(blockOfNode('/transformer/h.11/attn/c_attn/Gemm')).toBe(11);
    expect(blockOfNode('/model/norm/Mul')).toBe(-1);
    expect(blockOfNode(undefined)).toBe(-1);
  });

  it('plans stories260k: embedding enters block 0, each block hands one hidden state to the next', () => {
    const m = loadFixture(dir);
    const plan = planGraph(m.proto, m.linears);
    expect(plan.nBlocks).toBe(5);
    expect(plan.hiddenIn[0]).toEqual(['/model/embed_tokens/Gather_output_0']);
    for (let b = 1; b < 5; b++) expect(plan.hiddenIn[b]).toEqual(plan.carried[b - 1]);
    expect(plan.carried[4]).toEqual([]);
    // q/k/v share one input, gate/up share one: 4 distinct inputs per block.
    for (const s of plan.statsInputs) expect(s.map((x) => x.linears.length).sort()).toEqual([1, 1, 2, 3]);
  });

  it('calls onBlock in order with the block linears; shared inputs share one InputStats', async () => {
    const m = loadFixture(dir);
    const order: number[] = [];
    await runCalibration(m, windows, { nsamples: N, seqlen: T, batchSize: 2, needs: { sq: true, gram: false } }, (b, stats) => {
      order.push(b);
      const names = m.linears.filter((l) => l.block === b).map((l) => l.name).sort();
      expect([...stats.keys()].sort()).toEqual(names);
      const q = stats.get(`model.layers.${b}.self_attn.q_proj`)!;
      expect(stats.get(`model.layers.${b}.self_attn.k_proj`)).toBe(q);
      expect(stats.get(`model.layers.${b}.mlp.gate_proj`)).toBe(stats.get(`model.layers.${b}.mlp.up_proj`));
      expect(q.gram).toBeUndefined();
      expect(q.tokens).toBe(N * T);
    });
    expect(order).toEqual([0, 1, 2, 3, 4]);
  });

  it('gives the same statistics for any batch size (a partial last batch included)', async () => {
    const m = loadFixture(dir);
    const a = await denseStatistics(m, windows, { nsamples: N, seqlen: T, batchSize: 2, needs: { sq: true, gram: true } });
    const b = await denseStatistics(m, windows, { nsamples: N, seqlen: T, batchSize: 5, needs: { sq: true, gram: true } });
    expect(a.size).toBe(35);
    for (const [k, s] of a) {
      const t = b.get(k)!;
      for (let j = 0; j < s.sq.length; j++) expect(Math.abs(s.sq[j]! - t.sq[j]!)).toBeLessThanOrEqual(1e-5 * t.sq[j]!);
      expect(s.gram!.length).toBe(s.sq.length ** 2);
    }
  });

  it('reports progress up to 1 and phases in order', async () => {
    const m = loadFixture(dir);
    const seen: Progress[] = [];
    const r = await runCalibration(m, windows, { nsamples: N, seqlen: T, batchSize: 3, needs: { sq: true, gram: false }, onProgress: (p) => seen.push(p) });
    const f = seen.map((p) => p.fraction);
    for (let i = 1; i < f.length; i++) expect(f[i]!).toBeGreaterThanOrEqual(f[i - 1]!);
    expect(f.at(-1)).toBe(1);
    expect(seen.filter((p) => p.phase === 'statistics').length).toBe(5 * 2);
    expect(seen.filter((p) => p.phase === 'output').length).toBe(4 * 2);
    expect(r.blocks.length).toBe(5);
    expect(r.seconds.total).toBeGreaterThan(0);
    expect(r.peakRssBytes).toBeGreaterThan(0);
  });

  it('shares one block session across identical blocks and falls back to separate sessions for a different block', async () => {
    const m = loadFixture(dir);
    const opts = { nsamples: N, seqlen: T, batchSize: 2, needs: { sq: true, gram: true } };
    const dense = new Map<string, Map<string, { sq: Float64Array; gram?: Float64Array }>>();
    const shared = await runCalibration(m, windows, opts, (b, stats) => { dense.set(String(b), stats); });
    // Sequential, gated graph (default): one session serves both passes of all five blocks.
    expect(shared.blockSessions).toBe(1);
    expect(shared.blockSessionsByKind).toEqual({ statistics: 0, output: 0, combined: 0, gated: 1 });
    const split = await runCalibration(m, windows, { ...opts, blockGraphs: 'split' });
    expect(split.blockSessionsByKind).toEqual({ statistics: 1, output: 1, combined: 0, gated: 0 });
    expect(split.blockSessions).toBe(2);
    const combined = await runCalibration(m, windows, { ...opts, blockGraphs: 'combined' });
    expect(combined.blockSessions).toBe(1);
    const oneshot = await runCalibration(m, windows, { ...opts, mode: 'oneshot' });
    expect(oneshot.blockSessionsByKind).toEqual({ statistics: 0, output: 0, combined: 1, gated: 0 });
    // Block 2 gets an extra Mul by 1 on its attention input: same numbers, different structure.
    const proto = readModelFile(path.join(dir, 'onnx/model.onnx'));
    const q = m.linears.find((l) => l.name === 'model.layers.2.self_attn.q_proj')!;
    const g = proto.graph;
    const qNode = g.node.find((n) => n.name === q.node)!;
    const x = qNode.input.find((i) => i !== q.weight)!;
    const at = g.node.findIndex((n) => n.output.includes(x));
    for (const n of g.node) if (n.name?.includes('/layers.2/')) n.input = n.input.map((i) => (i === x ? `${x}/times1` : i));
    g.node.splice(at + 1, 0,
      createNode({ op_type: 'Constant', name: '/model/layers.2/test/One', output: ['test_one'], attribute: [{ name: 'value', type: 4, t: createTensor({ dims: [], data_type: DataType.FLOAT, float_data: [1] }) }] }),
      createNode({ op_type: 'Mul', name: '/model/layers.2/test/Mul', input: [x, 'test_one'], output: [`${x}/times1`] }));
    const changed = { ...m, proto };
    const seen = new Map<string, Map<string, { sq: Float64Array; gram?: Float64Array }>>();
    const r = await runCalibration(changed, windows, opts, (b, stats) => { seen.set(String(b), stats); });
    expect(r.blockSessions).toBe(3); // blocks 0–1, block 2, blocks 3–4
    // Split graphs: the same three runs for each of the two graph kinds (the last block has no output pass).
    const rs = await runCalibration(changed, windows, { ...opts, blockGraphs: 'split' });
    expect(rs.blockSessionsByKind).toEqual({ statistics: 3, output: 3, combined: 0, gated: 0 });
    for (const [b, stats] of dense) {
      for (const [k, s] of stats) {
        const t = seen.get(b)!.get(k)!;
        for (let j = 0; j < s.sq.length; j++) expect(Math.abs(s.sq[j]! - t.sq[j]!)).toBeLessThanOrEqual(1e-6 * s.sq[j]! + 1e-12);
        for (let j = 0; j < s.gram!.length; j++) expect(Math.abs(s.gram![j]! - t.gram![j]!)).toBeLessThanOrEqual(1e-5 * (Math.abs(s.gram![j]!) + 1e-3));
      }
    }
  });

  it('aborts between runs with exit code 130', async () => {
    const m = loadFixture(dir);
    const ac = new AbortController();
    const p = runCalibration(m, windows, {
      nsamples: N, seqlen: T, batchSize: 1, needs: { sq: true, gram: false }, signal: ac.signal,
      onProgress: (x) => { if (x.phase === 'statistics') ac.abort(); },
    });
    await expect(p).rejects.toMatchObject({ name: 'DsaPruneError', code: 'aborted', exitCode: EXIT.aborted });
  });

  it('reads weights kept in external data (model.onnx + model.onnx_data)', async () => {
    const m = loadFixture(dir);
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'calib-ext-'));
    try {
      const onnxPath = path.join(tmp, 'model.onnx');
      writeWithExternalData(m.proto, path.join(dir, 'onnx'), onnxPath, path.join(tmp, 'model.onnx_data'), 'model.onnx_data');
      const proto = readModelFile(onnxPath);
      expect(proto.graph.initializer.some((t) => t.data_location === 1)).toBe(true);
      const ext = { ...m, proto, source: { dir: tmp, onnxPath } };
      const opts = { nsamples: N, seqlen: T, needs: { sq: true, gram: false } };
      const a = await denseStatistics(m, windows, opts);
      const b = await denseStatistics(ext, windows, opts);
      for (const [k, s] of a) expect(Array.from(b.get(k)!.sq)).toEqual(Array.from(s.sq));
      await expect(denseStatistics({ ...ext, source: undefined }, windows, opts)).rejects.toThrow(/external data/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("one-shot with blockWeights 'initializers': a combined session per block, the statistics of 'inputs' to float32 rounding", async () => {
    const m = loadFixture(dir);
    const opts = { nsamples: N, seqlen: T, needs: { sq: true, gram: true } };
    const ref = await denseStatistics(m, windows, opts);
    const got = new Map<string, { sq: Float64Array; gram?: Float64Array }>();
    const report = await runCalibration(m, windows, { ...opts, mode: 'oneshot', blockWeights: 'initializers' }, (_b, stats) => {
      for (const [k, v] of stats) got.set(k, v);
    });
    const L = report.blocks.length;
    expect(report.blockSessionsByKind).toEqual({ statistics: 0, output: 0, combined: L, gated: 0 });
    expect(got.size).toBe(ref.size);
    for (const [k, want] of ref) {
      const a = got.get(k)!;
      const scale = Math.max(...want.sq);
      for (let j = 0; j < want.sq.length; j++) expect(Math.abs(a.sq[j]! - want.sq[j]!) / scale, k).toBeLessThan(1e-4);
      const gs = Math.max(...want.gram!.map(Math.abs));
      let worst = 0;
      for (let j = 0; j < want.gram!.length; j++) worst = Math.max(worst, Math.abs(a.gram![j]! - want.gram![j]!) / gs);
      expect(worst, k).toBeLessThan(1e-4);
    }
  });

  it('rejects windows that do not match nsamples × seqlen, and models without blocks', async () => {
    const m = loadFixture(dir);
    await expect(runCalibration(m, windows.subarray(1), { nsamples: N, seqlen: T, needs: { sq: true, gram: false } })).rejects.toThrow(DsaPruneError);
    await expect(runCalibration(m, windows, { nsamples: 0, seqlen: T, needs: { sq: true, gram: false } })).rejects.toThrow(/nsamples/);
    await expect(runCalibration(m, windows, { nsamples: N, seqlen: T, needs: { sq: true, gram: false }, blockGraphs: 'both' as 'split' })).rejects.toThrow(/blockGraphs must be 'gated', 'split' or 'combined'/);
    await expect(runCalibration(m, windows, { nsamples: N, seqlen: T, needs: { sq: true, gram: false }, blockWeights: 'packed' as 'inputs' })).rejects.toThrow(/blockWeights must be 'inputs' or 'initializers'/);
    const noBlocks = { ...m, linears: m.linears.map((l) => ({ ...l, block: -1 })) };
    await expect(runCalibration(noBlocks, windows, { nsamples: N, seqlen: T, needs: { sq: true, gram: false } })).rejects.toThrow(/no linear layers inside decoder blocks/);
  });
});
