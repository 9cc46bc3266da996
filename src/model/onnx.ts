/**
 * ONNX model I/O on protobufjs with the generated ONNX schema (proto/onnx.js, from the vendored, pinned
 * proto/onnx.proto by `npm run gen:onnx`): decode, encode, tensor data in and out, external data. Knows nothing about
 * pruning.
 */
import protobuf from 'protobufjs/minimal.js';
import Long from 'long';
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import path from 'node:path';
import { DsaPruneError } from '../errors.js';
import { onnx } from './proto/onnx.js';

// protobufjs needs Long for exact int64 values (initializer offsets beyond 2^53 in external data).
protobuf.util.Long = Long;
protobuf.configure();

const ModelType = onnx.ModelProto;
const TensorType = onnx.TensorProto;
const NodeType = onnx.NodeProto;
const GraphType = onnx.GraphProto;

/* Decoded messages keep the schema's snake_case names. Only what the project reads is typed; the rest round-trips. */
export type Int64 = number | Long;
export interface StringStringEntry { key?: string; value?: string }
export interface TensorProto {
  name?: string;
  dims?: Int64[];
  data_type?: number;
  raw_data?: Uint8Array;
  float_data?: number[];
  int32_data?: number[];
  int64_data?: Int64[];
  double_data?: number[];
  external_data?: StringStringEntry[];
  data_location?: number;
  [k: string]: unknown;
}
export interface AttributeProto {
  name?: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  ints?: Int64[];
  floats?: number[];
  graphs?: GraphProto[];
  [k: string]: unknown;
}
export interface NodeProto {
  input: string[];
  output: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  attribute: AttributeProto[];
  [k: string]: unknown;
}
export interface ValueInfoProto {
  name?: string;
  type?: { tensor_type?: { elem_type?: number; shape?: { dim?: { dim_value?: Int64; dim_param?: string }[] } } };
  [k: string]: unknown;
}
export interface GraphProto {
  node: NodeProto[];
  name?: string;
  initializer: TensorProto[];
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  value_info: ValueInfoProto[];
  [k: string]: unknown;
}
export interface ModelProto {
  ir_version?: Int64;
  opset_import: { domain?: string; version?: Int64 }[];
  graph: GraphProto;
  [k: string]: unknown;
}

export const DataType = {
  FLOAT: 1, UINT8: 2, INT8: 3, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11, BFLOAT16: 16,
} as const;

export function toNumber(v: Int64 | undefined): number {
  if (v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

/** Decode ONNX bytes; `where` names the file for the error message. */
export function decodeModel(bytes: Uint8Array, where = 'model'): ModelProto {
  let m: ModelProto;
  try {
    m = ModelType.decode(bytes) as unknown as ModelProto;
  } catch (e) {
    throw new DsaPruneError(`${where} is not a valid ONNX file (${(e as Error).message})`, {
      hint: 'The file is corrupt or truncated: export or download the model again.',
      cause: e,
    });
  }
  if (!m.graph || !m.graph.node || m.graph.node.length === 0) {
    throw new DsaPruneError(`${where} is not a valid ONNX model: it has no graph nodes`, {
      hint: 'The file is corrupt, truncated or not an ONNX model.',
    });
  }
  return m;
}

export function encodeModel(m: ModelProto): Uint8Array {
  return ModelType.encode(m as unknown as onnx.IModelProto).finish();
}

export function encodeTensor(t: TensorProto): Uint8Array {
  return TensorType.encode(t as unknown as onnx.ITensorProto).finish();
}

/** Deep copy of a graph through the codec (for building derived graphs without touching the original). */
export function cloneGraph(g: GraphProto): GraphProto {
  return GraphType.decode(GraphType.encode(g as unknown as onnx.IGraphProto).finish()) as unknown as GraphProto;
}

export function createNode(n: Partial<NodeProto> & { op_type: string }): NodeProto {
  return NodeType.fromObject({ input: [], output: [], attribute: [], ...n }) as unknown as NodeProto;
}

export function createTensor(t: TensorProto): TensorProto {
  return TensorType.fromObject(t) as unknown as TensorProto;
}

export function readModelFile(file: string): ModelProto {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new DsaPruneError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
      hint: 'Check the path: a transformers.js model folder has onnx/model.onnx (or model_fp16.onnx, …).',
      cause: e,
    });
  }
  return decodeModel(bytes, file);
}

export function tensorDims(t: TensorProto): number[] {
  return (t.dims ?? []).map(toNumber);
}

export function isExternal(t: TensorProto): boolean {
  return t.data_location === 1 || (t.external_data?.length ?? 0) > 0;
}

