/**
 * Prune-then-quantize: rewrite a (pruned) float ONNX graph into the quantized variants transformers.js loads.
 *
 * - `q4` (`onnx/model_q4.onnx`): every MatMul whose weight is a 2-D float initializer becomes a com.microsoft
 *   MatMulNBits (bits 4, block_size 32 by default, asymmetric with packed uint8 zero points). Each block's range is
 *   widened to contain 0 and the zero point is an integer, so a pruned weight (exact 0) quantizes to q = zp and
 *   dequantizes to (zp − zp)·scale = 0 exactly. Embedding Gathers become com.microsoft GatherBlockQuantized (4-bit,
 *   same blocks); a table tied to a quantized lm_head reads that MatMulNBits' initializers through Reshapes, so the
 *   codes are stored once (`embedding: 'q8'`: per-row int8 DequantizeLinear, as q8 files do).
 * - `q8` (`onnx/model_quantized.onnx`): per-output-channel symmetric int8 weights (zero point 0) feeding a standard
 *   DequantizeLinear (opset 13) → MatMul; activations stay float, so only the weights carry quantization error.
 *   Embedding Gathers get per-row int8 DequantizeLinear.
 *
 * Works on an inline ModelProto (inline external data first with inlinedModel) and returns a new one; the input is
 * not modified (initializers are shared by reference where unchanged).
 */
import { DsaPruneError } from '../errors.js';
import {
  bytesPerElement, createNode, createTensor, DataType, float32ToFp16, tensorBytes, tensorDims, tensorToFloat32,
  type GraphProto, type ModelProto, type NodeProto, type TensorProto,
} from '../model/onnx.js';
import { transposedEqual } from './sparse.js';

export type QuantizeKind = 'q8' | 'q4';

export interface QuantizeOptions {
  /** q4 block size along the input dimension (power of two ≥ 16). Default 32. */
  blockSize?: number;
  /**
   * q4: block size of the lm_head / embedding pair only (power of two ≥ 16): the lm_head's MatMulNBits (see
   * q4HeadWeights) and every 4-bit embedding table (GatherBlockQuantized) use it, so a tied table still reads the
   * lm_head's codes, stored once. Default (`q4HeadBlockSize`): 16 when `blockSize` is larger and 16 divides the width
   * of every table written in 4 bits, else `blockSize`. Given explicitly and smaller than `blockSize`, it must divide
   * the width of every table written in 4 bits (else an error); equal to it, a table it does not divide stays int8. Smaller blocks: more scales and zero points (block 16: +0.125 bytes per weight
   * of that matrix), less rounding error. `headBlockSize: 32` writes the exporters' uniform block-32 layout.
   */
  headBlockSize?: number;
  /** Also quantize embedding tables read by Gather. Default true. */
  embeddings?: boolean;
  /**
   * q4 files: how an embedding table is stored. `q4` (default): com.microsoft GatherBlockQuantized (4 bits, the
   * MatMul weights' block size and rule); a table that is exactly the transpose of a MatMul weight quantized here (a
   * tied lm_head) reads that MatMulNBits' `B` / `scales` / `zero_points` through Reshapes, so the codes are stored
   * once. A table whose width is not a multiple of the block size stays int8. `q8`: per-row int8 DequantizeLinear.
   * q8 files always use int8.
   */
  embedding?: 'q4' | 'q8';
  /** Skip MatMul weights smaller than this many elements (kept float). Default 0 (quantize all). */
  minElements?: number;
  /** MatMul weight initializers kept float (e.g. an lm_head, to measure what its quantization costs). Default none. */
  exclude?: readonly string[];
  /**
   * q4: per block, try this many shrunken ranges and keep the one with the least squared error (0 = plain min/max).
   * Exact zeros stay exact for every candidate. Default 6.
   */
  rangeSearch?: number;
  /**
   * q4: codes already computed for some weights (initializer name → packed [N × K] codes, e.g. GPTQ from gptq.ts),
   * written as they are instead of round-to-nearest. Must match the weight's K, N and `blockSize`.
   */
  q4Codes?: ReadonlyMap<string, Q4Packed>;
  /**
   * q4: an embedding table tied to a MatMul weight whose codes come from `q4Codes` (GPTQ on the lm_head) reads those
   * codes too (default false: such a table gets its own round-to-nearest codes, as the precomputed ones were fitted
   * to the lm_head's inputs, not to the embedding's use).
   */
  tiePrecomputed?: boolean;
}

