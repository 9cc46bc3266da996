/**
 * Layer-wise sparsity allocation: from dense statistics to a sparsity per block (or per linear). See docs/allocators.md.
 */
export type { BlockAllocationStats, AllocationInput, Allocation, Allocator, AllocatorProperties } from './types.js';
export { uniform } from './uniform.js';
export { owl, outlierRatio, type OwlOptions } from './owl.js';
export { atp, type AtpOptions } from './atp.js';
export { dsa, type DsaOptions } from './dsa-allocator.js';
export { explicit, namePattern } from './explicit.js';
export { flapGlobal, FLAP_GLOBAL } from './flap-global.js';
export { custom, type CustomOptions } from './custom.js';
export { parseAllocatorSpec, type AllocatorSpecOptions } from './spec.js';
export { resolveLinearSparsity, resolveLinearSparsities, type LinearRef, type ResolveOptions } from './resolve.js';
export { atGranularity, checkGranularity, linearUnits, blockMeans, exactInParameters, GRANULARITIES, type Granularity } from './granularity.js';
export { apportionCounts, exactCountSparsities, type CountOptions } from '../budget/counts.js';
export { nonUniform, type NonUniform, type MethodLike } from './non-uniform.js';
export { allocationFromScores, minmax, referenceScore, referenceClamp, budgetRaw, type FromScoresOptions } from './scores.js';
export { exactBudget, weightedMean, EXACT_MIN, EXACT_MAX, type ExactBudgetOptions } from '../budget/global.js';
export {
  DSA_PUBLISHED, PRE_OPS, REDUCE_OPS, SCALAR_OPS, parseDsa, formatDsa, simplifyDsa, simplifyDsaExpression, importance,
  importanceTrace, dsaScores, dsaMath, type DsaExpression, type ImportanceTrace,
} from './dsa/index.js';
export {
  saveAllocationStats, loadAllocationStats, encodeAllocationStats, decodeAllocationStats, AllocationStatsCache,
  type AllocationStatsKey,
} from './stats-cache.js';
