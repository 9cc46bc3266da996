/**
 * Evaluation: perplexity (the project's one implementation: reference protocol and strided), zero-shot
 * multiple-choice tasks scored like lm-evaluation-harness, and the forward/log-likelihood primitives they stand on.
 */
export { perplexity, stridedWindows, type PerplexityOptions, type PerplexityResult } from './perplexity.js';
export { createTopKCache, klToCache, topKCacheBytes, DEFAULT_KL_TOP_K, DEFAULT_KL_MAX_BYTES, type TopKCache, type TopKOptions, type KlResult } from './kl.js';
export {
  forwardLogits,
  buildFeeds,
  tokenNll,
  logProbAt,
  argmaxAt,
  sessionOf,
  vocabSize,
  autoBatchSize,
  TOKENS_PER_RUN,
  DEFAULT_LOGITS_BUDGET,
  type DecoderSession,
  type CausalLMLike,
  type FeedOptions,
  type Logits,
  type PastState,
} from './forward.js';
export {
  scoreSequences,
  encodePair,
  type ScoreRequest,
  type ScoreResult,
  type ScoreOptions,
  type EncodeOptions,
  type TaskTokenizer,
} from './loglikelihood.js';
export {
  evaluateTasks,
  loadTask,
  scoreTask,
  modelScorer,
  accuracy,
  TASK_NAMES,
  type EvaluateTasksOptions,
  type Choice,
  type McItem,
  type TaskData,
  type TaskResult,
  type TextScorer,
} from './tasks/index.js';
export { taskDataDirs } from './tasks/files.js';
export { blimpSubsets } from './tasks/blimp.js';
export { readTextFile, tokenizeText, takeWindows, countWindows, type TextTokenizer, type TakeWindowsOptions } from '../data/text.js';
