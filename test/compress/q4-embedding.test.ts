/**
 * q4 embeddings (src/compress/quantize.ts, `embedding: 'q4'`): the embedding Gather becomes com.microsoft
 * GatherBlockQuantized; a table tied to the lm_head reads the lm_head MatMulNBits' initializers through Reshapes, so
 * the 4-bit codes are stored once. Checked with a decoder written here (nibbles, zero points and scales read from the
 * file in float64), against onnxruntime's own GatherBlockQuantized, against onnxruntime's optimized graph (Reshapes
 * folded), and on stories260k: the q4 file's logits against a float model built from this test's decode of the file.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { checkQ4Options, q4HeadWeights, quantizeModel, quantizeQ4, sparseQ4Model } from '../../src/compress/index.js';
import {
  createNode, createTensor, DataType, decodeModel, encodeModel, readModelFile, tensorBytes, tensorDims, tensorToFloat32,
  type ModelProto, type NodeProto, type TensorProto,
} from '../../src/model/onnx.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const stories = path.join(repoRoot, 'models/stories260k');

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}
const attr = (n: NodeProto, name: string): number => Number(n.attribute.find((a) => a.name === name)!.i);
const nibbleAt = (bytes: Uint8Array, i: number): number => (i & 1 ? bytes[i >> 1] >> 4 : bytes[i >> 1] & 15);

/** The initializer behind `name`, following Reshape (checking its target shape) and Cast (fp16 → float) producers. */
function resolve(m: ModelProto, name: string): { bytes: Uint8Array; values?: Float64Array; dims: number[] } {
  const inits = new Map(m.graph.initializer.map((t) => [t.name!, t]));
  const producer = new Map<string, NodeProto>();
  for (const n of m.graph.node) for (const o of n.output) producer.set(o, n);
  const i64s = (t: TensorProto): number[] => Array.from(new BigInt64Array(new Uint8Array(tensorBytes(t)).buffer), Number);
  const t = inits.get(name);
  if (t) {
    const values = t.data_type === DataType.UINT8 ? undefined : Float64Array.from(tensorToFloat32(t));
    return { bytes: tensorBytes(t), values, dims: tensorDims(t) };
  }
  const p = producer.get(name)!;
  expect(p, `producer of ${name}`).toBeDefined();
  const src = resolve(m, p.input[0]);
  if (p.op_type === 'Reshape') {
    const dims = i64s(inits.get(p.input[1])!);
    expect(dims.reduce((a, b) => a * b, 1)).toBe(src.dims.reduce((a, b) => a * b, 1));
    return { ...src, dims };
  }
  expect(p.op_type).toBe('Cast');
  return src;
}

/** Table [rows × cols] (float64) a GatherBlockQuantized node reads: (q − zp) · scale per block along axis 1. */
function gbqTable(m: ModelProto, n: NodeProto): { rows: number; cols: number; w: Float64Array } {
  expect([attr(n, 'bits'), attr(n, 'gather_axis'), attr(n, 'quantize_axis')]).toEqual([4, 0, 1]);
  const bs = attr(n, 'block_size');
  const data = resolve(m, n.input[0]);
  const scales = resolve(m, n.input[2]);
  const zp = resolve(m, n.input[3]);
  const [rows, half] = data.dims;
  const cols = half * 2;
  const nb = cols / bs;
  expect(scales.dims).toEqual([rows, nb]);
  expect(zp.dims).toEqual([rows, Math.ceil(nb / 2)]);
  const w = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const b = Math.floor(c / bs);
      w[r * cols + c] = (nibbleAt(data.bytes, r * cols + c) - nibbleAt(zp.bytes, r * 2 * Math.ceil(nb / 2) + b)) * scales.values![r * nb + b];
    }
  }
  return { rows, cols, w };
}

/** Weight [N × K] (float64) a MatMulNBits node reads. */
function nbitsWeight(m: ModelProto, n: NodeProto): { N: number; K: number; w: Float64Array } {
  const K = attr(n, 'K');
  const N = attr(n, 'N');
  const bs = attr(n, 'block_size');
  const nb = Math.ceil(K / bs);
  const B = resolve(m, n.input[1]).bytes;
  const S = resolve(m, n.input[2]).values!;
  const Z = resolve(m, n.input[3]).bytes;
  const w = new Float64Array(N * K);
  for (let r = 0; r < N; r++) {
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / bs);
      w[r * K + k] = (nibbleAt(B, (r * nb + b) * bs + (k % bs)) - nibbleAt(Z, r * 2 * Math.ceil(nb / 2) + b)) * S[r * nb + b];
    }
  }
  return { N, K, w };
}

