/**
 * The onnx-community fixture builder (test/fixtures/community.ts) at the SmolLM2-135M layout with 2 blocks: the ONNX
 * graph onnxruntime runs equals an independent float64 decoder written from the published architecture (RMSNorm,
 * rotary, GQA, causal mask, SiLU MLP, tied head) over the same weights; the KV cache continues a prefix exactly as the
 * full sequence; fp16 tracks fp32; transformers.js loads both files and dsa-prune finds the 14 linears where the
 * exporter puts them. Also the llama3 rope scaling of Llama-3.2 (against transformers' formula, recomputed here).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelDir } from '../../src/model/load.js';
import { buildCommunityModel, COMMUNITY_SHAPES, ropeInvFreq, type CommunityModel } from '../fixtures/community.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-community-'));
let built: CommunityModel;
beforeAll(() => {
  built = buildCommunityModel(path.join(work, 'smol'), 'smollm2-135m', { blocks: 2 });
}, 120_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Float32 weights by name, read straight from model.onnx_data with the offsets in the graph (naive decoding). */
async function weights(dir: string): Promise<Map<string, Float64Array>> {
  const { decodeModel } = await import('../../src/model/onnx.js');
  const m = decodeModel(new Uint8Array(readFileSync(path.join(dir, 'onnx/model.onnx'))));
  const data = readFileSync(path.join(dir, 'onnx/model.onnx_data'));
  const out = new Map<string, Float64Array>();
  for (const t of m.graph.initializer) {
    if (t.data_type !== 1) continue;
    let bytes: Uint8Array;
    if (t.external_data?.length) {
      const kv = Object.fromEntries(t.external_data.map((e) => [e.key, e.value]));
      bytes = data.subarray(Number(kv.offset), Number(kv.offset) + Number(kv.length));
    } else bytes = t.raw_data!;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const v = new Float64Array(bytes.length / 4);
    for (let i = 0; i < v.length; i++) v[i] = dv.getFloat32(i * 4, true);
    out.set(t.name!, v);
  }
  return out;
}

