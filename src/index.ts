/**
 * dsa-prune: prune transformers.js causal LMs in Node.js.
 *
 * ```ts
 * import { AutoModelForCausalLM } from '@huggingface/transformers';
 * import { pruneModel, savePruned, dsa } from 'dsa-prune';   // import before from_pretrained: it hooks model loading
 * const model = await AutoModelForCausalLM.from_pretrained(dir);
 * await pruneModel(model, { method: 'wanda', sparsity: 0.7, allocator: owl(), calibration: text });
 * await savePruned(model, outDir);
 * ```
 */
import { installLoadingHook } from './model/index.js';

// Importing the plugin records where every later onnxruntime session came from (the ONNX graph we edit).
installLoadingHook();

export { installLoadingHook, attachModel, inspectModel, discoverLinears, loadModelDir, sourceOfSession, validateModelFolder, formatInspectTable } from './model/index.js';
export type { PrunableModel, ModelSource, InspectReport } from './model/index.js';
export { pruneModel, planPrune, lastPruneReport, parsePattern, selectLinears, denseAllocationStats } from './prune.js';
export type { PrunePlan, PruneOptions, PruneReport, LinearReport, CalibrationSource, StructuredReport } from './prune.js';
export { parseTargets, STRUCTURED_TARGETS, type StructuredTarget } from './structured.js';
export * as structured from './methods/structured/index.js';
export { savePruned } from './save.js';
export * from './methods/index.js';
export * from './allocators/index.js';
export * from './eval/index.js';
export { DsaPruneError } from './errors.js';
export type * from './types.js';
export * from './report/index.js';
export * from './compress/index.js';
export * from './search/index.js';
export * from './search/distributed/index.js';
export * from './calibration/index.js';
// Both report/ (the JSON a search writes) and search/ (the engine's in-memory result) name a SearchResult: the public one is the file format.
export type { SearchResult } from './report/index.js';
