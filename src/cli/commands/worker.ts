/**
 * `dsa-prune worker --redis <url> --model <dir> [--concurrency k] [--threads n]`: serve distributed search evaluations
 * from a Redis queue until stopped (Ctrl-C or SIGTERM finish the running jobs, then exit).
 */
import { defineCommand, formatOptions, parseCommandArgs } from '../args.js';
import type { CliIo } from '../io.js';
import { loadPlugins, PLUGIN_OPTION } from '../plugins.js';
import { DsaPruneError, EXIT } from '../../errors.js';
import { DEFAULT_PREFIX, connectRedis, modelBackend, parseRedisUrl, startWorker } from '../../search/distributed/index.js';

const spec = defineCommand({
  name: 'worker',
  usage: 'dsa-prune worker --redis <url> --model <dir> [--concurrency k] [--threads n] [--plugin <module.js>]',
  options: {
    redis: { type: 'string', valueName: '<url>', description: 'Redis URL: redis://[:password@]host:port[/db] or rediss:// (TLS)' },
    model: { type: 'string', valueName: '<dir>', description: 'model folder (must be the same model as the search: checked by hash)' },
    concurrency: { type: 'integer', min: 1, max: 64, default: 1, description: 'jobs at once (faithful fitness loads one model copy per job)' },
    prefix: { type: 'string', valueName: '<name>', default: DEFAULT_PREFIX, description: 'Redis key prefix shared with the search' },
    'lock-seconds': { type: 'number', min: 1, max: 3600, default: 60, description: 'job lock; a killed worker\'s job is retried elsewhere after about this long' },
    'max-jobs': { type: 'integer', min: 1, description: 'exit after completing this many jobs (benchmarks, scripts)' },
    plugin: { ...PLUGIN_OPTION, description: 'ES module registering a pruning method (registerMethod from \'dsa-prune\'), for runs that search with it (repeatable; the search\'s own --plugin does not reach this process)' },
  },
});

export const help = `dsa-prune worker — serve a distributed search's evaluations from a Redis queue

Usage: ${spec.usage}

The worker loads its own copy of the model, connects to Redis and evaluates the candidates that
'dsa-prune search --redis <url>' queues (BullMQ queue "${DEFAULT_PREFIX}:eval"). It serves any run whose model hash
equals its own and refuses the others (their jobs fail with the reason, they are not retried). Dense statistics are
computed once per calibration set (or fetched from Redis when another worker or the search already computed them)
and kept warm. Ctrl-C or SIGTERM: finish the running jobs, then exit; a killed worker's job is retried by another
worker after about --lock-seconds.

The password can also be given in the REDIS_PASSWORD environment variable (it then stays out of the process list).

${formatOptions(spec.options)}

Examples:
  dsa-prune worker --redis redis://127.0.0.1:6379 --model models/stories260k
  REDIS_PASSWORD=… dsa-prune worker --redis rediss://queue.example:6380 --model ./llama --concurrency 2 --threads 4
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const args = parseCommandArgs(argv, spec);
  if (args.help) {
    io.stdout(help);
    return EXIT.ok;
  }
  const v = args.values;
  await loadPlugins(v.plugin);
  const need = (name: string, value: string | undefined): string => {
    if (!value) {
      throw new DsaPruneError(`worker needs --${name}`, { hint: `usage: ${spec.usage}`, exitCode: EXIT.badInput });
    }
    return value;
  };
  const redis = need('redis', v.redis);
  const model = need('model', v.model);
  const quiet = args.common.quiet || args.common.json;
  const log = (m: string): void => {
    if (!quiet) io.stderr(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
  };

  // Reach Redis first: a wrong URL or password is reported before the (possibly long) model load.
  const target = parseRedisUrl(redis);
  const probe = await connectRedis(target, { onRetry: (i, e, ms) => log(`redis ${target.display}: ${e.message}; retry ${i} in ${ms} ms`) });
  probe.disconnect();
  log(`loading ${model}`);
  const backend = await modelBackend({ model, threads: args.common.threads ?? 1, onLog: log });
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => (resolveDone = r));
  const maxJobs = v['max-jobs'];
  const worker = await startWorker({
    redis,
    backend,
    concurrency: v.concurrency,
    prefix: v.prefix,
    lockDurationMs: v['lock-seconds'] * 1000,
    onLog: log,
    onStart: (key) => {
      if (args.common.verbose) log(`start ${key}`);
    },
    onJob: (e) => {
      if (args.common.verbose) log(`done ${e.key} → ${Number.isFinite(e.fitness) ? e.fitness.toFixed(4) : 'inf'} in ${e.seconds.toFixed(2)} s`);
      if (maxJobs !== undefined && worker.completed >= maxJobs) resolveDone();
    },
  });
  const onTerm = (): void => resolveDone();
  process.once('SIGTERM', onTerm);
  if (io.signal) {
    if (io.signal.aborted) resolveDone();
    else io.signal.addEventListener('abort', () => resolveDone(), { once: true });
  }
  const t0 = performance.now();
  await done;
  process.removeListener('SIGTERM', onTerm);
  log(`stopping: finishing running jobs`);
  await worker.close();
  const seconds = (performance.now() - t0) / 1000;
  if (args.common.json) io.stdout(JSON.stringify({ worker: worker.id, completed: worker.completed, seconds, modelHash: backend.modelHash }) + '\n');
  else log(`worker ${worker.id}: ${worker.completed} jobs in ${seconds.toFixed(1)} s`);
  return EXIT.ok;
}