export interface QuantizeReport {
  kind: QuantizeKind;
  /** Weight initializers replaced, with their element counts. */
  matmuls: { weight: string; k: number; n: number }[];
  /** `format`: `int8`, `q4`, or `q4-tied` (shares the codes of the MatMul weight `tiedTo`). */
  embeddings: { weight: string; rows: number; cols: number; format?: 'int8' | 'q4' | 'q4-tied'; tiedTo?: string }[];
  /** Weights left in float, with the reason. */
  skipped: { weight: string; reason: string }[];
}

/** q4 quantization of a [N × K] row-major matrix (row = output channel), blocks along K. */
export interface Q4Packed {
  n: number;
  k: number;
  blockSize: number;
  nBlocks: number;
  /** [N, nBlocks, blockSize/2] — two 4-bit values per byte, the first in the low nibble. */
  packed: Uint8Array;
  /** [N · nBlocks] */
  scales: Float32Array;
  /** [N · ceil(nBlocks/2)] — two 4-bit zero points per byte, the first in the low nibble. */
  zeroPoints: Uint8Array;
}

/**
 * x rounded to 11 significant bits, i.e. a value fp16 represents exactly, when x is in fp16's normal range (else x):
 * q4 scales chosen this way are stored losslessly as fp16 by the sparse q4 file (sparse-q4.ts); the plain file keeps
 * them in the model's float type. The relative change (≤ 2⁻¹¹) is far below the 4-bit step.
 */
export function halfPrecision(x: number): number {
  if (!(x >= 2 ** -14 && x <= 65504)) return x;
  let e = Math.floor(Math.log2(x));
  if (2 ** e > x) e--;
  else if (2 ** (e + 1) <= x) e++;
  const quantum = 2 ** (e - 10);
  return Math.round(x / quantum) * quantum;
}

/**
 * Quantize W [n × k] (row-major, row = output channel) to 4 bits with per-block scale and integer zero point.
 * Every block's range contains 0, so exact zeros map to their zero point. Scales are fp16-representable (halfPrecision).
 */
