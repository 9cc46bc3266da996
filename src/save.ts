import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { attachModel, savePruned as saveModel } from './model/index.js';
import { lastPruneReport } from './prune.js';
import { checkQ4Options, postProcessSaved, quantizeKinds, type PostSaveOptions, type PostSaveResult } from './compress/index.js';
import { runGptqForSave, type GptqRequest, type GptqSaveSummary } from './save-gptq.js';

/**
 * Save a pruned model as a folder `from_pretrained` loads again, with `pruning.json` describing what was done
 * (method, target and realised sparsity, allocator, per-linear sparsity, calibration hash).
 * Refuses to write into the folder the model was loaded from; atomic (temp folder + rename), quantized variants and
 * compression included.
 */
export async function savePruned(
  model: unknown,
  outDir: string,
  opts: { overwrite?: boolean; manifest?: Record<string, unknown>; variants?: boolean } & PostSaveOptions & Omit<GptqRequest, 'quantize' | 'quantizeOptions' | 'overwrite'> = {},
): Promise<(PostSaveResult & { gptq?: GptqSaveSummary }) | undefined> {
  // q4 writer options (block sizes, the lm_head / embedding block against the table width): checked before GPTQ and
  // before anything is written.
  if (quantizeKinds(opts.quantize).includes('q4') && opts.quantizeOptions) checkQ4Options((await attachModel(model)).proto.graph, opts.quantizeOptions);
  // gptq (joint prune + quantize): validated and run before anything is written; the q4 writer then stores its codes.
  const gptq = await runGptqForSave(model, outDir, opts);
  const report = lastPruneReport(model as object);
  const manifest = {
    ...(report
      ? {
          method: report.method, pattern: report.pattern, budget: report.budget, sparsity: report.sparsity,
          realizedSparsity: report.realizedSparsity, blockSparsity: report.blockSparsity,
          targetBlockSparsity: report.targetBlockSparsity, allocator: report.allocator, calibration: report.calibration,
          seconds: report.seconds, notes: report.notes,
          ...(report.structured ? { structured: report.structured } : {}),
        }
      : {}),
    ...(gptq ? { quantization: { q4: gptq.summary } } : {}),
    ...opts.manifest,
  };
  const { quantize, compress, quantizeOptions: _q, gptq: _g, calibration: _c, nsamples: _n, seqlen: _s, ...rest } = opts;
  const quantizeOptions = gptq ? { ...opts.quantizeOptions, q4Codes: gptq.codes, ...(gptq.tieCodes ? { tiePrecomputed: true } : {}) } : opts.quantizeOptions;
  // quantize: also write onnx/model_q4.onnx / model_quantized.onnx; compress: model.onnx as bitmask + values. Done in
  // the temporary folder before it becomes outDir, so a failure there (a full disk) leaves no half-written model.
  let post: PostSaveResult | undefined;
  // A structured model records its ONNX file's bytes before (the source) and after (as written, in the temporary folder).
  const sourceOnnx = report?.structured ? (await attachModel(model)).source.onnxPath : undefined;
  const beforePublish = quantize !== undefined || compress || sourceOnnx
    ? (dir: string) => {
      if (quantize !== undefined || compress) post = postProcessSaved(dir, { quantize, compress, quantizeOptions });
      if (sourceOnnx) recordStructuredBytes(dir, sourceOnnx);
    }
    : undefined;
  await saveModel(model, outDir, { ...rest, manifest, beforePublish, ...(report?.structured?.config ? { config: report.structured.config } : {}) });
  return post && gptq ? { ...post, gptq: gptq.summary } : post;
}

/** Bytes of an ONNX file and its external data files (`model.onnx`, `model.onnx_data*`) in a folder. */
export function onnxFileBytes(dir: string, file: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) if (f === file || f.startsWith(`${file}_data`)) n += statSync(path.join(dir, f)).size;
  return n;
}

/** pruning.json `structured.bytes = { before, after }`: the source ONNX file and the one just written in `dir`. */
function recordStructuredBytes(dir: string, sourceOnnx: string): void {
  const file = path.basename(sourceOnnx);
  const manifestPath = path.join(dir, 'pruning.json');
  const m = JSON.parse(readFileSync(manifestPath, 'utf8')) as { structured?: Record<string, unknown> };
  if (!m.structured) return;
  m.structured.bytes = { before: onnxFileBytes(path.dirname(sourceOnnx), file), after: onnxFileBytes(path.join(dir, 'onnx'), file) };
  writeFileSync(manifestPath, JSON.stringify(m, null, 2) + '\n');
}
