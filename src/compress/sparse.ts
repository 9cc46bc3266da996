/**
 * Compressed sparse storage that is still plain ONNX.
 *
 * Each sparse float weight initializer W is replaced by two initializers — `W.mask` (uint8, one bit per element,
 * little-endian bit order: element i is bit i%8 of byte i/8, set when the element's bit pattern is not +0) and
 * `W.values` (the set elements in order, preceded by one +0) — and a few standard ONNX nodes (opset ≥ 13) that rebuild
 * W under its original name:
 *
 *   bits = Mod(BitShift(Unsqueeze(mask), [0..7]), 2) → Reshape → Slice(numel) → Cast int32
 *   W    = Reshape(Gather(values, CumSum(bits) · bits), dims)
 *
 * Every input of these nodes is a constant, so onnxruntime folds them into a dense initializer when the session is
 * created: any onnxruntime (and transformers.js without the plugin) loads the file, and the weights are bit-identical.
 * A tied lm_head that is exactly the transpose of the embedding table becomes a Transpose of it. With `int8: true`
 * int8 initializers (the q8 file's weights, zero point 0) are stored the same way (sparse q8).
 * densifyModel() undoes all of it in JS (for the plugin, which needs dense initializers to find the linears).
 */
import {
  bytesPerElement, createNode, createTensor, DataType, tensorBytes, tensorDims,
  type GraphProto, type ModelProto, type NodeProto, type TensorProto,
} from '../model/onnx.js';

// The decoding side (densify on load) lives in model/, which loads models and stands on nothing above it.
import { copyOf, decodeSparse, densifyModel, isCompressed, META_KEY, SPARSE_PREFIX } from '../model/densify.js';

export { decodeSparse, densifyModel, isCompressed, SPARSE_PREFIX };

export interface CompressOptions {
  /** Only tensors with at least this fraction of zeros are stored sparse (others stay dense). Default 0.1. */
  minZeroFraction?: number;
  /** Only tensors with at least this many elements. Default 4096. */
  minElements?: number;
  /** Replace a weight that is exactly the transpose of another initializer (tied lm_head) by a Transpose. Default true. */
  dedupTransposed?: boolean;
  /** Also store int8 initializers (the q8 file's weights: zero point 0, so a pruned weight is code 0) sparse. Default false. */
  int8?: boolean;
}

export interface CompressReport {
  sparse: { name: string; numel: number; nonZeros: number; bytesBefore: number; bytesAfter: number }[];
  transposed: { name: string; of: string }[];
  bytesBefore: number;
  bytesAfter: number;
}

/** Bitmask (bit set = element's bit pattern is not +0) and the set elements' raw bytes. */
export function encodeSparse(raw: Uint8Array, elemBytes: 1 | 2 | 4): { mask: Uint8Array; values: Uint8Array; nonZeros: number } {
  const numel = raw.length / elemBytes;
  const mask = new Uint8Array(Math.ceil(numel / 8));
  const copy = new Uint8Array(raw.length);
  copy.set(raw);
  const words = elemBytes === 4 ? new Uint32Array(copy.buffer) : elemBytes === 2 ? new Uint16Array(copy.buffer) : copy;
  let nz = 0;
  for (let i = 0; i < numel; i++) {
    if (words[i] !== 0) {
      mask[i >> 3] |= 1 << (i & 7);
      nz++;
    }
  }
  // values = [+0, v_1 … v_nz]: index 0 serves every unset position.
  const vals = elemBytes === 4 ? new Uint32Array(nz + 1) : elemBytes === 2 ? new Uint16Array(nz + 1) : new Uint8Array(nz + 1);
  let j = 1;
  for (let i = 0; i < numel; i++) if (words[i] !== 0) vals[j++] = words[i];
  return { mask, values: new Uint8Array(vals.buffer), nonZeros: nz };
}

