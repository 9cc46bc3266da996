/**
 * Sparse 4-bit storage that is still plain ONNX: the zeros of a pruned model count in the q4 file.
 *
 * q4 (`sparseQ4Model`): the com.microsoft MatMulNBits (bits 4) whose `B`, `scales` and `zero_points` are their own
 * initializers are taken in groups (consecutive weights, same block size, ≤ 2²¹ elements: one decoder per group, not
 * per weight); a group's `B`s ([N, n_blocks, block/2] uint8, two codes per byte, low nibble first) are concatenated
 * block by block and replaced by
 *
 *   - `bmask`  one bit per quantization block (set = the block holds a code ≠ its zero point); all-zero blocks are
 *              skipped entirely (no element bits, no codes, no scale);
 *   - `emask`  one bit per element of the kept blocks, preceded by one all-zero block (index 0 serves skipped blocks);
 *   - `codes`  the codes ≠ zero point of the kept blocks in order, two per byte (low nibble first), preceded by one
 *              dummy nibble (index 0 serves unset positions);
 *   - `scales` the kept blocks' scales, preceded by one 0, stored as fp16 when every value is exactly an fp16
 *              (quantizeQ4 picks fp16-representable scales) and Cast back, else in the original type;
 *
 * and standard ONNX nodes (opset ≥ 13) rebuild `B` and `scales` bit for bit:
 *
 *   bits(m)  = Cast<int32>(Reshape(Mod(BitShift(Unsqueeze(m), [0..7]), 2), [-1]))        (little-endian bits)
 *   blk      = CumSum(bits(bmask)) · bits(bmask)                                          [N·n_blocks]
 *   e        = Reshape(Gather(Reshape(bits(emask), [-1, block]), blk), [-1])              [N·n_blocks·block]
 *   c        = Gather(nibbles(codes), CumSum(e) · e)
 *   q        = zp + e · (c − zp)              (zp = the block's zero point, unpacked from zero_points)
 *   B        = Cast<uint8>(q[…, even] + 16 · q[…, odd])  reshaped to [N, n_blocks, block/2]
 *   scales   = Gather(Cast<float>(scales), blk)
 *   per weight: B_w = Reshape(Slice(B, start_w, end_w), [N, n_blocks, block/2]), scales_w = Slice(scales, …)
 *
 * (zp: the group's zero_points initializers, Concat-ed and unpacked to one nibble per block.) A weight that is not
 * sparse enough to pay keeps its B; only its fp32 scales become fp16 + Cast when that is lossless.
 * A position whose bit is unset gets its block's zero point, so the rebuilt `B` is the plain q4 file's `B` byte for
 * byte: weights that were exactly 0 dequantize to exactly 0, the others to the plain q4 values. Every input is a
 * constant, so onnxruntime constant-folds the nodes into initializers when the session is created (checked in
 * test/compress/sparse-q4.test.ts on the optimized graph), and MatMulNBits pre-packs the folded `B` as usual: plain
 * transformers.js loads the file with `dtype: 'q4'`, no plugin.
 *
 * q8 is not stored sparse (not implemented): `--quantize q8 --compress` writes plain q8.
 */
import { DsaPruneError } from '../errors.js';
import {
  attrInt, createNode, createTensor, DataType, float32ToFp16, fp16ToFloat32, tensorBytes, tensorDims, tensorToFloat32,
  type GraphProto, type ModelProto, type NodeProto, type TensorProto,
} from '../model/onnx.js';

/** Prefix of every node and initializer this module writes. */
export const SPARSE_Q_PREFIX = 'dsa_prune_sparseq/';
const META_KEY = 'dsa-prune.sparse-quantized';

export interface SparseQuantReport {
  kind: 'q4';
  /** One row per rewritten weight. */
  weights: {
    name: string; numel: number; blocks?: number; keptBlocks?: number; nonZeros: number;
    bytesBefore: number; bytesAfter: number;
  }[];
  /** Weights left as they were, with the reason (not sparse enough to pay, …). */
  skipped: { name: string; reason: string }[];
  bytesBefore: number;
  bytesAfter: number;
}