const vi = (name: string, elem: number, dims: number[]) => ({ name, type: { tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } });

/** ids → Gather(E [V × H]) → h; logits = MatMul(h, W [H × V]), W = Eᵀ when tied. */
function embedModel(tied: boolean, V = 64, H = 96): ModelProto {
  const rnd = rng(tied ? 11 : 12);
  const E = new Float32Array(V * H).map(() => (rnd() - 0.5) * 0.3);
  const W = new Float32Array(H * V);
  for (let i = 0; i < H; i++) for (let j = 0; j < V; j++) W[i * V + j] = tied ? E[j * H + i] : (rnd() - 0.5) * 0.3;
  return {
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      node: [
        createNode({ op_type: 'Gather', name: 'emb', input: ['E', 'ids'], output: ['h'] }),
        createNode({ op_type: 'MatMul', name: 'lm_head', input: ['h', 'W'], output: ['logits'] }),
      ],
      initializer: [
        createTensor({ name: 'E', dims: [V, H], data_type: DataType.FLOAT, raw_data: new Uint8Array(E.buffer) }),
        createTensor({ name: 'W', dims: [H, V], data_type: DataType.FLOAT, raw_data: new Uint8Array(W.buffer) }),
      ],
      input: [vi('ids', DataType.INT64, [5])],
      output: [vi('h', DataType.FLOAT, [5, H]), vi('logits', DataType.FLOAT, [5, V])],
      value_info: [],
    },
  } as unknown as ModelProto;
}

const IDS = [3, 0, 63, 17, 3];

async function runIds(m: ModelProto, optimized?: string): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(m), optimized ? { optimizedModelFilePath: optimized } : {});
  const r = await s.run({ ids: new ort.Tensor('int64', BigInt64Array.from(IDS.map(BigInt)), [IDS.length]) });
  await s.release();
  return r.h.data as Float32Array;
}

