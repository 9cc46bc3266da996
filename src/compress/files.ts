/**
 * Post-processing of a saved model folder: write the quantized variants next to the float model, or replace the float
 * model by its compressed sparse form. Each file is written to a temporary name and renamed (atomic per file).
 */
import { existsSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DsaPruneError, EXIT } from '../errors.js';
import { initializerBytes, inlinedModel, PROTOBUF_LIMIT, writeWithExternalData } from '../model/external.js';
import { splitOnnxName } from '../model/hook.js';
import { DataType, encodeModel, readModelFile, tensorDims, tensorToFloat32, type ModelProto } from '../model/onnx.js';
import { DTYPE_SUFFIX } from '../model/dtypes.js';
import { quantizeModel, type QuantizeKind, type QuantizeOptions, type QuantizeReport } from './quantize.js';
import { compressModel, type CompressOptions, type CompressReport } from './sparse.js';
import { sparseQ4Model, type SparseQuantReport } from './sparse-q4.js';

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

/** Float 2-D weight initializers with ≥ 10 % exact zeros still read by a Gemm / MatMul after quantization. */
function unconvertedSparse(m: ModelProto): string[] {
  const inits = new Map(m.graph.initializer.map((t) => [t.name!, t]));
  const out: string[] = [];
  for (const n of m.graph.node) {
    if ((n.domain ?? '') !== '' || (n.op_type !== 'Gemm' && n.op_type !== 'MatMul')) continue;
    for (const name of n.input.slice(0, 2)) {
      const t = inits.get(name);
      if (!t || (t.data_type !== DataType.FLOAT && t.data_type !== DataType.FLOAT16) || tensorDims(t).length !== 2) continue;
      const w = tensorToFloat32(t);
      let z = 0;
      for (let i = 0; i < w.length; i++) if (w[i] === 0) z++;
      if (w.length >= 1024 && z >= 0.1 * w.length) out.push(`${n.op_type} ${n.name || name} weight ${name}`);
    }
  }
  return out;
}

/** The quantized model of the folder `dir` and the file it goes to, in memory (nothing written). */
function buildQuantized(dir: string, kind: QuantizeKind, opts: QuantizeOptions, sparse: boolean): { model: ModelProto; out: string; report: QuantizeReport; sparse?: SparseQuantReport; sparseQ8?: CompressReport } {
  const src = floatOnnxFile(dir);
  const { base } = splitOnnxName(src);
  const q = quantizeModel(readInline(src), kind, opts);
  const out = path.join(path.dirname(src), `${base}${QUANT_SUFFIX[kind]}.onnx`);
  if (!sparse) return { model: q.model, out, report: q.report };
  if (kind === 'q8') {
    // q8 weights are int8 with zero point 0: bitmask + non-zero codes, the compressed-fp32 decoder (sparse.ts).
    const c = compressModel(q.model, { int8: true, dedupTransposed: false });
    return { model: c.model, out, report: q.report, ...(c.report.sparse.length ? { sparseQ8: c.report } : {}) };
  }
  // A pruned linear the q4 file keeps in float (a Gemm, a weight MatMulNBits cannot take) would stay dense: refuse.
  const left = unconvertedSparse(q.model);
  if (left.length) {
    throw new DsaPruneError(`sparse q4: ${left.length} pruned weight(s) of ${src} stay float in the q4 file because MatMulNBits cannot take their layout (${left.slice(0, 3).join(', ')}${left.length > 3 ? ', …' : ''})`, {
      hint: 'Their zeros would not shrink the q4 file. Use --quantize q8 (plain) or --compress alone (sparse fp32) for this model, or drop --compress for plain q4.',
    });
  }
  const s = sparseQ4Model(q.model);
  return { model: s.model, out, report: q.report, sparse: s.report };
}

/**
 * Write `onnx/<base>_q4.onnx` (q4) or `onnx/<base>_quantized.onnx` (q8) next to the float model of the folder `dir`;
 * the float file stays. Load with `from_pretrained(dir, { dtype: 'q4' | 'q8' })`. `sparse` (q4 only): store the
 * MatMulNBits weights as block mask + bitmask + non-zero codes (sparse-q4.ts), still loaded with `dtype: 'q4'`.
 */
export function writeQuantized(dir: string, kind: QuantizeKind, opts: QuantizeOptions = {}, sparse = false): FileSize & { report: QuantizeReport; sparse?: SparseQuantReport } {
  const b = buildQuantized(dir, kind, opts, sparse);
  writeModelAtomic(b.model, b.out);
  return { file: path.relative(dir, b.out), bytes: onnxFileSize(b.out), report: b.report, ...(b.sparse ? { sparse: b.sparse } : {}) };
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
  /**
   * Store the float model as bitmask + non-zero values (plain ONNX, decoded by onnxruntime at load); with
   * `quantize: 'q4'`, the q4 file is written sparse too (block mask + bitmask + non-zero 4-bit codes, sparse-q4.ts).
   */
  compress?: boolean | CompressOptions;
  /** Options of the quantizer (block size, …). */
  quantizeOptions?: QuantizeOptions;
}

export interface PostSaveResult {
  /** Size of the dense float file before any post-processing. */
  dense: FileSize;
  /** Written files with their sizes and the ratio to the dense float file. */
  files: (FileSize & { kind: 'fp32' | 'compressed' | QuantizeKind | 'sparse-q4' | 'sparse-q8'; ratio: number })[];
}

/** The `quantize` option (one kind or a list, possibly absent) as a list: one reading for the save, GPTQ and the writer. */
export function quantizeKinds(q: QuantizeKind | QuantizeKind[] | undefined): QuantizeKind[] {
  return q === undefined ? [] : Array.isArray(q) ? q : [q];
}

/** Apply the options to a folder savePruned just wrote. */
export function postProcessSaved(dir: string, opts: PostSaveOptions): PostSaveResult {
  const src = floatOnnxFile(dir);
  const dense = { file: path.relative(dir, src), bytes: onnxFileSize(src) };
  const files: PostSaveResult['files'] = [];
  const kinds = quantizeKinds(opts.quantize);
  for (const k of kinds) if (k !== 'q4' && k !== 'q8') throw new DsaPruneError(`unknown quantize option '${String(k)}'`, { hint: "Use 'q8' or 'q4'." });
  // Build every quantized model before writing any, so a refused layout (sparse q4) leaves the folder untouched.
  const built = kinds.map((k) => ({ k, b: buildQuantized(dir, k, opts.quantizeOptions ?? {}, !!opts.compress) }));
  for (const { k, b } of built) {
    writeModelAtomic(b.model, b.out);
    const bytes = onnxFileSize(b.out);
    files.push({ file: path.relative(dir, b.out), bytes, kind: b.sparse?.weights.length ? 'sparse-q4' : b.sparseQ8 ? 'sparse-q8' : k, ratio: bytes / dense.bytes });
  }
  if (opts.compress) {
    const r = compressFolder(dir, typeof opts.compress === 'object' ? opts.compress : {});
    files.push({ file: r.file, bytes: r.bytes, kind: 'compressed', ratio: r.bytes / dense.bytes });
  } else {
    files.push({ ...dense, kind: 'fp32', ratio: 1 });
  }
  return { dense, files };
}
