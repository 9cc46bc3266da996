/**
 * The model folder: loading hook, linear discovery, weight access, in-place session swap, save, inspect.
 * See docs/model.md.
 */
export { installLoadingHook, sourceOfSession, sourceFromPath, splitOnnxName, type ModelSource } from './hook.js';
export { discoverLinears, fusedParts, parseScope, linearNameFromNode, type Discovery, type DiscoverOptions, type WeightLayout } from './discover.js';
export { attachModel, transpose, type PrunableModel, type WeightSnapshot } from './prunable.js';
export { loadModelDir, loadModelVariant, validateModelFolder, readFolderGraph, type ModelFolder } from './load.js';
export { savePruned, checkOutDir, packageVersion, type SaveOptions } from './save.js';
export { inspectModel, formatInspectTable, type InspectReport, type InspectLinear } from './inspect.js';
export { hasExternalData, externalFiles, initializerBytes, inlinedModel, writeWithExternalData, tensorDataSize, PROTOBUF_LIMIT } from './external.js';
export * from './onnx.js';
export { contextLength } from './context.js';
export { DTYPE_SUFFIX, SUFFIX_DTYPE, FILE_SUFFIXES, dtypeToSuffix, type ModelDtype } from './dtypes.js';
export { buildFeeds, sessionOf, type DecoderSession, type CausalLMLike, type FeedOptions, type PastState } from './feeds.js';
export { weightFedSession, type WeightFedSession, type WeightInput, type WeightFedOptions } from './weight-inputs.js';