describe('q4 embeddings (GatherBlockQuantized)', () => {
  // the uniform block-32 layout the exporters write (the pair's default block is 16 since session 8: q4HeadBlockSize)
  const B32 = { headBlockSize: 32 } as const;
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'dsa-q4emb-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('tied table: codes stored once (the lm_head MatMulNBits\' initializers via Reshape); onnxruntime returns exactly this test\'s decode; Reshapes folded', async () => {
    const { model, report } = quantizeModel(embedModel(true), 'q4', B32);
    expect(report.embeddings).toEqual([{ weight: 'E', rows: 64, cols: 96, format: 'q4-tied', tiedTo: 'W' }]);
    // No table of its own: the only uint8 payloads are the lm_head's B and zero points.
    const u8 = model.graph.initializer.filter((t) => t.data_type === DataType.UINT8).map((t) => tensorBytes(t).length);
    expect(u8.sort((a, b) => a - b)).toEqual([64 * 2, 64 * 96 / 2]);
    expect(model.graph.initializer.map((t) => t.name)).not.toContain('E');
    const gbq = model.graph.node.find((n) => n.op_type === 'GatherBlockQuantized')!;
    const table = gbqTable(model, gbq);
    const lm = nbitsWeight(model, model.graph.node.find((n) => n.op_type === 'MatMulNBits')!);
    // The embedding reads exactly the lm_head's dequantized weight (row v of the table = output channel v).
    expect(Array.from(table.w)).toEqual(Array.from(lm.w));
    // ...which is the 4-bit grid of the float table (error within half a step of each block).
    const E = tensorToFloat32(embedModel(true).graph.initializer[0]);
    let maxErr = 0;
    for (let i = 0; i < E.length; i++) maxErr = Math.max(maxErr, Math.abs(table.w[i] - E[i]));
    expect(maxErr).toBeLessThan(0.035); // step 0.3/15; the range search may shrink a block's range by up to 20 %
    const opt = path.join(tmp, 'tied-opt.onnx');
    const h = await runIds(model, opt);
    for (const [j, id] of IDS.entries()) {
      for (let c = 0; c < 96; c++) expect(h[j * 96 + c]).toBe(Math.fround(table.w[id * 96 + c]));
    }
    const folded = decodeModel(readFileSync(opt), 'optimized');
    expect(folded.graph.node.filter((n) => n.op_type === 'Reshape')).toEqual([]);
  });

  it('untied table: its own 4-bit codes; onnxruntime returns exactly this test\'s decode', async () => {
    const { model, report } = quantizeModel(embedModel(false), 'q4', B32);
    expect(report.embeddings).toEqual([{ weight: 'E', rows: 64, cols: 96, format: 'q4' }]);
    const gbq = model.graph.node.find((n) => n.op_type === 'GatherBlockQuantized')!;
    expect(gbq.input[0]).not.toBe(model.graph.node.find((n) => n.op_type === 'MatMulNBits')!.input[1]);
    const table = gbqTable(model, gbq);
    const h = await runIds(model);
    for (const [j, id] of IDS.entries()) {
      for (let c = 0; c < 96; c++) expect(h[j * 96 + c]).toBe(Math.fround(table.w[id * 96 + c]));
    }
  });

  it('precomputed lm_head codes (GPTQ): the tied table reads them only with tiePrecomputed, else gets its own round-to-nearest codes', async () => {
    // stand-in for GPTQ codes: round-to-nearest of the lm_head weight with every value shifted, so they differ from RTN's
    const base = embedModel(true);
    const V = 64, H = 96;
    const Wkn = tensorToFloat32(base.graph.initializer[1]);
    const shifted = new Float32Array(V * H);
    for (let i = 0; i < H; i++) for (let j = 0; j < V; j++) shifted[j * H + i] = Wkn[i * V + j] + 0.02;
    const pre = quantizeQ4(shifted, V, H, 32);
    const codes = new Map([['W', pre]]);
    const tied = quantizeModel(base, 'q4', { ...B32, q4Codes: codes, tiePrecomputed: true });
    expect(tied.report.embeddings).toEqual([{ weight: 'E', rows: 64, cols: 96, format: 'q4-tied', tiedTo: 'W' }]);
    const lm = nbitsWeight(tied.model, tied.model.graph.node.find((n) => n.op_type === 'MatMulNBits')!);
    const table = gbqTable(tied.model, tied.model.graph.node.find((n) => n.op_type === 'GatherBlockQuantized')!);
    expect(Array.from(table.w)).toEqual(Array.from(lm.w));
    // the lm_head holds the precomputed codes (this test's decode of them, element by element)
    const zpRow = Math.ceil(pre.nBlocks / 2);
    for (let r = 0; r < V; r++) for (let j = 0; j < H; j++) {
      const b = j >> 5;
      const byte = pre.packed[(r * pre.nBlocks + b) * 16 + ((j % 32) >> 1)]!;
      const zb = pre.zeroPoints[r * zpRow + (b >> 1)]!;
      const want = Math.fround(((j % 2 ? byte >> 4 : byte & 15) - (b % 2 ? zb >> 4 : zb & 15)) * pre.scales[r * pre.nBlocks + b]!);
      expect(lm.w[r * H + j]).toBe(want);
    }
    const h = await runIds(tied.model);
    for (const [j, id] of IDS.entries()) for (let c = 0; c < 96; c++) expect(h[j * 96 + c]).toBe(Math.fround(table.w[id * 96 + c]));
    // default: the table gets its own codes = round-to-nearest of the float table (what quantizeModel writes without q4Codes)
    const untied = quantizeModel(base, 'q4', { ...B32, q4Codes: codes });
    expect(untied.report.embeddings).toEqual([{ weight: 'E', rows: 64, cols: 96, format: 'q4' }]);
    const own = gbqTable(untied.model, untied.model.graph.node.find((n) => n.op_type === 'GatherBlockQuantized')!);
    const rtn = gbqTable(quantizeModel(base, 'q4', B32).model, quantizeModel(base, 'q4', B32).model.graph.node.find((n) => n.op_type === 'GatherBlockQuantized')!);
    expect(Array.from(own.w)).toEqual(Array.from(rtn.w));
    expect(Array.from(own.w)).not.toEqual(Array.from(table.w));
  });

  it("embedding: 'q8' (and a width that is not a multiple of the block size) keeps the per-row int8 DequantizeLinear", () => {
    const q8 = quantizeModel(embedModel(true), 'q4', { ...B32, embedding: 'q8' });
    expect(q8.report.embeddings[0].format).toBe('int8');
    expect(q8.model.graph.node.some((n) => n.op_type === 'GatherBlockQuantized')).toBe(false);
    const odd = quantizeModel(embedModel(true, 64, 80), 'q4', B32);
    expect(odd.report.embeddings[0].format).toBe('int8');
    // by default a width 16 divides (80) gets the 16-wide pair block and a 4-bit table; one it does not (72) keeps
    // the uniform block 32 for the pair, so the table stays int8 as before
    expect(quantizeModel(embedModel(true, 64, 80), 'q4').report.embeddings[0].format).toBe('q4-tied');
    const odd72 = quantizeModel(embedModel(true, 64, 72), 'q4');
    expect(odd72.report.embeddings[0].format).toBe('int8');
    expect(attr(odd72.model.graph.node.find((n) => n.op_type === 'MatMulNBits')!, 'block_size')).toBe(32);
    // q8 files never use GatherBlockQuantized.
    expect(quantizeModel(embedModel(true), 'q8').report.embeddings[0].format).toBe('int8');
  });

  it('exclude: a listed MatMul weight stays the float MatMul (bit for bit), reported as skipped; the table then gets its own codes', () => {
    const m = embedModel(true);
    // a second MatMul h × P [H × H] that is quantized
    const H = 96;
    const P = new Float32Array(H * H).map((_, i) => Math.sin(i) * 0.1);
    m.graph.node.push(createNode({ op_type: 'MatMul', name: 'proj', input: ['h', 'P'], output: ['p'] }));
    m.graph.initializer.push(createTensor({ name: 'P', dims: [H, H], data_type: DataType.FLOAT, raw_data: new Uint8Array(P.buffer) }));
    m.graph.output.push(vi('p', DataType.FLOAT, [5, H]));
    const r = quantizeModel(m, 'q4', { exclude: ['W'] });
    expect(r.report.matmuls.map((x) => x.weight)).toEqual(['P']);
    expect(r.report.skipped).toEqual([{ weight: 'W', reason: 'excluded (quantizeOptions.exclude)' }]);
    const mm = r.model.graph.node.find((n) => n.name === 'lm_head')!;
    expect(mm.op_type).toBe('MatMul');
    const w = r.model.graph.initializer.find((t) => t.name === mm.input[1])!;
    expect(Buffer.compare(Buffer.from(tensorBytes(w)), Buffer.from(tensorBytes(m.graph.initializer.find((t) => t.name === 'W')!)))).toBe(0);
    expect(r.report.embeddings[0].format).toBe('q4');
  });

  it('sparse q4 keeps the tie: the rebuilt lm_head B / scales keep their names, the embedding reads them (dense and sparse path)', async () => {
    const { model } = quantizeModel(embedModel(true, 64, 128), 'q4');
    const a = await runIds(model);
    // Default: the dense lm_head keeps its codes, its scales become fp16 + a Cast named as the scales initializer.
    const dense = sparseQ4Model(model).model;
    expect(dense.graph.node.some((n) => n.op_type === 'Cast' && n.output[0] === model.graph.node.find((x) => x.op_type === 'MatMulNBits')!.input[2])).toBe(true);
    // maxRatio 10: the lm_head goes through the sparse decoder (B rebuilt under its own name).
    const sparse = sparseQ4Model(model, { maxRatio: 10 });
    expect(sparse.report.weights.length).toBe(1);
    for (const m of [dense, sparse.model]) {
      const b = await runIds(m);
      expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    }
  });
});

