/**
 * The ONNX schema is the vendored, pinned onnx.proto, and the module the code uses is generated from it:
 * - the vendored text below its header is byte for byte the upstream file (sha256 recorded in the header),
 * - src/model/proto/onnx.js and onnx.d.ts equal a fresh `npm run gen:onnx` (pbjs/pbts),
 * - proto2 wire format: `dims` unpacked, `float_data` packed, checked against bytes written by hand from the protobuf
 *   encoding rules (not by the codec under test),
 * - decode → encode is byte-identical on every model of ../shared/models/layouts, stories260k and bench-12l (exported
 *   by PyTorch/onnx, not by this project), and keeps fields the old hand transcription dropped.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeModel, encodeModel, encodeTensor, DataType } from '../../src/model/onnx.js';
import { PROTO_FILE, staleGeneratedFiles } from '../../scripts/gen-onnx.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const shared = path.resolve(here, '../../../shared/models');

describe('vendored onnx.proto', () => {
  it('is the pinned upstream file below its header (sha256 in the header)', () => {
    const text = readFileSync(PROTO_FILE, 'utf8');
    const marker = '// ---- upstream onnx/onnx.proto ----\n';
    const at = text.indexOf(marker);
    expect(at).toBeGreaterThan(0);
    const pinned = /sha256 is ([0-9a-f]{64})/.exec(text.slice(0, at))?.[1];
    expect(pinned).toMatch(/^[0-9a-f]{64}$/);
    const upstream = text.slice(at + marker.length);
    expect(createHash('sha256').update(upstream).digest('hex')).toBe(pinned);
    expect(upstream).toMatch(/^syntax = "proto2";$/m);
    expect(upstream).toMatch(/^package onnx;$/m);
  });

  it('the committed generated module equals a regeneration (npm run gen:onnx)', () => {
    expect(staleGeneratedFiles()).toEqual([]);
  }, 60_000);
});

/** Protobuf varint, written by hand. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
const key = (field: number, wire: number): number[] => varint(field * 8 + wire);
const str = (field: number, s: string): number[] => [...key(field, 2), ...varint(s.length), ...Buffer.from(s)];

describe('proto2 wire format', () => {
  it('dims are unpacked varints, float_data is packed (as ONNX exporters write them)', () => {
    const bytes = encodeTensor({ dims: [2, 3], data_type: DataType.FLOAT, float_data: [1, -2] });
    const floats = Buffer.alloc(8);
    floats.writeFloatLE(1, 0);
    floats.writeFloatLE(-2, 4);
    const expected = [
      ...key(1, 0), 2, ...key(1, 0), 3, // dims = 1, one varint record per element
      ...key(2, 0), DataType.FLOAT, // data_type = 2
      ...key(4, 2), 8, ...floats, // float_data = 4 [packed = true]: one length-delimited record
    ];
    expect([...bytes]).toEqual(expected);
  });

  it('keeps a field the hand transcription had not (NodeProto.device_configurations = 10) through decode → encode', () => {
    // NodeDeviceConfigurationProto { configuration_id = 1 }, inside NodeProto field 10.
    const devConf = str(1, 'cfg0');
    const node = [...str(1, 'x'), ...str(2, 'y'), ...str(4, 'Identity'), ...key(10, 2), ...varint(devConf.length), ...devConf];
    const graph = [...key(1, 2), ...varint(node.length), ...node];
    const model = new Uint8Array([...key(1, 0), 10, ...key(7, 2), ...varint(graph.length), ...graph]);
    const m = decodeModel(model, 'device.onnx');
    expect(m.graph.node[0].op_type).toBe('Identity');
    expect(Buffer.from(encodeModel(m)).equals(Buffer.from(model))).toBe(true);
  });
});

function sharedModels(): string[] {
  const dirs = [path.join(shared, 'stories260k'), path.join(shared, 'bench-12l')];
  const layouts = path.join(shared, 'layouts');
  if (existsSync(layouts)) for (const d of readdirSync(layouts)) dirs.push(path.join(layouts, d));
  return dirs.flatMap((d) => {
    const onnxDir = path.join(d, 'onnx');
    return existsSync(onnxDir) ? readdirSync(onnxDir).filter((f) => f.endsWith('.onnx')).map((f) => path.join(onnxDir, f)) : [];
  });
}

const files = existsSync(shared) ? sharedModels() : [];
if (files.length === 0) console.warn(`onnx-schema.test: ${shared} not found, round trips on exported models skipped`);

describe.skipIf(files.length === 0)('decode → encode is byte-identical on exported models', () => {
  it.each(files.map((f) => [path.relative(shared, f), f]))('%s', { timeout: 60_000 }, (_name, file) => {
    const bytes = readFileSync(file);
    const again = encodeModel(decodeModel(bytes, file));
    expect(again.length).toBe(bytes.length);
    expect(Buffer.from(again).equals(bytes)).toBe(true);
  });
});