/** Independent float64 forward of the published Llama architecture: logits [S × vocab] of one sequence. */
function reference(m: CommunityModel, W: Map<string, Float64Array>, ids: number[]): Float64Array {
  const s = m.shape;
  const h = s.hidden, H = s.heads, KV = s.kvHeads, D = s.headDim, S = ids.length, blocks = Number(m.config.num_hidden_layers);
  const w = (name: string) => W.get(name)!;
  const lin = (x: Float64Array, name: string, dIn: number, dOut: number): Float64Array => {
    const Wt = w(name), y = new Float64Array(S * dOut);
    for (let t = 0; t < S; t++) for (let i = 0; i < dIn; i++) {
      const a = x[t * dIn + i]!;
      if (a !== 0) for (let o = 0; o < dOut; o++) y[t * dOut + o] += a * Wt[i * dOut + o]!;
    }
    return y;
  };
  const rms = (x: Float64Array, g: Float64Array): Float64Array => {
    const y = new Float64Array(x.length);
    for (let t = 0; t < S; t++) {
      let ss = 0;
      for (let i = 0; i < h; i++) ss += x[t * h + i]! ** 2;
      const r = 1 / Math.sqrt(ss / h + s.rmsEps);
      for (let i = 0; i < h; i++) y[t * h + i] = g[i]! * x[t * h + i]! * r;
    }
    return y;
  };
  const inv = ropeInvFreq(s);
  const rope = (x: Float64Array, nh: number): void => {
    for (let t = 0; t < S; t++) for (let hh = 0; hh < nh; hh++) {
      const base = t * nh * D + hh * D;
      for (let i = 0; i < D / 2; i++) {
        const ang = t * inv[i]!;
        const a = x[base + i]!, b = x[base + i + D / 2]!;
        x[base + i] = a * Math.cos(ang) - b * Math.sin(ang);
        x[base + i + D / 2] = b * Math.cos(ang) + a * Math.sin(ang);
      }
    }
  };
  // The exporter's MatMul weight names in creation order (q, k, v, o, gate, up, down per block, then lm_head).
  const mm = m.linears;
  let x = new Float64Array(S * h);
  const E = w('model.embed_tokens.weight');
  for (let t = 0; t < S; t++) for (let i = 0; i < h; i++) x[t * h + i] = E[ids[t]! * h + i]!;
  for (let b = 0; b < blocks; b++) {
    const L = mm.filter((l) => l.block === b);
    const byRole = (r: string) => L.find((l) => l.role === r)!;
    const n1 = rms(x, w(`model.layers.${b}.input_layernorm.weight`));
    const q = lin(n1, byRole('q').weight, h, H * D), k = lin(n1, byRole('k').weight, h, KV * D), v = lin(n1, byRole('v').weight, h, KV * D);
    rope(q, H);
    rope(k, KV);
    const ctx = new Float64Array(S * H * D);
    for (let hh = 0; hh < H; hh++) {
      const kh = Math.floor(hh / (H / KV));
      for (let t = 0; t < S; t++) {
        const sc = new Float64Array(t + 1);
        let mx = -Infinity;
        for (let u = 0; u <= t; u++) {
          let d = 0;
          for (let i = 0; i < D; i++) d += q[t * H * D + hh * D + i]! * k[u * KV * D + kh * D + i]!;
          sc[u] = d / Math.sqrt(D);
          mx = Math.max(mx, sc[u]!);
        }
        let z = 0;
        for (let u = 0; u <= t; u++) z += (sc[u] = Math.exp(sc[u]! - mx));
        for (let u = 0; u <= t; u++) for (let i = 0; i < D; i++) ctx[t * H * D + hh * D + i] += (sc[u]! / z) * v[u * KV * D + kh * D + i]!;
      }
    }
    const o = lin(ctx, byRole('o').weight, H * D, h);
    x = x.map((a, i) => a + o[i]!);
    const n2 = rms(x, w(`model.layers.${b}.post_attention_layernorm.weight`));
    const g = lin(n2, byRole('gate').weight, h, s.inter), u = lin(n2, byRole('up').weight, h, s.inter);
    const a = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]!);
    const d = lin(a, byRole('down').weight, s.inter, h);
    x = x.map((xv, i) => xv + d[i]!);
  }
  const nf = rms(x, w('model.norm.weight'));
  // Tied head: logits = norm(x) · Eᵀ (the embedding itself, not the graph's lm_head copy).
  const out = new Float64Array(S * s.vocab);
  for (let t = 0; t < S; t++) for (let r = 0; r < s.vocab; r++) {
    let acc = 0;
    for (let i = 0; i < h; i++) acc += nf[t * h + i]! * E[r * h + i]!;
    out[t * s.vocab + r] = acc;
  }
  return out;
}

function feeds(session: ort.InferenceSession, ids: number[], start: number, total: number, type: 'float32' | 'float16', past?: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
  const S = ids.length;
  const f: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, S]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map((_, i) => BigInt(start + i))), [1, S]),
  };
  for (const n of session.inputNames) {
    if (!n.startsWith('past_key_values.')) continue;
    f[n] = past?.[n] ?? new ort.Tensor(type, type === 'float16' ? new Uint16Array(0) : new Float32Array(0), [1, 3, 0, 64]);
  }
  return f;
}