describe('q4 head block size (quantizeOptions.headBlockSize): the lm_head / embedding pair in its own blocks', () => {
  it('block 16 for the tied pair, 32 for the rest: this test\'s decode of the file = the float weights on a 16-wide grid; the table reads the lm_head\'s codes, stored once; onnxruntime returns exactly the decode', async () => {
    const m = embedModel(true);
    const H = 96, V = 64;
    const P = new Float32Array(H * H).map((_, i) => Math.sin(i * 0.7) * 0.1);
    // a block linear before the lm_head (its output is a graph output too, but the lm_head is the last MatMul)
    m.graph.node.splice(1, 0, createNode({ op_type: 'MatMul', name: 'proj', input: ['h', 'P'], output: ['p'] }));
    m.graph.initializer.push(createTensor({ name: 'P', dims: [H, H], data_type: DataType.FLOAT, raw_data: new Uint8Array(P.buffer) }));
    m.graph.output.push(vi('p', DataType.FLOAT, [5, H]));
    expect([...q4HeadWeights(m.graph)]).toEqual(['W']);
    const { model, report } = quantizeModel(m, 'q4', { headBlockSize: 16 });
    expect(report.embeddings).toEqual([{ weight: 'E', rows: V, cols: H, format: 'q4-tied', tiedTo: 'W' }]);
    const nbits = model.graph.node.filter((n) => n.op_type === 'MatMulNBits');
    expect(Object.fromEntries(nbits.map((n) => [n.name, attr(n, 'block_size')]))).toEqual({ lm_head_Q4: 16, proj_Q4: 32 });
    const gbq = model.graph.node.find((n) => n.op_type === 'GatherBlockQuantized')!;
    expect(attr(gbq, 'block_size')).toBe(16);
    // stored once: uint8 payloads are the two MatMulNBits' B and zero points only (lm_head: 6 blocks of 16 per row)
    const u8 = model.graph.initializer.filter((t) => t.data_type === DataType.UINT8).map((t) => tensorBytes(t).length);
    expect(u8.sort((a, b) => a - b)).toEqual([V * 3, H * 2, V * H / 2, H * H / 2].sort((a, b) => a - b));
    const lmNode = nbits.find((n) => n.name === 'lm_head_Q4')!;
    const reshaped = model.graph.node.find((x) => x.op_type === 'Reshape' && x.output[0] === gbq.input[0])!;
    expect(reshaped.input[0]).toBe(lmNode.input[1]);
    const lm = nbitsWeight(model, lmNode);
    const table = gbqTable(model, gbq);
    expect(Array.from(table.w)).toEqual(Array.from(lm.w));
    // independent check of the grid: every 16-wide block of a row of E decodes within half a step of its own range
    // (the range search shrinks it by at most 20 %), and the block-16 table is closer to E than the block-32 one
    const E = tensorToFloat32(m.graph.initializer.find((t) => t.name === 'E')!);
    const sq = (w: Float64Array) => w.reduce((a, v, i) => a + (v - E[i]) ** 2, 0);
    for (let r = 0; r < V; r++) for (let b = 0; b < H / 16; b++) {
      let lo = 0, hi = 0;
      for (let j = b * 16; j < b * 16 + 16; j++) { lo = Math.min(lo, E[r * H + j]); hi = Math.max(hi, E[r * H + j]); }
      const step = (hi - lo) / 15;
      for (let j = b * 16; j < b * 16 + 16; j++) expect(Math.abs(table.w[r * H + j] - E[r * H + j])).toBeLessThanOrEqual(0.2 * Math.max(-lo, hi) + step / 2 + 1e-7);
    }
    const b32 = quantizeModel(m, 'q4', { headBlockSize: 32 }).model;
    const t32 = gbqTable(b32, b32.graph.node.find((n) => n.op_type === 'GatherBlockQuantized')!);
    expect(sq(table.w)).toBeLessThan(sq(t32.w));
    // the default (no headBlockSize) is this 16-wide pair, byte for byte
    expect(encodeModel(quantizeModel(m, 'q4').model)).toEqual(encodeModel(model));
    // the block-32 linear is exactly what the uniform block-32 writer produces
    const d32 = b32;
    const pOf = (mm: ModelProto) => nbitsWeight(mm, mm.graph.node.find((n) => n.name === 'proj_Q4')!).w;
    expect(Array.from(pOf(model))).toEqual(Array.from(pOf(d32)));
    // onnxruntime: the table rows and the logits of the file equal those of a float model built from this decode
    const h = await runIds(model);
    for (const [j, id] of IDS.entries()) for (let c = 0; c < H; c++) expect(h[j * H + c]).toBe(Math.fround(table.w[id * H + c]));
    const runAll = async (mm: ModelProto) => {
      const s = await ort.InferenceSession.create(encodeModel(mm));
      const r = await s.run({ ids: new ort.Tensor('int64', BigInt64Array.from(IDS.map(BigInt)), [IDS.length]) });
      await s.release();
      return [r.logits.data as Float32Array, r.p.data as Float32Array];
    };
    const [la, pa] = await runAll(model);
    const [lb, pb] = await runAll(decodedFloatModel(model));
    for (const [a, b] of [[la, lb], [pa, pb]]) {
      const maxAbs = b.reduce((x, v) => Math.max(x, Math.abs(v)), 0);
      expect(maxAbs).toBeGreaterThan(0.01);
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-5 * maxAbs + 1e-7);
    }
  });

  it('untied pair: the lm_head and the table each get their own block-16 codes', () => {
    const m = embedModel(false);
    const { model } = quantizeModel(m, 'q4', { headBlockSize: 16 });
    const lmNode = model.graph.node.find((n) => n.op_type === 'MatMulNBits')!;
    const gbq = model.graph.node.find((n) => n.op_type === 'GatherBlockQuantized')!;
    expect([attr(lmNode, 'block_size'), attr(gbq, 'block_size')]).toEqual([16, 16]);
    expect(gbq.input[0]).not.toBe(lmNode.input[1]);
    // the table's codes are the writer's rule on E in blocks of 16 (quantizeQ4), byte for byte
    const E = tensorToFloat32(m.graph.initializer.find((t) => t.name === 'E')!);
    const want = quantizeQ4(E, 64, 96, 16);
    expect(Buffer.from(resolve(model, gbq.input[0]).bytes).equals(Buffer.from(want.packed))).toBe(true);
  });

  it('precomputed codes (GPTQ) must use the pair\'s block for the lm_head; bad block sizes and a head block that does not divide the table width are refused before writing', () => {
    const base = embedModel(true);
    const Wkn = tensorToFloat32(base.graph.initializer[1]);
    const wt = new Float32Array(64 * 96);
    for (let i = 0; i < 96; i++) for (let j = 0; j < 64; j++) wt[j * 96 + i] = Wkn[i * 64 + j];
    const c32 = new Map([['W', quantizeQ4(wt, 64, 96, 32)]]);
    expect(() => quantizeModel(base, 'q4', { headBlockSize: 16, q4Codes: c32 })).toThrow(/in blocks of 32, the weight is 64×96 in blocks of 16/);
    const c16 = new Map([['W', quantizeQ4(wt, 64, 96, 16)]]);
    expect(quantizeModel(base, 'q4', { headBlockSize: 16, q4Codes: c16, tiePrecomputed: true }).report.embeddings[0].format).toBe('q4-tied');
    for (const bad of [8, 24, 0, 17.5]) {
      expect(() => quantizeModel(base, 'q4', { headBlockSize: bad })).toThrow(/headBlockSize\) .* is not a power of two ≥ 16/);
      expect(() => checkQ4Options(base.graph, { headBlockSize: bad })).toThrow(/not a power of two/);
    }
    expect(() => quantizeModel(base, 'q4', { blockSize: 48 })).toThrow(/blockSize\) 48 is not a power of two/);
    // 64 does not divide the hidden size 96: the tied table could not read the lm_head's codes
    expect(() => quantizeModel(base, 'q4', { headBlockSize: 64 })).toThrow(/block size 64 does not divide the width 96 of the embedding table E/);
    expect(() => checkQ4Options(base.graph, { headBlockSize: 64 })).toThrow(/does not divide the width 96/);
    // …unless the table is written in int8 (then only the lm_head uses the block; MatMulNBits pads K)
    const q8 = quantizeModel(base, 'q4', { headBlockSize: 64, embedding: 'q8' });
    expect(attr(q8.model.graph.node.find((n) => n.op_type === 'MatMulNBits')!, 'block_size')).toBe(64);
  });
});

