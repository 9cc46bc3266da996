/**
 * The calibration engine's head statistics (the lm_head's input = the final norm's output, after the last block) and
 * the cross Gram Σ x̃ᵀx of a reference stream (needs.cross, for asymmetric GPTQ), against an independent computation:
 * the whole model as one graph with the inputs exposed (fixture.ts), run on the modified model (x) and on an
 * untouched copy (x̃), the products summed naively in float64 in JS.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCalibration } from '../../src/calibration/index.js';
import { discoverLinears } from '../../src/model/discover.js';
import type { InputStats, LinearInfo } from '../../src/types.js';
import { loadFixture, referenceActivations, repoRoot, type FixtureModel, tokens } from './fixture.js';

const stories = path.join(repoRoot, 'models/stories260k');

function inputOf(m: FixtureModel, l: LinearInfo): string {
  return m.proto.graph.node.find((n) => n.name === l.node)!.input.find((i) => i !== l.weight)!;
}

/** Σ_t a_tᵀ b_t over the batches ([d × d], entry i·d + j = Σ a_ti b_tj). */
function product(a: Float32Array[], b: Float32Array[], d: number): Float64Array {
  const out = new Float64Array(d * d);
  for (let k = 0; k < a.length; k++) {
    const x = a[k]!, y = b[k]!;
    for (let t = 0; t < x.length / d; t++) for (let i = 0; i < d; i++) {
      const v = x[t * d + i]!;
      for (let j = 0; j < d; j++) out[i * d + j] += v * y[t * d + j]!;
    }
  }
  return out;
}

function relErr(got: Float64Array | undefined, want: Float64Array): number {
  expect(got).toBeDefined();
  let scale = 0;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let e = 0;
  for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got![i]! - want[i]!) / scale);
  return e;
}

/** Scale block b's linears (a stand-in for quantization: the stream after b differs from the reference). */
function perturb(m: FixtureModel, b: number): void {
  for (const l of m.linears.filter((x) => x.block === b)) {
    const w = m.readInitializer(l.weight);
    for (let i = 0; i < w.length; i++) w[i] = i % 3 === 0 ? 0 : w[i]! * 1.1;
    m.writeInitializer(l.weight, w);
  }
}

describe('calibration: head statistics and the cross Gram of a reference stream', () => {
  it('stories260k, sequential with a callback that changes each block: Gram and Σ x̃ᵀx of every block input and of the lm_head input equal the independent float64 computation', async () => {
    const m = loadFixture(stories);
    const dense = loadFixture(stories);
    const head = discoverLinears(m.proto.graph, { includeLmHead: true, config: m.config }).linears.find((l) => l.role === 'lm_head')!;
    expect(head).toBeDefined();
    const nsamples = 6, seqlen = 48, batch = 4;
    const w = tokens(nsamples * seqlen, Number(m.config?.vocab_size ?? 512), 11);
    const L = Math.max(...m.linears.map((l) => l.block)) + 1;
    const seen: number[] = [];
    let crossDiffers = false;
    await runCalibration(m, w, { nsamples, seqlen, batchSize: batch, needs: { sq: true, gram: true, cross: true }, head }, async (b, stats) => {
      seen.push(b);
      const ls = b < L ? m.linears.filter((x) => x.block === b) : [head];
      const xs = [...new Set(ls.map((l) => inputOf(m, l)))];
      const cur = await referenceActivations(m, w, nsamples, seqlen, batch, xs);
      const ref = await referenceActivations(dense, w, nsamples, seqlen, batch, xs);
      for (const l of ls) {
        const s: InputStats = stats.get(l.name)!;
        const x = inputOf(m, l);
        const gram = product(cur.get(x)!, cur.get(x)!, l.dIn);
        const cross = product(ref.get(x)!, cur.get(x)!, l.dIn);
        expect(relErr(s.gram, gram), `${l.name} gram`).toBeLessThan(1e-5);
        expect(relErr(s.cross, cross), `${l.name} cross`).toBeLessThan(1e-5);
        if (b > 0 && relErr(s.cross, gram) > 1e-3) crossDiffers = true;
      }
      if (b < L) perturb(m, b);
    });
    expect(seen).toEqual(Array.from({ length: L + 1 }, (_, i) => i));
    expect(crossDiffers, 'changing earlier blocks must make Σ x̃ᵀx differ from XᵀX').toBe(true);
  }, 300_000);

  it('one-shot head statistics equal the dense model\'s; cross refuses one-shot', async () => {
    const m = loadFixture(stories);
    const head = discoverLinears(m.proto.graph, { includeLmHead: true, config: m.config }).linears.find((l) => l.role === 'lm_head')!;
    const nsamples = 4, seqlen = 32;
    const w = tokens(nsamples * seqlen, Number(m.config?.vocab_size ?? 512), 3);
    let got: InputStats | undefined;
    await runCalibration(m, w, { nsamples, seqlen, batchSize: 3, mode: 'oneshot', needs: { sq: true, gram: true }, head }, (_b, stats) => {
      got = stats.get(head.name) ?? got;
    });
    const x = inputOf(m, head);
    const acts = await referenceActivations(m, w, nsamples, seqlen, 3, [x]);
    expect(relErr(got?.gram, product(acts.get(x)!, acts.get(x)!, head.dIn))).toBeLessThan(1e-5);
    await expect(runCalibration(m, w, { nsamples, seqlen, mode: 'oneshot', needs: { sq: true, gram: true, cross: true } })).rejects.toThrow(/sequential/);
  }, 120_000);
});