export interface SparseQuantOptions {
  /** Rewrite a weight only when its sparse form is at most this fraction of its plain bytes. Default 0.95. */
  maxRatio?: number;
  /** q4: at most this many weight elements per decoder group (bounds the temporary tensors while folding). Default 2²¹. */
  groupElements?: number;
}

function copyOf(b: Uint8Array): Uint8Array {
  const c = new Uint8Array(b.length);
  c.set(b);
  return c;
}

function int64Tensor(name: string, values: number[]): TensorProto {
  return createTensor({ name, dims: [values.length], data_type: DataType.INT64, raw_data: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
}

function setBit(mask: Uint8Array, i: number): void {
  mask[i >> 3] |= 1 << (i & 7);
}

/** The encoded form of a run of MatMulNBits blocks (exported for the tests' independent decoder). */
export interface SparseQ4Encoded {
  /** Number of quantization blocks (Σ N·n_blocks over the weights of the group). */
  blocks: number;
  blockSize: number;
  /** [ceil(blocks / 8)] bit per block, set = kept. */
  bmask: Uint8Array;
  /** [(kept + 1) · block / 8] element bits; the first block is all zero. */
  emask: Uint8Array;
  /** [ceil((nnz + 1) / 2)] packed nibbles; nibble 0 is a dummy 0. */
  codes: Uint8Array;
  keptBlocks: number;
  nonZeros: number;
  /** [kept + 1] scales of the kept blocks preceded by 0. */
  scales: Float32Array;
}

/** One zero point per block from MatMulNBits' packed zero_points (two per byte, low nibble first, rows padded). */
export function unpackZeroPoints(zeroPoints: Uint8Array, n: number, nBlocks: number): Uint8Array {
  const zpRow = Math.ceil(nBlocks / 2);
  const out = new Uint8Array(n * nBlocks);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < nBlocks; b++) {
      const zb = zeroPoints[r * zpRow + (b >> 1)];
      out[r * nBlocks + b] = b & 1 ? zb >> 4 : zb & 15;
    }
  }
  return out;
}

/**
 * Encode MatMulNBits B ([blocks, block/2] packed codes), scales and one zero point per block. A block is skipped when
 * every code equals its zero point and its scale is 0 (quantizeQ4 writes that for an all-zero block), so skipped
 * blocks rebuild exactly.
 */
export function encodeSparseQ4(B: Uint8Array, scales: Float32Array, zp: Uint8Array, blockSize: number): SparseQ4Encoded {
  const blob = blockSize / 2;
  const total = zp.length;
  if (B.length !== total * blob || scales.length !== total) {
    throw new DsaPruneError(`sparse q4: B/scales sizes (${B.length}, ${scales.length}) do not match ${total} blocks of ${blockSize}`, {
      hint: 'The q4 file is not in the MatMulNBits layout dsa-prune writes: write it again with --quantize q4.',
    });
  }
  const bmask = new Uint8Array(Math.ceil(total / 8));
  const eb = blockSize / 8;
  const emask = new Uint8Array((total + 1) * eb); // trimmed below
  const nib = new Uint8Array(total * blockSize + 1);
  const keepScale = new Float32Array(total + 1);
  let kept = 0;
  let nz = 0;
  for (let blk = 0; blk < total; blk++) {
    const z = zp[blk];
    const base = blk * blob;
    const at = (kept + 1) * eb;
    const nz0 = nz;
    for (let j = 0; j < blockSize; j++) {
      const byte = B[base + (j >> 1)];
      const q = j & 1 ? byte >> 4 : byte & 15;
      if (q !== z) {
        emask[at + (j >> 3)] |= 1 << (j & 7);
        nib[++nz] = q;
      }
    }
    if (nz === nz0 && scales[blk] === 0) continue;
    setBit(bmask, blk);
    kept++;
    keepScale[kept] = scales[blk];
  }
  const codes = new Uint8Array(Math.ceil((nz + 1) / 2));
  for (let i = 1; i <= nz; i++) codes[i >> 1] |= i & 1 ? nib[i] << 4 : nib[i];
  return {
    blocks: total, blockSize, bmask, emask: emask.slice(0, (kept + 1) * eb), codes, keptBlocks: kept, nonZeros: nz,
    scales: keepScale.slice(0, kept + 1),
  };
}

