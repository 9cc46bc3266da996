/**
 * The loading side of compressed sparse storage (src/compress/sparse.ts writes it): decode bitmask + values pairs and
 * tied Transposes back into dense initializers. In model/ because loading a compressed folder needs it and model/
 * stands on nothing above it; compress/ re-exports these.
 */
import { DsaPruneError } from '../errors.js';
import { bytesPerElement, createTensor, tensorBytes, tensorDims, type ModelProto, type NodeProto, type TensorProto } from './onnx.js';

/** Marker in node names and metadata: nodes under this prefix are the decoders compress/sparse.ts writes. */
export const SPARSE_PREFIX = 'dsa_prune_sparse/';
export const META_KEY = 'dsa-prune.compressed';

/** Inverse of encodeSparse: the dense raw bytes. */
export function decodeSparse(mask: Uint8Array, values: Uint8Array, numel: number, elemBytes: 1 | 2 | 4): Uint8Array {
  const v = new Uint8Array(values.length);
  v.set(values);
  const vals = elemBytes === 4 ? new Uint32Array(v.buffer) : elemBytes === 2 ? new Uint16Array(v.buffer) : v;
  const out = elemBytes === 4 ? new Uint32Array(numel) : elemBytes === 2 ? new Uint16Array(numel) : new Uint8Array(numel);
  let j = 1;
  for (let i = 0; i < numel; i++) {
    if (mask[i >> 3] & (1 << (i & 7))) {
      if (j >= vals.length) throw new DsaPruneError('compressed weight is corrupt: the mask has more set bits than stored values', { hint: 'Save the model again.' });
      out[i] = vals[j++];
    }
  }
  return new Uint8Array(out.buffer);
}

/** A copy with its own, exactly sized buffer (Node Buffers from protobuf share a pool; .slice() would not copy). */
export function copyOf(b: Uint8Array): Uint8Array {
  const c = new Uint8Array(b.length);
  c.set(b);
  return c;
}

/** True when the graph holds decoders written by compressModel. */
export function isCompressed(model: ModelProto): boolean {
  return model.graph.node.some((n) => (n.name ?? '').startsWith(SPARSE_PREFIX));
}

/**
 * Restore dense initializers in place: decode every bitmask + values pair and tied Transpose written by compressModel,
 * remove the decoder nodes and their helper initializers. Returns the number of tensors restored (0 = nothing to do).
 * Meant for the plugin's loading path (attachModel), which finds linears through their weight initializers.
 */
export function densifyModel(model: ModelProto): number {
  const g = model.graph;
  if (!isCompressed(model)) return 0;
  const inits = new Map<string, TensorProto>();
  for (const t of g.initializer) if (t.name) inits.set(t.name, t);
  const restored: TensorProto[] = [];
  const transposes: NodeProto[] = [];
  for (const n of g.node) {
    const name = n.name ?? '';
    if (!name.startsWith(SPARSE_PREFIX)) continue;
    if (n.op_type === 'Transpose') transposes.push(n);
    else if (n.op_type === 'Reshape' && n.input[1]?.endsWith('/dims')) {
      const base = n.input[1].slice(0, -'/dims'.length);
      const mask = inits.get(`${base}/mask`);
      const values = inits.get(`${base}/values`);
      const dimsT = inits.get(`${base}/dims`);
      if (!mask || !values || !dimsT) throw new DsaPruneError(`compressed weight ${n.output[0]} is missing its mask or values`, { hint: 'The file is corrupt: save the model again.' });
      const dims = Array.from(new BigInt64Array(copyOf(tensorBytes(dimsT)).buffer), Number);
      const numel = dims.reduce((a, b) => a * b, 1);
      const eb = bytesPerElement(values.data_type!) as 1 | 2 | 4;
      const raw = decodeSparse(tensorBytes(mask), tensorBytes(values), numel, eb);
      restored.push(createTensor({ name: n.output[0], dims, data_type: values.data_type, raw_data: raw }));
    }
  }
  const byName = new Map(restored.map((t) => [t.name!, t]));
  for (const n of transposes) {
    const src = byName.get(n.input[0]) ?? inits.get(n.input[0]);
    if (!src) throw new DsaPruneError(`tied weight ${n.output[0]} refers to missing ${n.input[0]}`, { hint: 'The file is corrupt: save the model again.' });
    const [r, c] = tensorDims(src);
    const eb = bytesPerElement(src.data_type!);
    const s = tensorBytes(src);
    const d = new Uint8Array(s.length);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) d.set(s.subarray((i * c + j) * eb, (i * c + j + 1) * eb), (j * r + i) * eb);
    const t = createTensor({ name: n.output[0], dims: [c, r], data_type: src.data_type, raw_data: d });
    restored.push(t);
    byName.set(t.name!, t);
  }
  g.node = g.node.filter((n) => !(n.name ?? '').startsWith(SPARSE_PREFIX));
  g.initializer = [...g.initializer.filter((t) => !(t.name ?? '').startsWith(SPARSE_PREFIX)), ...restored];
  const meta = model.metadata_props as { key?: string }[] | undefined;
  if (meta) model.metadata_props = meta.filter((p) => p.key !== META_KEY);
  return restored.length;
}
