/**
 * `--allocator flap-global` (FLAP's AL-AM ranking for the FFN): the per-block channel counts and the removed channels
 * equal an independent computation — the dense graph's down-projection inputs captured as extra outputs and run by
 * onnxruntime, the scores, the per-block z-scores (std with n − 1, as torch.std) and the global sort all in float64
 * here — on stories260k; the exact budget; the refusals.
 */
import path from 'node:path';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { AutoModelForCausalLM, env } from '@huggingface/transformers';
import '../../src/index.js';
import { pruneModel, flapGlobal, parseAllocatorSpec } from '../../src/index.js';
import { discoverLinears, installLoadingHook } from '../../src/model/index.js';
import { buildFeeds } from '../../src/eval/forward.js';
import { encodeModel, readModelFile, tensorToFloat32 } from '../../src/model/onnx.js';
import { flapGlobalCounts } from '../../src/methods/structured/index.js';
import { tokens } from './helpers.js';

env.allowRemoteModels = false;
installLoadingHook();
const LONG = 600_000;
const storiesDir = path.resolve(import.meta.dirname, '../../models/stories260k');

describe('flapGlobalCounts', () => {
  it('lowest standardized scores across blocks; never empties a block (caps and says so)', () => {
    // block 0: z = [-1, 0, 1]; block 1: z = [-1.5, -0.5, 0.5, 1.5] · (1 / std) — computed by hand below.
    const a = Float64Array.from([1, 2, 3]);
    const b = Float64Array.from([10, 20, 30, 40]);
    const zb = (x: number) => (x - 25) / Math.sqrt(500 / 3);
    expect(zb(10)).toBeLessThan(-1);
    expect(flapGlobalCounts([a, b], 1).counts).toEqual([0, 1]); // z(10) ≈ −1.16 < −1
    expect(flapGlobalCounts([a, b], 2).counts).toEqual([1, 1]);
    // z: block 0 [−0.71, 0.71]; block 1 1..10 spans ±1.49, so its top channels come after block 0's last one, which
    // would empty block 0: skipped, block 1's next taken instead.
    const r = flapGlobalCounts([Float64Array.from([1, 2]), Float64Array.from({ length: 10 }, (_, i) => i + 1)], 10);
    expect(r.counts).toEqual([1, 9]);
    expect(r.capped).toEqual([0]);
    expect(() => flapGlobalCounts([a, b], 6)).toThrow(/cannot remove 6 FFN channels/);
  });
});

describe('stories260k: flap-global = independent float64 FLAP AL-AM ranking', () => {
  const config = JSON.parse(readFileSync(path.join(storiesDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const onnxPath = path.join(storiesDir, 'onnx/model.onnx');
  const nsamples = 8;
  const seqlen = 64;
  const calIds = tokens(nsamples * seqlen, Number(config.vocab_size), 5);

  for (const score of ['flap', 'wanda-sp'] as const) {
    it(`${score}: counts and removed channels equal the float64 reference; exact budget`, async () => {
      // Reference: dense down inputs h from onnxruntime, everything else float64 here.
      const m = readModelFile(onnxPath);
      const { linears, layout } = discoverLinears(m.graph, { config });
      const downs = linears.filter((l) => l.role === 'down');
      const hNames = downs.map((l) => m.graph.node.find((n) => n.name === l.node)!.input[0]!);
      for (const h of hNames) m.graph.output.push({ name: h });
      const s = await ort.InferenceSession.create(encodeModel(m), { logSeverityLevel: 3 });
      const out = await s.run(buildFeeds(s as never, calIds, nsamples, seqlen, { config }), hNames);
      const all: { z: number; b: number; j: number }[] = [];
      downs.forEach((l, b) => {
        expect(layout.get(l.name)).toBe('in_out');
        const h = out[hNames[b]!]!.data as Float32Array;
        const F = l.dIn;
        const N = h.length / F;
        const W = tensorToFloat32(m.graph.initializer.find((t) => t.name === l.weight)!); // [F, dOut]
        const sc = new Float64Array(F);
        for (let j = 0; j < F; j++) {
          let s1 = 0;
          let s2 = 0;
          for (let t = 0; t < N; t++) {
            const x = h[t * F + j]!;
            s1 += x;
            s2 += x * x;
          }
          let wa = 0;
          let w2 = 0;
          for (let o = 0; o < l.dOut; o++) {
            const w = W[j * l.dOut + o]!;
            wa += Math.abs(w);
            w2 += w * w;
          }
          sc[j] = score === 'flap' ? (s2 / N - (s1 / N) ** 2) * w2 : wa * Math.sqrt(s2);
        }
        const mean = sc.reduce((a, x) => a + x, 0) / F;
        const std = Math.sqrt(sc.reduce((a, x) => a + (x - mean) ** 2, 0) / (F - 1));
        for (let j = 0; j < F; j++) all.push({ z: (sc[j]! - mean) / std, b, j });
      });
      all.sort((x, y) => x.z - y.z);
      const P = 5 * 45312;
      const total = Math.round((0.2 * P) / 192);
      const gone = all.slice(0, total);
      const expCounts = downs.map((_, b) => gone.filter((e) => e.b === b).length);
      expect(new Set(expCounts).size).toBeGreaterThan(1); // non-uniform, or the test proves little

      const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
      const report = await pruneModel(model, {
        method: 'structured', target: 'ffn', score, sparsity: 0.2, allocator: flapGlobal(), mode: 'oneshot',
        calibration: { ids: calIds }, nsamples, seqlen,
      });
      const st = report.structured!;
      expect(report.allocator.name).toBe('flap-global');
      expect(st.blocks.map((b) => b.ffnBefore - b.ffnAfter)).toEqual(expCounts);
      expect(expCounts.reduce((a, x) => a + x, 0)).toBe(total);
      // one-shot: the channels removed inside each block are FLAP's global mask itself
      st.blocks.forEach((blk, b) => {
        const removed = Array.from({ length: blk.ffnBefore }, (_, j) => j).filter((j) => !blk.kept.includes(j));
        expect(removed).toEqual(gone.filter((e) => e.b === b).map((e) => e.j).sort((x, y) => x - y));
      });
      expect(report.targetBlockSparsity.map((x) => Math.round((x * 45312) / 192))).toEqual(expCounts);
    }, LONG);
  }

  it('refused with other methods and with other targets, before any work', async () => {
    expect(parseAllocatorSpec('flap-global').name).toBe('flap-global');
    const model = await AutoModelForCausalLM.from_pretrained(storiesDir, { dtype: 'fp32' });
    const base = { calibration: { ids: calIds }, nsamples, seqlen, sparsity: 0.2, allocator: flapGlobal() };
    await expect(pruneModel(model, { ...base, method: 'wanda' })).rejects.toThrow(/flap-global .*--method structured --target ffn only/);
    await expect(pruneModel(model, { ...base, method: 'structured', target: ['ffn', 'heads'] })).rejects.toThrow(/flap-global ranks FFN channels only/);
  }, LONG);
});