/** Inverse of encodeSparseQ4 in JS (what the ONNX nodes compute): B [blocks · block/2] and scales [blocks]. */
export function decodeSparseQ4(e: SparseQ4Encoded, zp: Uint8Array): { B: Uint8Array; scales: Float32Array } {
  const { blocks, blockSize } = e;
  const blob = blockSize / 2;
  const B = new Uint8Array(blocks * blob);
  const scales = new Float32Array(blocks);
  let k = 0;
  let c = 1;
  for (let blk = 0; blk < blocks; blk++) {
    const keep = (e.bmask[blk >> 3] >> (blk & 7)) & 1;
    if (keep) k++;
    scales[blk] = keep ? e.scales[k] : 0;
    for (let j = 0; j < blockSize; j++) {
      const set = keep && (e.emask[k * (blockSize / 8) + (j >> 3)] >> (j & 7)) & 1;
      let q = zp[blk];
      if (set) {
        q = c & 1 ? e.codes[c >> 1] >> 4 : e.codes[c >> 1] & 15;
        c++;
      }
      B[blk * blob + (j >> 1)] |= j & 1 ? q << 4 : q;
    }
  }
  return { B, scales };
}

/** True when every value survives a round trip through fp16 bit for bit. */
function fp16Exact(v: Float32Array): boolean {
  const back = fp16ToFloat32(float32ToFp16(v));
  for (let i = 0; i < v.length; i++) if (!Object.is(back[i], v[i])) return false;
  return true;
}

class Builder {
  readonly inits: TensorProto[] = [];
  readonly nodes: NodeProto[] = [];
  private shared = false;
  node(op: string, input: string[], output: string, attribute: NodeProto['attribute'] = [], name = output): string {
    this.nodes.push(createNode({ op_type: op, name, input, output: [output], attribute }));
    return output;
  }
  mark(): { nodes: number; inits: number; payload: number } {
    return { nodes: this.nodes.length, inits: this.inits.length, payload: 0 };
  }
  /** Approximate serialized bytes of the nodes and small initializers added since `m` (names, shapes, attributes). */
  overheadSince(m: { nodes: number; inits: number }): number {
    let b = 0;
    for (const n of this.nodes.slice(m.nodes)) b += 12 + (n.name ?? '').length + n.op_type!.length + [...n.input, ...n.output].reduce((a, s) => a + s.length + 2, 0) + 24 * n.attribute.length;
    for (const t of this.inits.slice(m.inits)) if (t.data_type === DataType.INT64) b += 12 + t.name!.length + tensorBytes(t).length;
    return b;
  }
  rollback(m: { nodes: number; inits: number }): void {
    this.nodes.length = m.nodes;
    this.inits.length = m.inits;
  }
  /** Shared constants (written once per graph). */
  c(name: 'shifts' | 'two' | 'sixteen' | 'axes1' | 'flat' | 'axis0' | 'i0' | 'i1'): string {
    this.shared = true;
    return `${SPARSE_Q_PREFIX}${name}`;
  }
  finishShared(): void {
    if (!this.shared) return;
    const p = SPARSE_Q_PREFIX;
    this.inits.push(createTensor({ name: `${p}shifts`, dims: [1, 8], data_type: DataType.UINT8, raw_data: Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]) }));
    this.inits.push(createTensor({ name: `${p}two`, dims: [1], data_type: DataType.UINT8, raw_data: Uint8Array.from([2]) }));
    this.inits.push(createTensor({ name: `${p}sixteen`, dims: [], data_type: DataType.INT32, raw_data: new Uint8Array(Int32Array.from([16]).buffer) }));
    this.inits.push(int64Tensor(`${p}axes1`, [1]));
    this.inits.push(int64Tensor(`${p}flat`, [-1]));
    this.inits.push(createTensor({ name: `${p}axis0`, dims: [], data_type: DataType.INT32, raw_data: new Uint8Array(4) }));
    this.inits.push(createTensor({ name: `${p}i0`, dims: [], data_type: DataType.INT64, raw_data: new Uint8Array(8) }));
    this.inits.push(createTensor({ name: `${p}i1`, dims: [], data_type: DataType.INT64, raw_data: new Uint8Array(BigInt64Array.from([1n]).buffer) }));
  }
  /** Little-endian bits of a uint8 tensor as int32 [8·len]. */
  bits(mask: string, base: string): string {
    const u = this.node('Unsqueeze', [mask, this.c('axes1')], `${base}_u`);
    const sh = this.node('BitShift', [u, this.c('shifts')], `${base}_sh`, [{ name: 'direction', type: 3, s: new TextEncoder().encode('RIGHT') }]);
    const md = this.node('Mod', [sh, this.c('two')], `${base}_mod`);
    const fl = this.node('Reshape', [md, this.c('flat')], `${base}_flat`);
    return this.node('Cast', [fl], `${base}_bits`, [{ name: 'to', type: 2, i: DataType.INT32 }]);
  }
  /** Nibbles (low first) of a uint8 tensor as int32 [2·len]. */
  nibbles(packed: string, base: string): string {
    const i = this.node('Cast', [packed], `${base}_i32`, [{ name: 'to', type: 2, i: DataType.INT32 }]);
    const l = this.node('Mod', [i, this.c('sixteen')], `${base}_lo`);
    const h = this.node('Div', [i, this.c('sixteen')], `${base}_hi`);
    const lu = this.node('Unsqueeze', [l, this.c('axes1')], `${base}_lo2`);
    const hu = this.node('Unsqueeze', [h, this.c('axes1')], `${base}_hi2`);
    const cat = this.node('Concat', [lu, hu], `${base}_cat`, [{ name: 'axis', type: 2, i: 1 }]);
    return this.node('Reshape', [cat, this.c('flat')], `${base}_nib`);
  }
  /** CumSum(x)·x: for 0/1 int32 x, the 1-based rank of each set element (0 where unset). */
  rank(x: string, base: string): string {
    const cs = this.node('CumSum', [x, this.c('axis0')], `${base}_cs`);
    return this.node('Mul', [cs, x], `${base}_rank`);
  }
}