export function quantizeQ4(w: Float32Array, n: number, k: number, blockSize = 32, rangeSearch = 6): Q4Packed {
  if (w.length !== n * k) throw new DsaPruneError(`quantizeQ4: expected ${n}×${k} values, got ${w.length}`);
  checkQ4BlockSize(blockSize);
  const nBlocks = Math.ceil(k / blockSize);
  const blob = blockSize / 2;
  const zpRow = Math.ceil(nBlocks / 2);
  const packed = new Uint8Array(n * nBlocks * blob);
  const scales = new Float32Array(n * nBlocks);
  const zeroPoints = new Uint8Array(n * zpRow);
  const q = new Uint8Array(blockSize);
  const best = new Uint8Array(blockSize);
  const f32 = new Float32Array(1);
  for (let r = 0; r < n; r++) {
    const row = r * k;
    for (let b = 0; b < nBlocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(k, k0 + blockSize);
      let lo = 0;
      let hi = 0;
      for (let j = k0; j < k1; j++) {
        const v = w[row + j];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      let bestErr = Infinity;
      let bestScale = 0;
      let bestZp = 0;
      best.fill(0);
      if (hi - lo > 0) {
        const tries = Math.max(1, rangeSearch);
        for (let t = 0; t < tries; t++) {
          const shrink = 1 - t * 0.04;
          const a = lo * shrink;
          const c = hi * shrink;
          f32[0] = halfPrecision((c - a) / 15);
          const scale = f32[0];
          if (!(scale > 0)) continue;
          let zp = Math.round(-a / scale);
          if (zp < 0) zp = 0;
          else if (zp > 15) zp = 15;
          let err = 0;
          for (let j = k0; j < k1; j++) {
            const v = w[row + j];
            let qq = Math.round(v / scale) + zp;
            if (qq < 0) qq = 0;
            else if (qq > 15) qq = 15;
            if (v === 0) qq = zp; // exact zero (also −0) stays exact
            q[j - k0] = qq;
            const d = (qq - zp) * scale - v;
            err += d * d;
          }
          if (err < bestErr) {
            bestErr = err;
            bestScale = scale;
            bestZp = zp;
            best.set(q);
          }
        }
      }
      if (bestErr === Infinity) {
        // All-zero block: scale 0 keeps everything exactly 0; q = zp = 0.
        bestScale = 0;
        bestZp = 0;
        best.fill(0);
      }
      // Padding beyond K (last block) stores the zero point: dequantizes to 0.
      for (let j = k1 - k0; j < blockSize; j++) best[j] = bestZp;
      scales[r * nBlocks + b] = bestScale;
      const zpi = r * zpRow + (b >> 1);
      zeroPoints[zpi] |= (b & 1) ? bestZp << 4 : bestZp;
      const base = (r * nBlocks + b) * blob;
      for (let j = 0; j < blob; j++) packed[base + j] = best[2 * j] | (best[2 * j + 1] << 4);
    }
  }
  return { n, k, blockSize, nBlocks, packed, scales, zeroPoints };
}

/** Throws unless `bs` is a q4 block size MatMulNBits / GatherBlockQuantized take: a power of two ≥ 16. */
export function checkQ4BlockSize(bs: number, what = 'q4 block size'): void {
  if (!Number.isInteger(bs) || bs < 16 || (bs & (bs - 1)) !== 0) {
    throw new DsaPruneError(`${what} ${bs} is not a power of two ≥ 16`, { hint: 'Use 16, 32, 64 or 128 (default 32).' });
  }
}

/** A Gather on an embedding table the q4 writer quantizes (axis 0, 2-D float initializer, not a graph input). */
function embeddingTable(n: NodeProto, inits: ReadonlyMap<string, TensorProto>, graphInputs: ReadonlySet<string | undefined>, minElements: number): TensorProto | undefined {
  if ((n.domain ?? '') !== '' || n.op_type !== 'Gather') return undefined;
  const t = inits.get(n.input[0]);
  const axis = n.attribute.find((a) => a.name === 'axis');
  if (!isFloatInit(t) || graphInputs.has(t.name!) || (axis && Number(axis.i ?? 0) !== 0)) return undefined;
  const [rows, cols] = tensorDims(t);
  return rows * cols >= Math.max(minElements, 1024) ? t : undefined;
}

/**
 * The MatMul weights the q4 writer treats as the lm_head (quantizeOptions.headBlockSize): a MatMul
 * on a 2-D float initializer whose node / weight name contains `lm_head` or `embed_out`, the last such MatMul in node
 * order when its output is a graph output (the logits; discoverLinears' rule), and every MatMul weight that is bit for bit the transpose of an embedding table read by Gather (a tied
 * lm_head). `values` reads an initializer's float values (default: tensorToFloat32 of the inline tensor); GPTQ calls
 * this on its model so its codes use the writer's block for every linear.
 */
export function q4HeadWeights(graph: GraphProto, values: (t: TensorProto) => Float32Array = tensorToFloat32): Set<string> {
  const inits = new Map<string, TensorProto>();
  for (const t of graph.initializer) if (t.name) inits.set(t.name, t);
  const graphInputs = new Set(graph.input.map((i) => i.name!));
  const outputs = new Set((graph.output ?? []).map((o) => o.name));
  const heads = new Set<string>();
  const matmuls: TensorProto[] = [];
  const tables: TensorProto[] = [];
  let last: { n: NodeProto; t: TensorProto } | undefined;
  for (const n of graph.node) {
    if ((n.domain ?? '') === '' && n.op_type === 'MatMul' && n.input.length === 2) {
      const t = inits.get(n.input[1]);
      if (!isFloatInit(t) || graphInputs.has(t.name!)) continue;
      matmuls.push(t);
      last = { n, t };
      const s = `${n.name ?? ''} ${t.name}`.toLowerCase();
      if (s.includes('lm_head') || s.includes('embed_out')) heads.add(t.name!);
    } else {
      const t = embeddingTable(n, inits, graphInputs, 0);
      if (t) tables.push(t);
    }
  }
  if (last && last.n.output.some((o) => outputs.has(o))) heads.add(last.t.name!);
  for (const t of tables) {
    const [rows, cols] = tensorDims(t);
    let tv: Float32Array | undefined;
    for (const m of matmuls) {
      const [k, nOut] = tensorDims(m);
      if (heads.has(m.name!) || k !== cols || nOut !== rows) continue;
      tv ??= values(t);
      const a = new Uint32Array(tv.buffer, tv.byteOffset, tv.length);
      const mv = values(m);
      const b = new Uint32Array(mv.buffer, mv.byteOffset, mv.length);
      let same = true;
      for (let i = 0; i < rows && same; i++) for (let j = 0; j < cols; j++) if (a[i * cols + j] !== b[j * rows + i]) { same = false; break; }
      if (same) heads.add(m.name!);
    }
  }
  return heads;
}

/** The lm_head / embedding pair's default q4 block (docs/compression.md, "lm_head / embedding block size"). */
export const DEFAULT_Q4_HEAD_BLOCK = 16;

/**
 * The lm_head / embedding pair's q4 block size for this graph: `headBlockSize` when given, else
 * DEFAULT_Q4_HEAD_BLOCK (16) when it is smaller than `blockSize` and divides the width of every embedding table the q4
 * writer would write in 4 bits, else `blockSize`. Why 16 by default: the tied [vocab × hidden] matrix carries the
 * largest single share of the 4-bit loss (it is both the lm_head and the embedding), and blocks of 16 for it alone
 * lowered the perplexity on both held-out texts, with round-to-nearest and with GPTQ, for 2.3 % more bytes on
 * bench-12l. The one resolver: the writer (quantizeModel), GPTQ's groups (gptqModel) and savePruned's summary all
 * call it, so precomputed codes always match the writer's block.
 */
export function q4HeadBlockSize(graph: GraphProto, opts: QuantizeOptions = {}): number {
  const blockSize = opts.blockSize ?? 32;
  if (opts.headBlockSize !== undefined) return opts.headBlockSize;
  if (DEFAULT_Q4_HEAD_BLOCK >= blockSize) return blockSize;
  if ((opts.embedding ?? 'q4') === 'q4' && opts.embeddings !== false) {
    const inits = new Map<string, TensorProto>();
    for (const t of graph.initializer) if (t.name) inits.set(t.name, t);
    const graphInputs = new Set(graph.input.map((i) => i.name!));
    for (const n of graph.node) {
      const t = embeddingTable(n, inits, graphInputs, opts.minElements ?? 0);
      // a 4-bit table the smaller block does not divide: keep the uniform block rather than change how it is stored
      if (t && tensorDims(t)[1] % DEFAULT_Q4_HEAD_BLOCK !== 0) return blockSize;
    }
  }
  return DEFAULT_Q4_HEAD_BLOCK;
}

/**
 * Validate q4 writer options against a graph before any work: block sizes are powers of two ≥ 16, and an explicit
 * `headBlockSize` divides the width of every embedding table written in 4 bits (the tied table reads the lm_head's
 * codes in blocks of that size). savePruned calls this before GPTQ and before anything is written.
 */
export function checkQ4Options(graph: GraphProto, opts: QuantizeOptions = {}): void {
  checkQ4BlockSize(opts.blockSize ?? 32, 'q4 block size (quantizeOptions.blockSize)');
  if (opts.headBlockSize === undefined) return;
  checkQ4BlockSize(opts.headBlockSize, 'q4 lm_head / embedding block size (quantizeOptions.headBlockSize)');
  // the uniform layout (pair block = blockSize): a table it does not divide stays int8, as it always has
  if (opts.headBlockSize === (opts.blockSize ?? 32)) return;
  if ((opts.embedding ?? 'q4') !== 'q4' || opts.embeddings === false) return;
  const inits = new Map<string, TensorProto>();
  for (const t of graph.initializer) if (t.name) inits.set(t.name, t);
  const graphInputs = new Set(graph.input.map((i) => i.name!));
  for (const n of graph.node) {
    const t = embeddingTable(n, inits, graphInputs, opts.minElements ?? 0);
    if (!t) continue;
    const cols = tensorDims(t)[1];
    if (cols % opts.headBlockSize !== 0) {
      throw new DsaPruneError(`q4 lm_head / embedding block size ${opts.headBlockSize} does not divide the width ${cols} of the embedding table ${t.name}`, {
        hint: `Use a power of two ≥ 16 that divides ${cols}, leave headBlockSize out (CLI: --q4-head-block), or write the table in int8 (--q4-embedding q8).`,
      });
    }
  }
}

/** Per-channel symmetric int8: `channels` scales over a [rows × cols] matrix, channel = column (axis 1) or row (axis 0). */
export function quantizeInt8(w: Float32Array, rows: number, cols: number, axis: 0 | 1): { q: Int8Array; scales: Float32Array } {
  const nch = axis === 1 ? cols : rows;
  const maxAbs = new Float32Array(nch);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const a = Math.abs(w[i * cols + j]);
      const c = axis === 1 ? j : i;
      if (a > maxAbs[c]) maxAbs[c] = a;
    }
  }
  const scales = new Float32Array(nch);
  for (let c = 0; c < nch; c++) scales[c] = maxAbs[c] > 0 ? maxAbs[c] / 127 : 1;
  const q = new Int8Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const s = scales[axis === 1 ? j : i];
      let v = Math.round(w[i * cols + j] / s);
      if (v > 127) v = 127;
      else if (v < -127) v = -127;
      q[i * cols + j] = v;
    }
  }
  return { q, scales };
}