/** A float model computing what the q4 file's weights decode to (this test's decoder): MatMul / Gather on floats. */
function decodedFloatModel(m: ModelProto): ModelProto {
  const added: TensorProto[] = [];
  const floatInit = (name: string, dims: number[], w: Float64Array): string => {
    added.push(createTensor({ name, dims, data_type: DataType.FLOAT, raw_data: new Uint8Array(Float32Array.from(w).buffer) }));
    return name;
  };
  const node = m.graph.node.map((n) => {
    if (n.op_type === 'MatMulNBits') {
      const { N, K, w } = nbitsWeight(m, n);
      const kn = new Float64Array(K * N); // MatMul wants [K × N]
      for (let r = 0; r < N; r++) for (let k = 0; k < K; k++) kn[k * N + r] = w[r * K + k];
      return createNode({ op_type: 'MatMul', name: `${n.name}_dec`, input: [n.input[0], floatInit(`dec/${n.name}`, [K, N], kn)], output: [...n.output] });
    }
    if (n.op_type === 'GatherBlockQuantized') {
      const { rows, cols, w } = gbqTable(m, n);
      return createNode({ op_type: 'Gather', name: `${n.name}_dec`, input: [floatInit(`dec/${n.name}`, [rows, cols], w), n.input[1]], output: [...n.output] });
    }
    return n;
  });
  return { ...m, graph: { ...m.graph, node, initializer: [...m.graph.initializer, ...added] } };
}