/**
 * Make `t` read its bytes from `location` (relative to the model's folder, or absolute for a scratch file) at
 * [offset, offset + length): the inline data fields go, `data_location` says external. In place; the inverse of
 * inlining. Written by the external-data saver and the weight spill alike.
 */
export function pointAtExternal(t: TensorProto, location: string, offset: number, length: number): void {
  delete t.raw_data;
  delete t.float_data;
  delete t.int32_data;
  delete t.int64_data;
  delete t.double_data;
  t.data_location = 1;
  t.external_data = [
    { key: 'location', value: location },
    { key: 'offset', value: String(offset) },
    { key: 'length', value: String(length) },
  ];
}

export function externalInfo(t: TensorProto): { location: string; offset: number; length?: number } {
  const kv = new Map((t.external_data ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = kv.get('location');
  if (!location) throw new DsaPruneError(`initializer ${t.name} is external but names no location`);
  return {
    location,
    offset: kv.has('offset') ? Number(kv.get('offset')) : 0,
    length: kv.has('length') ? Number(kv.get('length')) : undefined,
  };
}

/** Raw little-endian bytes of a tensor, from raw_data, the typed data fields, or an external file next to `baseDir`. */
export function tensorBytes(t: TensorProto, baseDir?: string, readExternal?: (file: string, offset: number, length: number) => Uint8Array): Uint8Array {
  const numel = tensorDims(t).reduce((a, b) => a * b, 1);
  if (isExternal(t)) {
    const { location, offset, length } = externalInfo(t);
    if (!baseDir && !readExternal) throw new DsaPruneError(`initializer ${t.name} lives in external file ${location}, but the model folder is unknown`);
    const len = length ?? numel * bytesPerElement(t.data_type ?? 0);
    if (readExternal) return readExternal(location, offset, len);
    const buf = readFileSync(path.resolve(baseDir!, location)); // absolute: a scratch file (spill.ts)
    if (offset + len > buf.length) {
      throw new DsaPruneError(`external data ${location} is truncated: ${t.name} needs bytes ${offset}..${offset + len}, file has ${buf.length}`, {
        hint: 'Copy the model folder again: its .onnx_data file is incomplete.',
      });
    }
    return buf.subarray(offset, offset + len);
  }
  if (t.raw_data && t.raw_data.length > 0) return t.raw_data;
  switch (t.data_type) {
    case DataType.FLOAT:
      return new Uint8Array(Float32Array.from(t.float_data ?? []).buffer);
    case DataType.DOUBLE:
      return new Uint8Array(Float64Array.from(t.double_data ?? []).buffer);
    case DataType.FLOAT16:
    case DataType.BFLOAT16: {
      // fp16 in int32_data: one 16-bit pattern per int32 entry.
      return new Uint8Array(Uint16Array.from(t.int32_data ?? []).buffer);
    }
    case DataType.INT32:
      return new Uint8Array(Int32Array.from(t.int32_data ?? []).buffer);
    case DataType.INT64:
      return new Uint8Array(BigInt64Array.from((t.int64_data ?? []).map((v) => BigInt(v.toString()))).buffer);
    default:
      return new Uint8Array(0);
  }
}

export function bytesPerElement(dataType: number): number {
  switch (dataType) {
    case DataType.FLOAT: case DataType.INT32: return 4;
    case DataType.FLOAT16: case DataType.BFLOAT16: return 2;
    case DataType.DOUBLE: case DataType.INT64: return 8;
    case DataType.UINT8: case DataType.INT8: case DataType.BOOL: return 1;
    default: return 0;
  }
}

/** Copy a byte view into a fresh, aligned buffer (raw_data slices can sit at odd offsets). */
function aligned(bytes: Uint8Array): ArrayBuffer {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out.buffer;
}

/**
 * A reader of byte ranges of external data files next to `baseDir` that reads only the requested slice (never the whole
 * file), for tensorBytes / tensorToFloat32 on models with multi-GB `.onnx_data`.
 */
export function externalSliceReader(baseDir: string): (file: string, offset: number, length: number) => Uint8Array {
  return (file, offset, length) => {
    const full = path.resolve(baseDir, file); // absolute: a scratch file (spill.ts)
    let fd: number;
    try {
      fd = openSync(full, 'r');
    } catch (e) {
      throw new DsaPruneError(`cannot read external data file ${full}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
        hint: 'The .onnx_data file must sit next to the .onnx file: copy the whole model folder.',
        cause: e,
      });
    }
    try {
      const size = fstatSync(fd).size;
      if (offset + length > size) {
        throw new DsaPruneError(`external data ${full} is truncated: needs bytes ${offset}..${offset + length}, file has ${size}`, {
          hint: 'Copy the model folder again: its .onnx_data file is incomplete.',
        });
      }
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), offset + done);
        if (n <= 0) break;
        done += n;
      }
      return out;
    } finally {
      closeSync(fd);
    }
  };
}

/** A float tensor's values as float32 (fp16 and bf16 converted). External data is read slice by slice when `baseDir` is given. */
export function tensorToFloat32(t: TensorProto, baseDir?: string): Float32Array {
  const sliced = Boolean(baseDir) && isExternal(t);
  const bytes = tensorBytes(t, baseDir, sliced ? externalSliceReader(baseDir!) : undefined);
  // A slice read from an external file is a fresh buffer of its own: used as is (no second copy of the weight).
  const own = sliced && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.byteLength % 4 === 0;
  switch (t.data_type) {
    case DataType.FLOAT:
      return new Float32Array(own ? (bytes.buffer as ArrayBuffer) : aligned(bytes));
    case DataType.FLOAT16:
      return fp16ToFloat32(new Uint16Array(aligned(bytes)));
    case DataType.BFLOAT16: {
      const u16 = new Uint16Array(aligned(bytes));
      const u32 = new Uint32Array(u16.length);
      for (let i = 0; i < u16.length; i++) u32[i] = u16[i] << 16;
      return new Float32Array(u32.buffer);
    }
    case DataType.DOUBLE:
      return Float32Array.from(new Float64Array(aligned(bytes)));
    default:
      throw new DsaPruneError(`initializer ${t.name} has data type ${t.data_type}, not a float type`);
  }
}

/** float32 values as the raw bytes of tensor `t`'s dtype (float32: a view of `values`; float16: converted). */
export function float32ToTensorBytes(t: TensorProto, values: Float32Array): Uint8Array {
  switch (t.data_type) {
    case DataType.FLOAT:
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    case DataType.FLOAT16:
      return new Uint8Array(float32ToFp16(values).buffer);
    default:
      throw new DsaPruneError(`cannot write initializer ${t.name}: data type ${t.data_type} is not float32 or float16`);
  }
}

/** Store float32 values into a tensor in its own dtype, inline as raw_data (external data is re-laid out at save). */
export function setTensorFloat32(t: TensorProto, values: Float32Array): void {
  t.raw_data = float32ToTensorBytes(t, values);
  delete t.float_data;
  delete t.int32_data;
  delete t.external_data;
  delete t.data_location;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function fp16ToFloat32(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const x = h[i];
    const sign = (x & 0x8000) << 16;
    const exp = (x >> 10) & 0x1f;
    const mant = x & 0x3ff;
    if (exp === 0) {
      // subnormal or zero
      const v = mant * 5.960464477539063e-8; // 2^-24
      out[i] = sign ? -v : v;
    } else if (exp === 31) {
      u32[0] = sign | 0x7f800000 | (mant << 13);
      out[i] = f32[0];
    } else {
      u32[0] = sign | ((exp + 112) << 23) | (mant << 13);
      out[i] = f32[0];
    }
  }
  return out;
}

/** float32 → fp16 with round-to-nearest-even (exact zeros stay exact zeros, which pruning relies on). */
export function float32ToFp16(v: Float32Array): Uint16Array {
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) {
    f32[0] = v[i];
    const x = u32[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      out[i] = sign | h;
    } else {
      let h = (e << 10) | (mant >> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
      out[i] = sign | h;
    }
  }
  return out;
}

/** Attribute lookup helpers. */
export function attrInt(n: NodeProto, name: string, dflt: number): number {
  const a = n.attribute.find((x) => x.name === name);
  return a?.i !== undefined ? toNumber(a.i) : dflt;
}

/* The hand-typed views above agree with the generated types on every field they name (a compile-time check). */
type Assignable<A, B> = [A] extends [B] ? true : false;
/** The declared fields of a view, without its `[k: string]: unknown` catch-all. */
type Known<T> = { [K in keyof T as string extends K ? never : K]: T[K] };
const viewsAgree: [
  Assignable<Known<TensorProto>, onnx.ITensorProto>,
  Assignable<Known<NodeProto>, onnx.INodeProto>,
  Assignable<Known<AttributeProto>, onnx.IAttributeProto>,
  Assignable<Known<GraphProto>, onnx.IGraphProto>,
  Assignable<Known<ModelProto>, onnx.IModelProto>,
] = [true, true, true, true, true];
void viewsAgree;