function isFloatInit(t: TensorProto | undefined): t is TensorProto {
  return !!t && (t.data_type === DataType.FLOAT || t.data_type === DataType.FLOAT16) && tensorDims(t).length === 2;
}

function floatTensor(name: string, dims: number[], values: Float32Array, dtype: number): TensorProto {
  const raw = dtype === DataType.FLOAT16 ? new Uint8Array(float32ToFp16(values).buffer) : new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  return createTensor({ name, dims, data_type: dtype, raw_data: raw });
}

function ensureOpset(m: ModelProto, domain: string, version: number): void {
  if (!m.opset_import.some((o) => (o.domain ?? '') === domain)) m.opset_import.push({ domain, version });
}

/**
 * Quantize the main graph of `model` (inline data) to `kind`. Returns a new ModelProto and what was replaced.
 * Weights shared by several nodes are quantized once per consuming node kind.
 */
export function quantizeModel(model: ModelProto, kind: QuantizeKind, opts: QuantizeOptions = {}): { model: ModelProto; report: QuantizeReport } {
  const blockSize = opts.blockSize ?? 32;
  const minElements = opts.minElements ?? 0;
  const g = model.graph;
  if (kind === 'q4') checkQ4Options(g, opts);
  const headBlockSize = kind === 'q4' ? q4HeadBlockSize(g, opts) : blockSize;
  const rangeSearch = opts.rangeSearch ?? 6;
  // the lm_head (and a tied one) uses the pair's block size; found only when it differs
  const heads = kind === 'q4' && headBlockSize !== blockSize ? q4HeadWeights(g) : new Set<string>();
  const inits = new Map<string, TensorProto>();
  for (const t of g.initializer) if (t.name) inits.set(t.name, t);
  const graphInputs = new Set(g.input.map((i) => i.name));
  const report: QuantizeReport = { kind, matmuls: [], embeddings: [], skipped: [] };
  const newInits: TensorProto[] = [];
  const replaced = new Set<string>(); // initializer names no node reads any more (candidates for removal)
  const prefix = 'dsa_prune_q';
  const nodes: NodeProto[] = [];
  const preNodes: NodeProto[] = [];
  const dq8 = new Map<string, string>(); // weight name → dequantized output (shared)

  const dequantInt8 = (t: TensorProto, axis: 0 | 1): string => {
    const key = `${t.name}|${axis}`;
    const have = dq8.get(key);
    if (have) return have;
    const [rows, cols] = tensorDims(t);
    const w = tensorToFloat32(t);
    const { q, scales } = quantizeInt8(w, rows, cols, axis);
    const base = `${prefix}/${t.name}/axis${axis}`;
    newInits.push(createTensor({ name: `${base}/q`, dims: [rows, cols], data_type: DataType.INT8, raw_data: new Uint8Array(q.buffer) }));
    newInits.push(createTensor({ name: `${base}/scale`, dims: [scales.length], data_type: DataType.FLOAT, raw_data: new Uint8Array(scales.buffer) }));
    newInits.push(createTensor({ name: `${base}/zp`, dims: [scales.length], data_type: DataType.INT8, raw_data: new Uint8Array(scales.length) }));
    let out = `${base}/dq`;
    preNodes.push(createNode({
      op_type: 'DequantizeLinear', name: `${base}/DequantizeLinear`, input: [`${base}/q`, `${base}/scale`, `${base}/zp`], output: [out],
      attribute: [{ name: 'axis', type: 2, i: axis }],
    }));
    if (t.data_type === DataType.FLOAT16) {
      preNodes.push(createNode({ op_type: 'Cast', name: `${base}/Cast`, input: [out], output: [`${out}_fp16`], attribute: [{ name: 'to', type: 2, i: DataType.FLOAT16 }] }));
      out = `${out}_fp16`;
    }
    dq8.set(key, out);
    replaced.add(t.name!);
    return out;
  };

  const embedding = kind === 'q4' ? opts.embedding ?? 'q4' : 'q8';
  // q4: MatMul weight name → its MatMulNBits initializers (round-to-nearest codes only unless tiePrecomputed: GPTQ
  // codes are fitted to the linear's inputs, not to the embedding's use).
  const q4Written = new Map<string, { base: string; nBlocks: number; zpLen: number; blockSize: number }>();
  // q4 embedding Gathers, resolved after the loop (the tied lm_head comes after the embedding in node order).
  const pendingGathers: { at: number; node: NodeProto; table: TensorProto }[] = [];
  const gbqAttrs = (bs: number): NodeProto['attribute'] => [
    { name: 'bits', type: 2, i: 4 }, { name: 'block_size', type: 2, i: bs },
    { name: 'gather_axis', type: 2, i: 0 }, { name: 'quantize_axis', type: 2, i: 1 },
  ];

  for (const n of g.node) {
    const domain = n.domain ?? '';
    if (domain === '' && n.op_type === 'MatMul' && n.input.length === 2) {
      const t = inits.get(n.input[1]);
      if (isFloatInit(t) && !graphInputs.has(t.name)) {
        const [k, nOut] = tensorDims(t);
        if (k * nOut < minElements) {
          report.skipped.push({ weight: t.name!, reason: `smaller than ${minElements} elements` });
        } else if (opts.exclude?.includes(t.name!)) {
          report.skipped.push({ weight: t.name!, reason: 'excluded (quantizeOptions.exclude)' });
        } else if (kind === 'q8') {
          const dq = dequantInt8(t, 1);
          nodes.push(createNode({ ...n, op_type: n.op_type!, input: [n.input[0], dq] }));
          report.matmuls.push({ weight: t.name!, k, n: nOut });
          continue;
        } else {
          const w = tensorToFloat32(t); // [K × N]
          const wt = new Float32Array(k * nOut); // [N × K]
          for (let i = 0; i < k; i++) for (let j = 0; j < nOut; j++) wt[j * k + i] = w[i * nOut + j];
          const head = heads.has(t.name!);
          const bs = head ? headBlockSize : blockSize;
          const pre = opts.q4Codes?.get(t.name!);
          if (pre && (pre.k !== k || pre.n !== nOut || pre.blockSize !== bs)) {
            throw new DsaPruneError(`precomputed q4 codes of ${t.name} are ${pre.n}×${pre.k} in blocks of ${pre.blockSize}, the weight is ${nOut}×${k} in blocks of ${bs}`, {
              hint: 'Compute the codes (GPTQ) with the same q4 block size as the writer (quantizeOptions.blockSize; the lm_head: headBlockSize).',
            });
          }
          const p = pre ?? quantizeQ4(wt, nOut, k, bs, rangeSearch);
          const base = `${prefix}/${n.name || t.name}`;
          newInits.push(createTensor({ name: `${base}/B`, dims: [nOut, p.nBlocks, bs / 2], data_type: DataType.UINT8, raw_data: p.packed }));
          newInits.push(floatTensor(`${base}/scales`, [nOut * p.nBlocks], p.scales, t.data_type!));
          newInits.push(createTensor({ name: `${base}/zero_points`, dims: [p.zeroPoints.length], data_type: DataType.UINT8, raw_data: p.zeroPoints }));
          nodes.push(createNode({
            op_type: 'MatMulNBits', domain: 'com.microsoft', name: `${n.name || base}_Q4`,
            input: [n.input[0], `${base}/B`, `${base}/scales`, `${base}/zero_points`], output: [...n.output],
            attribute: [
              { name: 'K', type: 2, i: k },
              { name: 'N', type: 2, i: nOut },
              { name: 'bits', type: 2, i: 4 },
              { name: 'block_size', type: 2, i: bs },
            ],
          }));
          replaced.add(t.name!);
          if ((!pre || opts.tiePrecomputed) && !q4Written.has(t.name!)) q4Written.set(t.name!, { base, nBlocks: p.nBlocks, zpLen: p.zeroPoints.length, blockSize: bs });
          report.matmuls.push({ weight: t.name!, k, n: nOut });
          continue;
        }
      }
    } else if (domain === '' && n.op_type === 'Gather' && (opts.embeddings ?? true)) {
      const t = embeddingTable(n, inits, graphInputs, minElements);
      if (t) {
        const [rows, cols] = tensorDims(t);
        if (embedding === 'q4' && cols % headBlockSize === 0) {
          pendingGathers.push({ at: nodes.length, node: n, table: t });
          nodes.push(n); // replaced below
          continue;
        }
        const dq = dequantInt8(t, 0);
        nodes.push(createNode({ ...n, op_type: n.op_type!, input: [dq, n.input[1]] }));
        report.embeddings.push({ weight: t.name!, rows, cols, format: 'int8' });
        continue;
      }
    }
    nodes.push(n);
  }

  // q4 embeddings: GatherBlockQuantized (com.microsoft) on 4-bit codes [rows, cols/2], scales [rows, cols/block] and
  // packed zero points [rows, ceil(cols/block/2)] — the MatMulNBits layout of a [N = rows, K = cols] weight, so a
  // tied lm_head's initializers are read through Reshapes (constant-folded by onnxruntime) instead of stored twice.
  for (const { at, node: n, table: t } of pendingGathers) {
    const [rows, cols] = tensorDims(t);
    const nb = cols / headBlockSize;
    const zpLen = rows * Math.ceil(nb / 2);
    let tiedTo: string | undefined;
    let src: { base: string } | undefined;
    const eb = bytesPerElement(t.data_type!);
    for (const [wname, w] of q4Written) {
      const wt = inits.get(wname)!;
      const [k, nOut] = tensorDims(wt);
      if (k !== cols || nOut !== rows || w.blockSize !== headBlockSize || w.nBlocks !== nb || w.zpLen !== zpLen || wt.data_type !== t.data_type) continue;
      if (transposedEqual(tensorBytes(t), [rows, cols], tensorBytes(wt), [k, nOut], eb)) {
        tiedTo = wname;
        src = w;
        break;
      }
    }
    const base = `${prefix}/${t.name}/q4`;
    let data: string;
    let scales: string;
    let zps: string;
    if (src) {
      const shape = (name: string, dims: number[]): string => {
        newInits.push(createTensor({ name, dims: [dims.length], data_type: DataType.INT64, raw_data: new Uint8Array(BigInt64Array.from(dims.map(BigInt)).buffer) }));
        return name;
      };
      data = `${base}/data`;
      scales = `${base}/scales`;
      zps = `${base}/zero_points`;
      preNodes.push(createNode({ op_type: 'Reshape', name: `${data}/Reshape`, input: [`${src.base}/B`, shape(`${data}/shape`, [rows, cols / 2])], output: [data] }));
      preNodes.push(createNode({ op_type: 'Reshape', name: `${scales}/Reshape`, input: [`${src.base}/scales`, shape(`${scales}/shape`, [rows, nb])], output: [scales] }));
      preNodes.push(createNode({ op_type: 'Reshape', name: `${zps}/Reshape`, input: [`${src.base}/zero_points`, shape(`${zps}/shape`, [rows, Math.ceil(nb / 2)])], output: [zps] }));
    } else {
      const p = quantizeQ4(tensorToFloat32(t), rows, cols, headBlockSize, rangeSearch);
      data = `${base}/data`;
      scales = `${base}/scales`;
      zps = `${base}/zero_points`;
      newInits.push(createTensor({ name: data, dims: [rows, cols / 2], data_type: DataType.UINT8, raw_data: p.packed }));
      newInits.push(floatTensor(scales, [rows, nb], p.scales, t.data_type!));
      newInits.push(createTensor({ name: zps, dims: [rows, Math.ceil(nb / 2)], data_type: DataType.UINT8, raw_data: p.zeroPoints }));
    }
    nodes[at] = createNode({
      op_type: 'GatherBlockQuantized', domain: 'com.microsoft', name: `${n.name || base}_Q4`,
      input: [data, n.input[1], scales, zps], output: [...n.output], attribute: gbqAttrs(headBlockSize),
    });
    replaced.add(t.name!);
    report.embeddings.push({ weight: t.name!, rows, cols, format: tiedTo ? 'q4-tied' : 'q4', ...(tiedTo ? { tiedTo } : {}) });
  }

  // Drop initializers no remaining node reads (a weight also read elsewhere stays).
  const used = new Set<string>();
  for (const n of [...preNodes, ...nodes]) for (const i of n.input) used.add(i);
  const kept = g.initializer.filter((t) => !replaced.has(t.name!) || used.has(t.name!) || graphInputs.has(t.name));
  const graph: GraphProto = { ...g, node: [...preNodes, ...nodes], initializer: [...kept, ...newInits] };
  const out: ModelProto = { ...model, graph, opset_import: model.opset_import.map((o) => ({ ...o })) };
  if (kind === 'q4' && (report.matmuls.length || pendingGathers.length)) ensureOpset(out, 'com.microsoft', 1);
  if (report.matmuls.length === 0) {
    throw new DsaPruneError(`no MatMul with a float weight initializer found to quantize to ${kind}`, {
      hint: 'Quantize a float (fp32/fp16) model: the input already looks quantized or has no MatMul weights.',
    });
  }
  return { model: out, report };
}
