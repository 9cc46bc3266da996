/**
 * Post-processing of a saved model folder: write the quantized variants next to the float model, or replace the float
 * model by its compressed sparse form. Each file is written to a temporary name and renamed (atomic per file).
 */
import { existsSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DsaPruneError, EXIT } from '../errors.js';
import { initializerBytes, inlinedModel, PROTOBUF_LIMIT, writeWithExternalData } from '../model/external.js';
import { splitOnnxName } from '../model/hook.js';
import { encodeModel, readModelFile, type ModelProto } from '../model/onnx.js';
import { DTYPE_SUFFIX } from '../model/dtypes.js';
import { quantizeModel, type QuantizeKind, type QuantizeOptions, type QuantizeReport } from './quantize.js';
import { compressModel, type CompressOptions, type CompressReport } from './sparse.js';

/** transformers.js file-name suffix per dtype (`from_pretrained(dir, { dtype })`). */
export const QUANT_SUFFIX: Record<QuantizeKind, string> = { q8: DTYPE_SUFFIX.q8, q4: DTYPE_SUFFIX.q4 };

export interface FileSize {
  /** Path relative to the model folder. */
  file: string;
  /** Bytes of the .onnx file plus its external data files. */
  bytes: number;
}

/** The float (no dtype suffix) ONNX file of a model folder: `<dir>/onnx/model.onnx` or another base name. */
export function floatOnnxFile(dir: string): string {
  const onnxDir = path.join(dir, 'onnx');
  const files = existsSync(onnxDir) ? readdirSync(onnxDir).filter((f) => f.endsWith('.onnx')) : [];
  const plain = files.filter((f) => splitOnnxName(f).suffix === '');
  const pick = plain.includes('model.onnx') ? 'model.onnx' : plain[0];
  if (!pick) {
    throw new DsaPruneError(`no float ONNX file (onnx/model.onnx) in ${dir}`, {
      hint: 'Quantize or compress a folder written by savePruned (it holds onnx/model.onnx).',
    });
  }
  return path.join(onnxDir, pick);
}

/** Size of an ONNX file plus the external data files next to it that start with its name. */
export function onnxFileSize(file: string): number {
  const dir = path.dirname(file);
  const name = path.basename(file);
  let total = statSync(file).size;
  for (const f of readdirSync(dir)) if (f.startsWith(`${name}_data`)) total += statSync(path.join(dir, f)).size;
  return total;
}

function readInline(file: string): ModelProto {
  return inlinedModel(readModelFile(file), path.dirname(file));
}

/**
 * Write `m` as `file` atomically: the .onnx (and its external data, when too big for one protobuf) go to temporary
 * names first; the old file and its data are replaced only once everything is written, so a failure (a full disk)
 * leaves the old model intact.
 */
export function writeModelAtomic(m: ModelProto, file: string): void {
  const dir = path.dirname(file);
  const name = path.basename(file);
  const tmp = path.join(dir, `.${name}.tmp-${process.pid}`);
  const tmpData = `${tmp}_data`;
  try {
    const external = initializerBytes(m) >= PROTOBUF_LIMIT;
    if (external) writeWithExternalData(m, dir, tmp, tmpData, `${name}_data`); // location = the final data name
    else writeFileSync(tmp, encodeModel(m));
    for (const f of readdirSync(dir)) if (f.startsWith(`${name}_data`)) rmSync(path.join(dir, f), { force: true });
    if (external) renameSync(tmpData, path.join(dir, `${name}_data`));
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    rmSync(tmpData, { force: true });
    if (e instanceof DsaPruneError) throw e;
    throw new DsaPruneError(`writing ${file} failed: ${(e as Error).message}`, {
      hint: 'Check free disk space and permissions of the output folder.',
      exitCode: EXIT.io,
      cause: e,
    });
  }
}

/**
 * Write `onnx/<base>_q4.onnx` (q4) or `onnx/<base>_quantized.onnx` (q8) next to the float model of the folder `dir`;
 * the float file stays. Load with `from_pretrained(dir, { dtype: 'q4' | 'q8' })`.
 */
export function writeQuantized(dir: string, kind: QuantizeKind, opts: QuantizeOptions = {}): FileSize & { report: QuantizeReport } {
  const src = floatOnnxFile(dir);
  const { base } = splitOnnxName(src);
  const { model, report } = quantizeModel(readInline(src), kind, opts);
  const out = path.join(path.dirname(src), `${base}${QUANT_SUFFIX[kind]}.onnx`);
  writeModelAtomic(model, out);
  return { file: path.relative(dir, out), bytes: onnxFileSize(out), report };
}

/**
 * Replace the float model of `dir` by its compressed sparse form (still plain ONNX: any onnxruntime loads it and
 * rebuilds the dense weights when it creates the session). Run after writeQuantized (which reads the dense file).
 */
export function compressFolder(dir: string, opts: CompressOptions = {}): FileSize & { before: number; report: CompressReport } {
  const src = floatOnnxFile(dir);
  const before = onnxFileSize(src);
  const { model, report } = compressModel(readInline(src), opts);
  writeModelAtomic(model, src);
  return { file: path.relative(dir, src), bytes: onnxFileSize(src), before, report };
}

export interface PostSaveOptions {
  /** Also write a quantized variant: 'q8' → onnx/model_quantized.onnx, 'q4' → onnx/model_q4.onnx. */
  quantize?: QuantizeKind | QuantizeKind[];
  /** Store the float model as bitmask + non-zero values (plain ONNX, decoded by onnxruntime at load). */
  compress?: boolean | CompressOptions;
  /** Options of the quantizer (block size, …). */
  quantizeOptions?: QuantizeOptions;
}

export interface PostSaveResult {
  /** Size of the dense float file before any post-processing. */
  dense: FileSize;
  /** Written files with their sizes and the ratio to the dense float file. */
  files: (FileSize & { kind: 'fp32' | 'compressed' | QuantizeKind; ratio: number })[];
}

/** Apply the options to a folder savePruned just wrote. */
export function postProcessSaved(dir: string, opts: PostSaveOptions): PostSaveResult {
  const src = floatOnnxFile(dir);
  const dense = { file: path.relative(dir, src), bytes: onnxFileSize(src) };
  const files: PostSaveResult['files'] = [];
  const kinds = opts.quantize === undefined ? [] : Array.isArray(opts.quantize) ? opts.quantize : [opts.quantize];
  for (const k of kinds) {
    if (k !== 'q4' && k !== 'q8') throw new DsaPruneError(`unknown quantize option '${String(k)}'`, { hint: "Use 'q8' or 'q4'." });
    const r = writeQuantized(dir, k, opts.quantizeOptions);
    files.push({ file: r.file, bytes: r.bytes, kind: k, ratio: r.bytes / dense.bytes });
  }
  if (opts.compress) {
    const r = compressFolder(dir, typeof opts.compress === 'object' ? opts.compress : {});
    files.push({ file: r.file, bytes: r.bytes, kind: 'compressed', ratio: r.bytes / dense.bytes });
  } else {
    files.push({ ...dense, kind: 'fp32', ratio: 1 });
  }
  return { dense, files };
}