describe('stories260k: q4 file with a 4-bit tied embedding', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'dsa-q4emb-s-'));
    cpSync(stories, path.join(work, 'm'), { recursive: true });
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  // undefined = the default, which is 16 for stories260k's 64-wide table (q4HeadBlockSize); 32 = the exporters' uniform layout
  it.each([undefined, 16, 32])('logits equal (to float rounding) those of a float model built from this test\'s decode of the file (head block %s)', async (headBlockSize) => {
    const fp = readModelFile(path.join(work, 'm/onnx/model.onnx'));
    const { model: q4, report } = quantizeModel(fp, 'q4', headBlockSize ? { headBlockSize } : {});
    expect(report.embeddings.map((e) => e.format)).toEqual(['q4-tied']);
    const gbqNode = q4.graph.node.find((n) => n.op_type === 'GatherBlockQuantized')!;
    const lmNode = q4.graph.node.find((n) => n.op_type === 'MatMulNBits' && n.output.includes('logits'))!;
    expect([attr(gbqNode, 'block_size'), attr(lmNode, 'block_size')]).toEqual([headBlockSize ?? 16, headBlockSize ?? 16]);
    expect(q4.graph.node.filter((n) => n.op_type === 'MatMulNBits' && n !== lmNode).every((n) => attr(n, 'block_size') === 32)).toBe(true);
    // the tie: the table's codes are the lm_head's B (through a Reshape), and no other initializer holds a 512 × 64 code table
    expect(q4.graph.node.find((x) => x.op_type === 'Reshape' && x.output[0] === gbqNode.input[0])!.input[0]).toBe(lmNode.input[1]);
    expect(q4.graph.initializer.filter((t) => t.data_type === DataType.UINT8 && tensorBytes(t).length === 512 * 64 / 2).length).toBe(1);
    const dec = decodedFloatModel(q4);
    expect(dec.graph.node.some((n) => n.domain === 'com.microsoft')).toBe(false);
    const run = async (m: ModelProto): Promise<Float32Array> => {
      const s = await ort.InferenceSession.create(encodeModel(m));
      const T = 6;
      const f: Record<string, ort.Tensor> = {};
      for (const name of s.inputNames) {
        if (name === 'input_ids') f[name] = new ort.Tensor('int64', BigInt64Array.from([1n, 50n, 100n, 7n, 300n, 9n]), [1, T]);
        else if (name === 'attention_mask') f[name] = new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]);
        else if (name === 'position_ids') f[name] = new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n, 4n, 5n]), [1, T]);
        else {
          const md = (s.inputMetadata as unknown as { name: string; shape: (number | string)[] }[]).find((x) => x.name === name)!;
          f[name] = new ort.Tensor('float32', new Float32Array(0), md.shape.map((d) => (typeof d === 'number' ? d : String(d).includes('batch') ? 1 : 0)));
        }
      }
      const out = (await s.run(f)).logits.data as Float32Array;
      await s.release();
      return out;
    };
    const a = await run(q4);
    const b = await run(dec);
    expect(a.length).toBe(b.length);
    let maxAbs = 0;
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) {
      maxAbs = Math.max(maxAbs, Math.abs(b[i]));
      maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    }
    expect(maxAbs).toBeGreaterThan(1);
    expect(maxDiff).toBeLessThan(1e-3 * maxAbs);
    // And the embedding term is really 4-bit: the decoded table differs from the float one.
    const gbq = q4.graph.node.find((n) => n.op_type === 'GatherBlockQuantized')!;
    const table = gbqTable(q4, gbq).w;
    const E = tensorToFloat32(fp.graph.initializer.find((t) => t.name === report.embeddings[0].weight)!);
    expect(table.some((v, i) => v !== E[i])).toBe(true);
  }, 60_000);
});