function int64Tensor(name: string, values: number[]): TensorProto {
  return createTensor({ name, dims: [values.length], data_type: DataType.INT64, raw_data: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
}

/** True when a [r × c] and b [c × r] (raw little-endian, `eb` bytes per element) are transposes bit for bit. */
export function transposedEqual(a: Uint8Array, ad: number[], b: Uint8Array, bd: number[], eb: number): boolean {
  if (ad.length !== 2 || bd.length !== 2 || ad[0] !== bd[1] || ad[1] !== bd[0] || a.length !== b.length) return false;
  const [r, c] = ad;
  const A = eb === 4 ? new Uint32Array(copyOf(a).buffer) : new Uint16Array(copyOf(a).buffer);
  const B = eb === 4 ? new Uint32Array(copyOf(b).buffer) : new Uint16Array(copyOf(b).buffer);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) if (A[i * c + j] !== B[j * r + i]) return false;
  return true;
}

/**
 * Rewrite `model` (inline data) so that sparse float initializers are stored as bitmask + values with ONNX decode
 * nodes. Returns a new ModelProto; the input is not modified.
 */
export function compressModel(model: ModelProto, opts: CompressOptions = {}): { model: ModelProto; report: CompressReport } {
  const minZero = opts.minZeroFraction ?? 0.1;
  const minEl = opts.minElements ?? 4096;
  const g = model.graph;
  const graphInputs = new Set(g.input.map((i) => i.name));
  const report: CompressReport = { sparse: [], transposed: [], bytesBefore: 0, bytesAfter: 0 };
  const kept: TensorProto[] = [];
  const added: TensorProto[] = [];
  const decoders: NodeProto[] = [];
  const tied: NodeProto[] = [];
  const shifts = `${SPARSE_PREFIX}shifts`;
  const two = `${SPARSE_PREFIX}two`;
  const axes1 = `${SPARSE_PREFIX}axes1`;
  const axis0 = `${SPARSE_PREFIX}axis0`;
  const flat = `${SPARSE_PREFIX}flat`;
  const zero = `${SPARSE_PREFIX}zero`;
  let shared = false;

  const floats = g.initializer.filter((t) => (t.data_type === DataType.FLOAT || t.data_type === DataType.FLOAT16 || (opts.int8 === true && t.data_type === DataType.INT8)) && !graphInputs.has(t.name));
  const rawOf = new Map<string, Uint8Array>();
  for (const t of floats) rawOf.set(t.name!, tensorBytes(t));
  const transposedOf = new Map<string, string>();
  if (opts.dedupTransposed ?? true) {
    const big = floats.filter((t) => t.data_type !== DataType.INT8 && tensorDims(t).length === 2 && tensorDims(t).reduce((a, b) => a * b, 1) >= minEl);
    // The later tensor (lm_head) becomes a Transpose of the earlier one (embedding table).
    for (let j = 0; j < big.length; j++) {
      for (let i = 0; i < j; i++) {
        const a = big[i];
        const b = big[j];
        if (transposedOf.has(a.name!) || transposedOf.has(b.name!) || a.data_type !== b.data_type) continue;
        if (transposedEqual(rawOf.get(a.name!)!, tensorDims(a), rawOf.get(b.name!)!, tensorDims(b), bytesPerElement(a.data_type!))) {
          transposedOf.set(b.name!, a.name!);
        }
      }
    }
  }

  for (const t of g.initializer) {
    const raw = rawOf.get(t.name!);
    if (!raw) {
      kept.push(t);
      continue;
    }
    const dims = tensorDims(t);
    const eb = bytesPerElement(t.data_type!) as 1 | 2 | 4;
    const numel = raw.length / eb;
    report.bytesBefore += raw.length;
    const of = transposedOf.get(t.name!);
    if (of) {
      tied.push(createNode({
        op_type: 'Transpose', name: `${SPARSE_PREFIX}${t.name}/Transpose`, input: [of], output: [t.name!],
        attribute: [{ name: 'perm', type: 7, ints: [1, 0] }],
      }));
      report.transposed.push({ name: t.name!, of });
      continue;
    }
    if (numel < minEl) {
      kept.push(t);
      report.bytesAfter += raw.length;
      continue;
    }
    const { mask, values, nonZeros } = encodeSparse(raw, eb);
    const after = mask.length + values.length;
    if ((numel - nonZeros) / numel < minZero || after >= raw.length) {
      kept.push(t);
      report.bytesAfter += raw.length;
      continue;
    }
    shared = true;
    const base = `${SPARSE_PREFIX}${t.name}`;
    added.push(createTensor({ name: `${base}/mask`, dims: [mask.length], data_type: DataType.UINT8, raw_data: mask }));
    added.push(createTensor({ name: `${base}/values`, dims: [nonZeros + 1], data_type: t.data_type, raw_data: values }));
    added.push(int64Tensor(`${base}/numel`, [numel]));
    added.push(int64Tensor(`${base}/dims`, dims));
    const nd = (op: string, input: string[], output: string, attribute: NodeProto['attribute'] = []): void => {
      decoders.push(createNode({ op_type: op, name: `${base}/${op}_${decoders.length}`, input, output: [output], attribute }));
    };
    nd('Unsqueeze', [`${base}/mask`, axes1], `${base}/m2`);
    nd('BitShift', [`${base}/m2`, shifts], `${base}/sh`, [{ name: 'direction', type: 3, s: new TextEncoder().encode('RIGHT') }]);
    nd('Mod', [`${base}/sh`, two], `${base}/b8`);
    nd('Reshape', [`${base}/b8`, flat], `${base}/bflat`);
    nd('Slice', [`${base}/bflat`, zero, `${base}/numel`, axis0], `${base}/bits8`);
    nd('Cast', [`${base}/bits8`], `${base}/bits`, [{ name: 'to', type: 2, i: DataType.INT32 }]);
    nd('CumSum', [`${base}/bits`, `${SPARSE_PREFIX}axis0_i32`], `${base}/cs`);
    nd('Mul', [`${base}/cs`, `${base}/bits`], `${base}/idx`);
    nd('Gather', [`${base}/values`, `${base}/idx`], `${base}/flatw`, [{ name: 'axis', type: 2, i: 0 }]);
    nd('Reshape', [`${base}/flatw`, `${base}/dims`], t.name!);
    report.sparse.push({ name: t.name!, numel, nonZeros, bytesBefore: raw.length, bytesAfter: after });
    report.bytesAfter += after;
  }
  if (shared) {
    added.push(createTensor({ name: shifts, dims: [1, 8], data_type: DataType.UINT8, raw_data: Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]) }));
    added.push(createTensor({ name: two, dims: [1], data_type: DataType.UINT8, raw_data: Uint8Array.from([2]) }));
    added.push(int64Tensor(axes1, [1]));
    added.push(int64Tensor(axis0, [0]));
    added.push(int64Tensor(flat, [-1]));
    added.push(int64Tensor(zero, [0]));
    added.push(createTensor({ name: `${SPARSE_PREFIX}axis0_i32`, dims: [], data_type: DataType.INT32, raw_data: new Uint8Array(4) }));
  }
  const graph: GraphProto = { ...g, node: [...decoders, ...tied, ...g.node], initializer: [...kept, ...added] };
  const meta = ((model.metadata_props as { key?: string; value?: string }[] | undefined) ?? []).filter((p) => p.key !== META_KEY);
  meta.push({ key: META_KEY, value: JSON.stringify({ format: 'bitmask-values-v1', sparse: report.sparse.length, transposed: report.transposed.length }) });
  return { model: { ...model, graph, metadata_props: meta }, report };
}

