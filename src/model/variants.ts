/**
 * The other float variants of the source folder (onnx/model.onnx next to model_fp16.onnx, …), rebuilt for a save:
 * each variant's graph as shipped, with every pruned linear's weight replaced by the pruned values in the variant's
 * own dtype (fp32 → fp16 rounds, zeros stay exact zeros). A variant is rebuilt only when it holds the same linears
 * (same names, same stored shapes); otherwise it is left out and said so. Quantized variants (q4, q8, …) are not
 * rebuilt here: `quantize` (CLI --quantize) writes them from the pruned model.
 * External data is streamed tensor by tensor; an inline variant is below 2 GB by construction.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { discoverLinears } from './discover.js';
import { hasExternalData, writeWithExternalData } from './external.js';
import { DataType, encodeModel, float32ToFp16, fp16ToFloat32, readModelFile, tensorDims, tensorToFloat32, type TensorProto } from './onnx.js';
import type { PrunableModel } from './prunable.js';

const FLOAT_SUFFIXES = ['', '_fp16'];

export interface VariantResult {
  written: string[];
  skipped: { file: string; reason: string }[];
}

/**
 * The variant tensor's new values: the pruned ones in its dtype. An fp32 variant of an fp16 model keeps its own fp32
 * value wherever the pruned fp16 weight is that value rounded (untouched by the method), zero where pruned, the
 * pruned value where the method changed it (SparseGPT's updates).
 */
function bytesFor(t: TensorProto, pruned: Float32Array, mainIsFp16: boolean, srcDir: string): Uint8Array {
  if (t.data_type === DataType.FLOAT16) return new Uint8Array(float32ToFp16(pruned).buffer);
  if (mainIsFp16) {
    const orig = tensorToFloat32(t, srcDir);
    const rounded = fp16ToFloat32(float32ToFp16(orig));
    const out = new Float32Array(pruned.length);
    for (let i = 0; i < out.length; i++) out[i] = pruned[i] === 0 ? 0 : pruned[i] === rounded[i] ? orig[i]! : pruned[i]!;
    return new Uint8Array(out.buffer);
  }
  return new Uint8Array(pruned.buffer, pruned.byteOffset, pruned.byteLength);
}

/** Write the source's other float variants of `<base>.onnx` into `onnxOut` (the main file is already there). */
export function writeFloatVariants(pm: PrunableModel, onnxOut: string): VariantResult {
  const res: VariantResult = { written: [], skipped: [] };
  const src = pm.source;
  if (!src.onnxPath) return res;
  const srcOnnx = path.dirname(src.onnxPath);
  const base = src.fileBase ?? 'model';
  const main = path.basename(src.onnxPath);
  for (const suffix of FLOAT_SUFFIXES) {
    const file = `${base}${suffix}.onnx`;
    if (file === main || !existsSync(path.join(srcOnnx, file))) continue;
    let proto;
    try {
      proto = readModelFile(path.join(srcOnnx, file));
    } catch (e) {
      res.skipped.push({ file, reason: `cannot be decoded (${(e as Error).message})` });
      continue;
    }
    const found = discoverLinears(proto.graph);
    const byName = new Map(found.linears.map((l) => [l.name, l]));
    const inits = new Map(proto.graph.initializer.map((t) => [t.name!, t]));
    const mainInits = new Map(pm.proto.graph.initializer.map((t) => [t.name!, t]));
    const map = new Map<string, string>(); // variant weight name → main weight name
    const mainIsFp16 = pm.linears[0]?.dtype === 'float16';
    let reason: string | undefined;
    for (const l of pm.linears) {
      const v = byName.get(l.name);
      const vt = v ? inits.get(v.weight) : undefined;
      const mt = mainInits.get(l.weight);
      if (!v || !vt || !mt) {
        reason = `has no linear ${l.name} as a plain initializer`;
        break;
      }
      if (tensorDims(vt).join('x') !== tensorDims(mt).join('x')) {
        reason = `stores ${l.name} as [${tensorDims(vt).join(', ')}], not [${tensorDims(mt).join(', ')}]`;
        break;
      }
      map.set(v.weight, l.weight);
    }
    if (reason) {
      res.skipped.push({ file, reason });
      continue;
    }
    const external = hasExternalData(proto) || readdirSync(srcOnnx).some((f) => f.startsWith(`${file}_data`));
    if (external) {
      writeWithExternalData(proto, srcOnnx, path.join(onnxOut, file), path.join(onnxOut, `${file}_data`), `${file}_data`, 1024, (t) => {
        const w = map.get(t.name!);
        return w ? bytesFor(t, pm.readInitializer(w), mainIsFp16, srcOnnx) : undefined;
      });
    } else {
      for (const [vw, w] of map) {
        const t = inits.get(vw)!;
        const bytes = bytesFor(t, pm.readInitializer(w), mainIsFp16, srcOnnx);
        t.raw_data = bytes.slice();
        delete t.external_data;
        delete t.data_location;
        delete t.float_data;
      }
      writeFileSync(path.join(onnxOut, file), encodeModel(proto));
    }
    res.written.push(file);
  }
  return res;
}