function checkNBits(n: NodeProto, inits: Map<string, TensorProto>): { K: number; N: number; bs: number; B: TensorProto; S: TensorProto; Z: TensorProto } | string {
  const bits = attrInt(n, 'bits', 4);
  const K = attrInt(n, 'K', 0);
  const N = attrInt(n, 'N', 0);
  const bs = attrInt(n, 'block_size', 0);
  if (bits !== 4) return `bits=${bits} (only 4-bit MatMulNBits are stored sparse)`;
  if (!(bs >= 16 && (bs & (bs - 1)) === 0)) return `block_size=${bs} is not a power of two ≥ 16`;
  const B = inits.get(n.input[1]);
  const S = inits.get(n.input[2]);
  const Z = n.input[3] ? inits.get(n.input[3]) : undefined;
  if (!B || !S) return 'B or scales is not an initializer';
  if (!Z) return 'no zero_points initializer (symmetric MatMulNBits; write the file with dsa-prune --quantize q4)';
  if (Z.data_type !== DataType.UINT8) return `zero_points of type ${Z.data_type} (packed uint8 expected)`;
  if (B.data_type !== DataType.UINT8) return `B of type ${B.data_type} (uint8 expected)`;
  if (S.data_type !== DataType.FLOAT && S.data_type !== DataType.FLOAT16) return `scales of type ${S.data_type}`;
  const nb = Math.ceil(K / bs);
  const d = tensorDims(B);
  if (d.length !== 3 || d[0] !== N || d[1] !== nb || d[2] !== bs / 2) return `B has shape [${d.join(', ')}], expected [${N}, ${nb}, ${bs / 2}]`;
  if (n.input.length > 4 && n.input.slice(4).some((s) => s)) return 'g_idx / bias inputs are not supported';
  return { K, N, bs, B, S, Z };
}

interface Usable { n: NodeProto; K: number; N: number; bs: number; nb: number; B: TensorProto; S: TensorProto; Z: TensorProto }

/**
 * Rewrite the 4-bit MatMulNBits weights of `model` (inline data, as quantizeModel('q4') writes it) into the sparse
 * form. Weights are decoded in groups (same block size and scale type, up to `groupElements` weights each) so the graph
 * carries one decoder per group, not per weight, and the folding step's temporary tensors stay bounded. A group is
 * rewritten only when its sparse form, decoder included, is at most `maxRatio` of its plain bytes.
 * Returns a new ModelProto; the input is not modified. Throws DsaPruneError (before any work) when the graph has no
 * MatMulNBits weight the sparse form can take.
 */
