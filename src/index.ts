/**
 * dsa-prune: prune transformers.js causal LMs in Node.js.
 *
 * ```ts
 * import { AutoModelForCausalLM } from '@huggingface/transformers';
 * import { pruneModel, savePruned, owl } from 'dsa-prune';   // import before from_pretrained: it hooks model loading
 * const model = await AutoModelForCausalLM.from_pretrained(dir);
 * await pruneModel(model, { method: 'wanda', sparsity: 0.7, allocator: owl(), calibration: text });
 * await savePruned(model, outDir);
 * ```
 *
 * The public surface is fenced (see docs/api.md, "Entry points"): this root has the pruning pipeline — model folder,
 * prune, save, methods, allocators, calibration, compression, perplexity and zero-shot tasks. The rest has its own
 * subpath, so importing the root does not load it: `dsa-prune/search` (the evolutionary search), `dsa-prune/distributed`
 * (Redis/BullMQ workers), `dsa-prune/eval` (every evaluation primitive), `dsa-prune/report` (HTML report and charts),
 * `dsa-prune/testing` (the allocator property-test kit).
 *
 * Side effect, on purpose and only here: importing the root installs the loading hook (`installLoadingHook()`), which
 * records which ONNX file every later onnxruntime session came from (the graph dsa-prune edits). A model loaded before
 * the import needs `{ source: dir }`; the subpaths install nothing.
 */
import { installLoadingHook } from './model/index.js';

installLoadingHook();

// The model folder
export {
  installLoadingHook, attachModel, inspectModel, discoverLinears, loadModelDir, loadModelVariant, sourceOfSession, validateModelFolder, formatInspectTable,
  contextLength,
} from './model/index.js';
export type { PrunableModel, ModelSource, InspectReport, InspectLinear, ModelFolder, SaveOptions } from './model/index.js';

// The pipeline
export { pruneModel, planPrune, lastPruneReport, parsePattern, selectLinears, denseAllocationStats } from './prune.js';
export type { PrunePlan, PruneOptions, PruneReport, LinearReport, CalibrationSource, StructuredReport } from './prune.js';
export { parseTargets, STRUCTURED_TARGETS, type StructuredTarget } from './structured.js';
export * as structured from './methods/structured/index.js';
export { savePruned } from './save.js';

// Methods
export type { MethodContext, MethodResult, PruningMethod, MethodRequest, FastPathContext, PreparedLinear, StoredLayout } from './methods/index.js';
export {
  magnitude, wanda, sparsegpt, sparseGptHinv, SPARSEGPT_BLOCKSIZE, SPARSEGPT_PERCDAMP, SPARSEGPT_DAMP_RETRIES,
  getMethod, registerMethod, methodNames, validateMethodRequest, validateSparsityAndPattern, nmNotes, wandaMetric,
} from './methods/index.js';

// Allocators
export type {
  BlockAllocationStats, AllocationInput, Allocation, Allocator, AllocatorProperties, OwlOptions, AtpOptions, DsaOptions, CustomOptions,
  AllocatorSpecOptions, NonUniform, MethodLike, FromScoresOptions, ExactBudgetOptions, DsaExpression, ImportanceTrace, AllocationStatsKey,
} from './allocators/index.js';
export {
  uniform, owl, outlierRatio, atp, dsa, explicit, namePattern, flapGlobal, custom, parseAllocatorSpec, nonUniform,
  allocationFromScores, minmax, referenceScore, referenceClamp, budgetRaw, exactBudget, weightedMean, EXACT_MIN, EXACT_MAX,
  DSA_PUBLISHED, PRE_OPS, REDUCE_OPS, SCALAR_OPS, parseDsa, formatDsa, simplifyDsa, simplifyDsaExpression, importance,
  importanceTrace, dsaScores, dsaMath,
  saveAllocationStats, loadAllocationStats, encodeAllocationStats, decodeAllocationStats, AllocationStatsCache,
} from './allocators/index.js';

// Calibration
export { runCalibration, denseStatistics } from './calibration/index.js';
export type { CalibrationModel, CalibrationOptions, CalibrationReport, BlockReport } from './calibration/index.js';

// Smaller on disk
export {
  quantizeModel, quantizeQ4, quantizeInt8, compressModel, densifyModel, isCompressed, encodeSparse, decodeSparse, SPARSE_PREFIX,
  writeQuantized, compressFolder, postProcessSaved, floatOnnxFile, onnxFileSize, QUANT_SUFFIX,
  sparseQ4Model, encodeSparseQ4, decodeSparseQ4, isSparseQuantized,
} from './compress/index.js';
export type {
  QuantizeKind, QuantizeOptions, QuantizeReport, Q4Packed, CompressOptions, CompressReport, FileSize, PostSaveOptions, PostSaveResult,
} from './compress/index.js';

// Evaluation: what a pruning script calls (the primitives are in dsa-prune/eval)
export { perplexity, evaluateTasks, TASK_NAMES, readTextFile } from './eval/index.js';
export type { PerplexityOptions, PerplexityResult, EvaluateTasksOptions, TaskResult } from './eval/index.js';

// Errors and shared types
export { DsaPruneError, isDsaPruneError, EXIT, ERROR_CODES } from './errors.js';
export type { DsaPruneErrorCode } from './errors.js';

// Linear-algebra backend (onnxruntime Gemm for SparseGPT's big products)
export { configureBlas, blasEnabled, releaseBlas } from './model/blas.js';

// Joint prune + quantize (GPTQ on the q4 grid)
export { lastPruneCalibration, calibrationFor, type PruneCalibration } from './prune.js';
export type { GptqSaveOptions, GptqSaveSummary } from './save-gptq.js';
export {
  gptqModel, gptqFromGram, gptqQuantizeLayer, packGptqQ4, q4GroupParams, q4Code, GPTQ_SWEEP_BLOCK,
  type GptqLayerOptions, type GptqLayerResult, type GptqModelOptions, type GptqModelResult, type GptqLinearReport,
} from './compress/index.js';

// Size–quality frontier (dsa-prune frontier)
export { frontier, paretoFront, recommend, type FrontierOptions, type FrontierPoint, type FrontierResult, type FrontierStructuredVariant } from './frontier.js';
export type * from './types.js';
