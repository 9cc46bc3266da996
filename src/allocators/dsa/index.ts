/**
 * DSA allocation functions: the op tables (the search space), parse / print / simplify (mathjs), and typed-array
 * evaluation. See docs/allocators.md.
 */
export { PRE_OPS, REDUCE_OPS, SCALAR_OPS, PRE_BY_NAME, REDUCE_BY_NAME, SCALAR_BY_NAME, CHUNK } from './ops.js';
export type { PreOp, ReduceOp, ScalarOp, DsaOp, ChunkSource, PreStats } from './ops.js';
export {
  DSA_PUBLISHED, parseDsa, formatDsa, simplifyDsa, simplifyDsaExpression, toDsaExpression, normalizeDsa,
} from './expression.js';
export type { DsaExpression } from './expression.js';
export { importance, importanceTrace, dsaScores, dsaTraces, reducedValue, preprocess, preprocessed } from './importance.js';
export type { ImportanceTrace } from './importance.js';
export { dsaMath } from './functions.js';
export { mathBase } from './math.js';
