/**
 * Distributed search on Redis with BullMQ: the coordinator's Evaluator (createRedisEvaluator) and the worker
 * (startWorker with modelBackend, or `dsa-prune worker`). See docs/distributed.md.
 */
export { createRedisEvaluator, RedisEvaluator, type RedisEvaluatorOptions, type RedisEvaluatorStats } from './coordinator.js';
export { startWorker, type WorkerOptions, type WorkerBackend, type SlotFitness, type RunningWorker } from './worker.js';
export { modelBackend, type ModelBackendOptions } from './backend.js';
export { redisDenseCache, shareDense, encodeDense, decodeDense, type DenseCache } from './dense-codec.js';
export { parseRedisUrl, redactUrl, connectRedis, ioredisAvailable, type RedisTarget, type ConnectOptions } from './connection.js';
export {
  DEFAULT_PREFIX,
  QUEUE_NAME,
  PROTOCOL_VERSION,
  PAYLOAD_LAMBDA_LIMITS,
  validatePayload,
  parseDsaStructure,
  defaultRunId,
  jobIdOf,
  PayloadError,
  type JobPayload,
} from './protocol.js';
