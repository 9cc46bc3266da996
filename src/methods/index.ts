/** Uniform pruning methods (magnitude, Wanda, SparseGPT), patterns and the method registry. */
export type { MethodContext, MethodResult, PruningMethod, FastPathContext, PreparedLinear, StoredLayout } from './types.js';
export { prepareLinear } from './fast.js';
export { wandaOrder, magnitudeOrder, applyOrder, orderFastPath, type PruneOrder } from './orders.js';
export { magnitude } from './magnitude.js';
export { wanda } from './wanda.js';
export {
  sparsegpt,
  sparseGptHinv,
  sparseGptHinvAsync,
  SPARSEGPT_BLAS_MIN_DIN,
  SPARSEGPT_BLOCKSIZE,
  SPARSEGPT_PERCDAMP,
  SPARSEGPT_DAMP_RETRIES,
} from './sparsegpt.js';
export type { HinvResult } from './sparsegpt.js';
export { getMethod, registerMethod, methodNames, validateMethodRequest, zerosAreExact } from './registry.js';
export type { MethodRequest } from './registry.js';
export { validateSparsityAndPattern, nmNotes } from './patterns.js';
export { wandaMetric } from './metrics.js';
// Blocked Cholesky / inverse with the big products on onnxruntime (model/blas.ts): SparseGPT's Hinv at large widths.
export { choleskyLowerInPlaceAsync, invertLowerInPlaceAsync, upperCholeskyOfInverseInPlaceAsync, BLAS_NB } from './cholesky-blas.js';
export { importPlugins, resolvePlugins } from './plugins.js';