export function sparseQ4Model(model: ModelProto, opts: SparseQuantOptions = {}): { model: ModelProto; report: SparseQuantReport } {
  const maxRatio = opts.maxRatio ?? 0.95;
  const groupElements = opts.groupElements ?? 1 << 21;
  const g = model.graph;
  const inits = new Map<string, TensorProto>();
  for (const t of g.initializer) if (t.name) inits.set(t.name, t);
  const graphInputs = new Set(g.input.map((i) => i.name));
  const report: SparseQuantReport = { kind: 'q4', weights: [], skipped: [], bytesBefore: 0, bytesAfter: 0 };
  const nbits = g.node.filter((n) => n.op_type === 'MatMulNBits' && n.domain === 'com.microsoft');
  const usable: Usable[] = [];
  const halfScales = new Map<NodeProto, string>(); // node → its scales initializer, now a Cast of fp16
  const reasons: string[] = [];
  const seenB = new Set<string>();
  for (const n of nbits) {
    const r = checkNBits(n, inits);
    let why = typeof r === 'string' ? r : undefined;
    if (typeof r !== 'string') {
      // The rebuilt B / scales keep the initializers' names, so other readers (a tied embedding's
      // GatherBlockQuantized via Reshape) read the same values.
      if (graphInputs.has(r.B.name) || graphInputs.has(r.S.name)) why = 'B or scales is a graph input';
      else if (seenB.has(r.B.name!) || seenB.has(r.S.name!)) why = 'B or scales is shared with another MatMulNBits';
      else if (Math.ceil(r.K / r.bs) % 2) why = `odd number of blocks per row (K=${r.K}, block ${r.bs})`;
      else {
        usable.push({ n, ...r, nb: Math.ceil(r.K / r.bs) });
        seenB.add(r.B.name!);
        seenB.add(r.S.name!);
      }
    }
    if (why) {
      report.skipped.push({ name: n.input[1] ?? n.name ?? '?', reason: why });
      reasons.push(`${n.name}: ${why}`);
    }
  }
  if (!usable.length) {
    const why = nbits.length ? reasons.slice(0, 3).join('; ') : 'the graph has no com.microsoft MatMulNBits node';
    throw new DsaPruneError(`sparse q4: no MatMulNBits weight this layout can store sparse (${why})`, {
      hint: 'Sparse q4 rewrites the 4-bit MatMulNBits weights dsa-prune writes (--quantize q4); this model has none it can take (its linears are not MatMul nodes with their own weight initializer). Save without --compress for plain q4, or use --quantize q8 --compress.',
    });
  }
  // Weights whose own sparse payload would not pay (a dense lm_head) keep their codes; only their fp32 scales are
  // stored as fp16 (+ Cast) when that is lossless.
  const dense: Usable[] = [];
  const sparse: Usable[] = [];
  for (const u of usable) {
    const raw = tensorBytes(u.B);
    const zp = unpackZeroPoints(copyOf(tensorBytes(u.Z)), u.N, u.nb);
    let nz = 0;
    for (let blk = 0; blk < zp.length; blk++) {
      for (let j = 0; j < u.bs; j++) {
        const byte = raw[blk * (u.bs / 2) + (j >> 1)];
        if ((j & 1 ? byte >> 4 : byte & 15) !== zp[blk]) nz++;
      }
    }
    const payload = zp.length * u.bs / 8 + nz / 2; // element bits + codes (scales cost the same either way)
    (payload <= maxRatio * raw.length ? sparse : dense).push(u);
  }
  const bld = new Builder();
  for (const u of dense) {
    const sc = tensorToFloat32(u.S);
    if (u.S.data_type === DataType.FLOAT && fp16Exact(sc)) {
      const name = `${SPARSE_Q_PREFIX}h/${u.S.name}`;
      bld.inits.push(createTensor({ name: `${name}/fp16`, dims: tensorDims(u.S), data_type: DataType.FLOAT16, raw_data: new Uint8Array(float32ToFp16(sc).buffer) }));
      bld.node('Cast', [`${name}/fp16`], u.S.name!, [{ name: 'to', type: 2, i: DataType.FLOAT }], `${name}/Cast`);
      halfScales.set(u.n, u.S.name!);
      report.skipped.push({ name: u.B.name!, reason: 'not sparse enough: codes kept as they are, scales stored as fp16' });
    } else report.skipped.push({ name: u.B.name!, reason: 'not sparse enough' });
  }
  // Groups: consecutive sparse weights with the same block size and scale type, bounded in elements.
  const groups: Usable[][] = [];
  for (const u of sparse) {
    const last = groups[groups.length - 1];
    const size = last ? last.reduce((a, w) => a + w.N * w.nb * w.bs, 0) : 0;
    if (last && last[0].bs === u.bs && last[0].S.data_type === u.S.data_type && size + u.N * u.nb * u.bs <= groupElements) last.push(u);
    else groups.push([u]);
  }
  const removed = new Set<string>();
  for (const name of halfScales.values()) removed.add(name);
  groups.forEach((grp, gi) => {
    const bs = grp[0].bs;
    const blob = bs / 2;
    const blocks = grp.reduce((a, w) => a + w.N * w.nb, 0);
    const B = new Uint8Array(blocks * blob);
    const scales = new Float32Array(blocks);
    const zp = new Uint8Array(blocks);
    let off = 0;
    let before = 0;
    for (const w of grp) {
      const raw = tensorBytes(w.B);
      B.set(raw, off * blob);
      scales.set(tensorToFloat32(w.S), off);
      zp.set(unpackZeroPoints(copyOf(tensorBytes(w.Z)), w.N, w.nb), off);
      off += w.N * w.nb;
      before += raw.length + tensorBytes(w.S).length;
    }
    const enc = encodeSparseQ4(B, scales, zp, bs);
    const floatScales = grp[0].S.data_type === DataType.FLOAT;
    const half = !floatScales || fp16Exact(enc.scales);
    const mark = bld.mark();
    const base = `${SPARSE_Q_PREFIX}${gi}`;
    const t = (suffix: string, dims: number[], data_type: number, raw: Uint8Array): string => {
      bld.inits.push(createTensor({ name: `${base}/${suffix}`, dims, data_type, raw_data: raw }));
      return `${base}/${suffix}`;
    };
    const i64 = (suffix: string, v: number[]): string => {
      bld.inits.push(int64Tensor(`${base}/${suffix}`, v));
      return `${base}/${suffix}`;
    };
    const bm = t('bmask', [enc.bmask.length], DataType.UINT8, enc.bmask);
    const em = t('emask', [enc.emask.length], DataType.UINT8, enc.emask);
    const cd = t('codes', [enc.codes.length], DataType.UINT8, enc.codes);
    const sc = half
      ? t('scales', [enc.scales.length], DataType.FLOAT16, new Uint8Array(float32ToFp16(enc.scales).buffer))
      : t('scales', [enc.scales.length], DataType.FLOAT, new Uint8Array(enc.scales.buffer));
    const blockShape = i64('eshape', [-1, bs]);
    const zero = i64('z0', [0]);
    // Block bits → 1-based rank of each kept block (0 for skipped ones).
    const bb = bld.node('Slice', [bld.bits(bm, `${base}/b`), zero, i64('nblk', [blocks])], `${base}/b_sl`);
    const blk = bld.rank(bb, `${base}/b`);
    // Element bits of every block (skipped blocks read the all-zero block 0).
    const e2 = bld.node('Reshape', [bld.bits(em, `${base}/e`), blockShape], `${base}/e_blk`);
    const eg = bld.node('Gather', [e2, blk], `${base}/e_full`, [{ name: 'axis', type: 2, i: 0 }]);
    const e = bld.node('Reshape', [eg, bld.c('flat')], `${base}/e`);
    const c = bld.node('Gather', [bld.nibbles(cd, `${base}/c`), bld.rank(e, `${base}/e`)], `${base}/c_full`, [{ name: 'axis', type: 2, i: 0 }]);
    // Zero point of every block (the weights' own zero_points, concatenated), broadcast over its elements.
    const zcat = grp.length > 1 ? bld.node('Concat', grp.map((w) => w.Z.name!), `${base}/zcat`, [{ name: 'axis', type: 2, i: 0 }]) : grp[0].Z.name!;
    const zc = bld.node('Reshape', [bld.nibbles(zcat, `${base}/z`), i64('zcol', [blocks, 1])], `${base}/z_col`);
    const d = bld.node('Sub', [bld.node('Reshape', [c, blockShape], `${base}/c_blk`), zc], `${base}/d`);
    const ed = bld.node('Mul', [bld.node('Reshape', [e, blockShape], `${base}/e_blk2`), d], `${base}/ed`);
    const q = bld.node('Reshape', [bld.node('Add', [zc, ed], `${base}/q`), i64('pairs', [blocks, blob, 2])], `${base}/q_pairs`);
    const lo = bld.node('Gather', [q, bld.c('i0')], `${base}/q_lo`, [{ name: 'axis', type: 2, i: 2 }]);
    const hi = bld.node('Gather', [q, bld.c('i1')], `${base}/q_hi`, [{ name: 'axis', type: 2, i: 2 }]);
    const byte = bld.node('Add', [lo, bld.node('Mul', [hi, bld.c('sixteen')], `${base}/q_hi16`)], `${base}/q_byte`);
    const allB = bld.node('Cast', [byte], `${base}/B`, [{ name: 'to', type: 2, i: DataType.UINT8 }]);
    // Scales of every block (skipped blocks read the leading 0), in the weights' type.
    const sf = half && floatScales ? bld.node('Cast', [sc], `${base}/s_f32`, [{ name: 'to', type: 2, i: DataType.FLOAT }]) : sc;
    const allS = bld.node('Gather', [sf, blk], `${base}/S`, [{ name: 'axis', type: 2, i: 0 }]);
    off = 0;
    grp.forEach((w, wi) => {
      const end = off + w.N * w.nb;
      const st = i64(`${wi}/st`, [off]);
      const en = i64(`${wi}/en`, [end]);
      const bSl = bld.node('Slice', [allB, st, en], `${base}/${wi}/Bs`);
      // Outputs named as the initializers they replace: every reader (MatMulNBits, a tied embedding) reads them.
      bld.node('Reshape', [bSl, i64(`${wi}/shape`, [w.N, w.nb, blob])], w.B.name!, [], `${base}/${wi}/B`);
      bld.node('Slice', [allS, st, en], w.S.name!, [], `${base}/${wi}/S`);
      off = end;
    });
    const after = enc.bmask.length + enc.emask.length + enc.codes.length + enc.scales.length * (half ? 2 : 4);
    const overhead = bld.overheadSince(mark);
    const names = grp.map((w) => w.B.name!);
    if (after + overhead > maxRatio * before) {
      bld.rollback(mark);
      for (const nm of names) report.skipped.push({ name: nm, reason: `sparse form with its decoder would be ${((after + overhead) / before * 100).toFixed(1)} % of the plain weights (not sparse enough, or weights too small)` });
      return;
    }
    for (const w of grp) {
      removed.add(w.B.name!);
      removed.add(w.S.name!);
    }
    report.weights.push({
      name: names.length > 1 ? `${names[0]} … (${names.length} weights)` : names[0], numel: blocks * bs, blocks,
      keptBlocks: enc.keptBlocks, nonZeros: enc.nonZeros, bytesBefore: before, bytesAfter: after + overhead,
    });
    report.bytesBefore += before;
    report.bytesAfter += after + overhead;
  });
  if (!report.weights.length && !halfScales.size) return { model, report };
  bld.finishShared();
  const graph: GraphProto = {
    ...g,
    node: [...bld.nodes, ...g.node],
    initializer: [...g.initializer.filter((t) => !removed.has(t.name!)), ...bld.inits],
  };
  const meta = ((model.metadata_props as { key?: string; value?: string }[] | undefined) ?? []).filter((p) => p.key !== META_KEY);
  meta.push({ key: META_KEY, value: JSON.stringify({ format: 'q4-blockmask-bitmask-nibbles-v1', groups: report.weights.length }) });
  return { model: { ...model, graph, metadata_props: meta }, report };
}

/** True when the graph holds decoders written by sparseQ4Model. */
export function isSparseQuantized(model: ModelProto): boolean {
  return model.graph.node.some((n) => (n.name ?? '').startsWith(SPARSE_Q_PREFIX));
}
