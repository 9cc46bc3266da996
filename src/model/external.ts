/**
 * Laying out initializers as ONNX external data (`model.onnx_data`) and back inline, without touching the decoded
 * model that the PrunableModel keeps editing: both return shallow copies.
 */
import { closeSync, openSync, writeSync, fsyncSync } from 'node:fs';
import {
  bytesPerElement, encodeModel, externalInfo, externalSliceReader, isExternal, pointAtExternal, tensorBytes, tensorDims,
  type GraphProto, type ModelProto, type TensorProto,
} from './onnx.js';

/** protobuf cannot encode a message of 2 GiB or more; stay well below. */
export const PROTOBUF_LIMIT = 2 ** 31 - 64 * 2 ** 20;

/** Bytes a tensor's data takes, inline or external. */
export function tensorDataSize(t: TensorProto): number {
  if (isExternal(t)) {
    const { length } = externalInfo(t);
    return length ?? tensorDims(t).reduce((a, b) => a * b, 1) * bytesPerElement(t.data_type ?? 0);
  }
  if (t.raw_data) return t.raw_data.length;
  return tensorDims(t).reduce((a, b) => a * b, 1) * Math.max(1, bytesPerElement(t.data_type ?? 0));
}

/** Total initializer bytes of the main graph (what an inline encoding would hold). */
export function initializerBytes(m: ModelProto): number {
  return (m.graph.initializer ?? []).reduce((a, t) => a + tensorDataSize(t), 0);
}

export function hasExternalData(m: ModelProto): boolean {
  return (m.graph.initializer ?? []).some(isExternal);
}

/** External data file names the main graph refers to, in order of first use. */
export function externalFiles(m: ModelProto): string[] {
  const files: string[] = [];
  for (const t of m.graph.initializer ?? []) {
    if (!isExternal(t)) continue;
    const { location } = externalInfo(t);
    if (!files.includes(location)) files.push(location);
  }
  return files;
}

function withInitializers(m: ModelProto, initializer: TensorProto[]): ModelProto {
  const graph: GraphProto = { ...m.graph, initializer };
  return { ...m, graph } as ModelProto;
}

function inlineCopy(t: TensorProto, bytes: Uint8Array): TensorProto {
  const c: TensorProto = { ...t, raw_data: bytes };
  delete c.external_data;
  delete c.data_location;
  delete c.float_data;
  delete c.int32_data;
  delete c.int64_data;
  delete c.double_data;
  return c;
}

/** A shallow copy of `m` whose external initializers are inline (read from files next to `baseDir`). */
export function inlinedModel(m: ModelProto, baseDir: string): ModelProto {
  if (!hasExternalData(m)) return m;
  const read = externalSliceReader(baseDir);
  return withInitializers(
    m,
    m.graph.initializer.map((t) => (isExternal(t) ? inlineCopy(t, tensorBytes(t, baseDir, read)) : t)),
  );
}

/**
 * Write `m` as `onnxPath` + `dataFile` (a name next to it): every main-graph initializer of at least `threshold` bytes
 * goes to the data file (64-byte aligned offsets), smaller ones stay inline. External source tensors are read from
 * `srcBaseDir`. Returns the number of bytes written to the data file.
 */
export function writeWithExternalData(
  m: ModelProto,
  srcBaseDir: string,
  onnxPath: string,
  dataPath: string,
  dataFile: string,
  threshold = 1024,
  /** Bytes to store instead of a tensor's own (same dtype and size), produced one tensor at a time. */
  override?: (t: TensorProto) => Uint8Array | undefined,
): number {
  const read = externalSliceReader(srcBaseDir);
  const fd = openSync(dataPath, 'w');
  let offset = 0;
  const out: TensorProto[] = [];
  try {
    for (const t of m.graph.initializer ?? []) {
      const size = tensorDataSize(t);
      if (size < threshold) {
        out.push(isExternal(t) ? inlineCopy(t, tensorBytes(t, srcBaseDir, read)) : t);
        continue;
      }
      const bytes = override?.(t) ?? tensorBytes(t, srcBaseDir, read);
      const pad = (64 - (offset % 64)) % 64;
      if (pad) {
        writeAll(fd, new Uint8Array(pad), offset);
        offset += pad;
      }
      writeAll(fd, bytes, offset);
      const c: TensorProto = { ...t };
      pointAtExternal(c, dataFile, offset, bytes.length);
      out.push(c);
      offset += bytes.length;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const fdModel = openSync(onnxPath, 'w');
  try {
    writeAll(fdModel, encodeModel(withInitializers(m, out)), 0);
    fsyncSync(fdModel);
  } finally {
    closeSync(fdModel);
  }
  return offset;
}

/** Write every byte of `bytes` at `position` (writeSync may write less than asked, and takes at most 2 GB at once). */
export function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30), position + done);
  }
}