function toF32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  const d = t.data as Uint16Array;
  const out = new Float32Array(d.length);
  for (let i = 0; i < d.length; i++) {
    const x = d[i]!, e = (x >> 10) & 0x1f, m = x & 0x3ff, sg = x & 0x8000 ? -1 : 1;
    out[i] = e === 0 ? sg * m * 2 ** -24 : e === 31 ? (m ? NaN : sg * Infinity) : sg * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

describe('onnx-community fixture (SmolLM2-135M layout, 2 blocks)', () => {
  const ids = [1, 17, 4242, 9, 30000, 5];

  it('writes the published config and the hub file layout', () => {
    const cfg = JSON.parse(readFileSync(path.join(built.dir, 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ model_type: 'llama', hidden_size: 576, intermediate_size: 1536, num_attention_heads: 9, num_key_value_heads: 3, vocab_size: 49152, tie_word_embeddings: true, num_hidden_layers: 2 });
    expect(built.linears.map((l) => l.node).slice(0, 7)).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'].map((p) => `/model/layers.0/${p.endsWith('_proj') && 'qkvo'.includes(p[0]!) ? 'self_attn' : 'mlp'}/${p}/MatMul`));
  });

  it('fp32 graph = independent float64 decoder', async () => {
    const W = await weights(built.dir);
    const ref = reference(built, W, ids);
    const s = await ort.InferenceSession.create(path.join(built.dir, 'onnx/model.onnx'));
    const out = await s.run(feeds(s, ids, 0, ids.length, 'float32'));
    const got = out.logits!.data as Float32Array;
    let maxErr = 0, maxRef = 0;
    for (let i = 0; i < ref.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(got[i]! - ref[i]!));
      maxRef = Math.max(maxRef, Math.abs(ref[i]!));
    }
    expect(maxRef).toBeGreaterThan(0.1);
    expect(maxErr / maxRef).toBeLessThan(1e-4);
    expect(out['present.1.key']!.dims).toEqual([1, 3, ids.length, 64]);
  }, 120_000);

  it('KV cache: prefix + one token = the full sequence', async () => {
    const s = await ort.InferenceSession.create(path.join(built.dir, 'onnx/model.onnx'));
    const full = (await s.run(feeds(s, ids, 0, ids.length, 'float32'))).logits!.data as Float32Array;
    const pre = await s.run(feeds(s, ids.slice(0, -1), 0, ids.length - 1, 'float32'));
    const past: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(pre)) if (k.startsWith('present.')) past[k.replace('present.', 'past_key_values.')] = v;
    const next = (await s.run(feeds(s, ids.slice(-1), ids.length - 1, ids.length, 'float32', past))).logits!.data as Float32Array;
    const V = 49152, last = full.subarray((ids.length - 1) * V);
    let err = 0;
    for (let i = 0; i < V; i++) err = Math.max(err, Math.abs(last[i]! - next[i]!));
    expect(err).toBeLessThan(1e-4);
  }, 60_000);

  it('fp16 file tracks fp32', async () => {
    const s32 = await ort.InferenceSession.create(path.join(built.dir, 'onnx/model.onnx'));
    const s16 = await ort.InferenceSession.create(path.join(built.dir, 'onnx/model_fp16.onnx'));
    const a = (await s32.run(feeds(s32, ids, 0, ids.length, 'float32'))).logits!.data as Float32Array;
    const b = toF32((await s16.run(feeds(s16, ids, 0, ids.length, 'float16'))).logits!);
    let err = 0, mx = 0;
    for (let i = 0; i < a.length; i++) {
      err = Math.max(err, Math.abs(a[i]! - b[i]!));
      mx = Math.max(mx, Math.abs(a[i]!));
    }
    expect(err / mx).toBeLessThan(0.02);
  }, 60_000);

  it('transformers.js loads fp32 and fp16; dsa-prune finds the linears where the exporter puts them', async () => {
    for (const dtype of ['fp32', 'fp16']) {
      const { prunable } = await loadModelDir(built.dir, { dtype });
      expect(prunable.linears.map((l) => l.name)).toEqual(built.linears.map((l) => l.node.replace(/^\//, '').replace(/\/MatMul$/, '').replaceAll('/', '.')));
      expect(prunable.linears.map((l) => [l.dIn, l.dOut])).toEqual(built.linears.map((l) => [l.dIn, l.dOut]));
    }
  }, 120_000);

  it('llama3 rope scaling of Llama-3.2 (transformers formula)', () => {
    const s = COMMUNITY_SHAPES['llama3.2-1b']!;
    const inv = ropeInvFreq(s);
    // Recomputed: wavelength > 8192 → ÷32, < 2048 unchanged, between: smooth blend.
    for (let i = 0; i < 32; i++) {
      const f = 1 / 500000 ** ((2 * i) / 64);
      const wave = (2 * Math.PI) / f;
      const smooth = (8192 / wave - 1) / 3;
      const want = wave < 2048 ? f : wave > 8192 ? f / 32 : (1 - smooth) * (f / 32) + smooth * f;
      expect(Math.abs(inv[i]! - want) / want).toBeLessThan(1e-6);
    }
    expect(inv[31]).toBeLessThan(1 / 500000 ** (62 / 64) / 31);
  });
});
