/**
 * The DSA search engine: evolutionary discovery of allocation functions. See docs/search.md.
 */
export { candidateKey } from './types.js';
export type { Candidate, Evaluation, Evaluator, SearchSpec, DsaExpression } from './types.js';
export { Rng, mixSeed } from './random.js';
export { dsaSpace, searchSpace, spaceOps, spaceSize, invalidReason, LAMBDA_RANGE, type DsaSpaceOptions, type SpaceOps } from './space.js';
export {
  runSearch, functionEvaluator,
  type CandidateSpace, type SearchOptions, type SearchProgress, type SearchResult, type HistoryEntry, type Member, type SearchState,
} from './evolution.js';
export { readCheckpoint, writeCheckpoint, type SearchCheckpoint } from './checkpoint.js';
// The cached orders are Wanda's and magnitude's fast path (src/methods/orders.ts); re-exported for existing callers.
export { wandaOrder, magnitudeOrder, applyOrder, type PruneOrder, type Layout } from '../methods/orders.js';
export {
  createFitness, computeDense, calibrationWindows, idsSha256, searchLinears,
  type Fitness, type FitnessOptions, type DenseData,
} from './fitness.js';
export { createPool, defaultParallelism, packDense, unpackDense, type PoolOptions, type WorkerInit, type PackedDense } from './pool.js';
export { searchModel, searchChart, type SearchModelOptions, type SearchOutput, type HistoryRow } from './run.js';
export {
  levelSearch, levelGrid, levelSwitch, genomeAllocation, unitCounts, levelsAllocator, readLevelCheckpoint,
  type LevelGrid, type LevelUnit, type LevelStage, type LevelSearchOptions, type LevelSearchResult, type LevelCheckpoint, type LevelHistoryRow,
} from './levels.js';
export { buildLevelDb, openLevelDb, levelDbPlan, LEVEL_DB_MEMORY_DEFAULT, type LevelDb, type LevelDbDescriptor, type LevelDbOptions } from './level-db.js';
export { createLevelEvaluator, type LevelEvaluator, type LevelEvaluatorOptions } from './level-eval.js';
export { linearProfileChart, type ProfileLinear } from '../report/profile-chart.js';
export { candidateAllocator } from './fitness.js';
export { checkStructuredSearch, searchedShares, structuredResultAllocator, type StructuredSearch } from './structured-fitness.js';
