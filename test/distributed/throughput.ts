/**
 * Throughput of the distributed search: evaluations per second with 1 and with 2 single-threaded worker processes on a
 * private loopback redis-server (the numbers in docs/distributed.md).
 *
 *   node --import tsx test/distributed/throughput.ts [--model models/stories260k] [--evals 48] [--windows 8] [--seqlen 128] [--rounds 1]
 *
 * With --rounds r, the configurations run r times in alternating order (1, 2, 2, 1, …) and the median is reported.
 *
 * Each configuration gets fresh workers and its own run; the clock starts after every worker has finished a warm-up
 * job (model loaded, dense statistics fetched, evaluation session built), so it measures steady-state serving.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadModelDir } from '../../src/model/index.js';
import { computeDense, idsSha256 } from '../../src/search/fitness.js';
import { takeWindows, tokenizeText } from '../../src/data/text.js';
import { dsaSpace } from '../../src/search/space.js';
import { Rng } from '../../src/search/random.js';
import { allocationFromScores } from '../../src/allocators/index.js';
import { candidateKey, type Candidate, type SearchSpec } from '../../src/search/types.js';
import { createRedisEvaluator } from '../../src/search/distributed/coordinator.js';
import { startRedis } from './redis-server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: path.join(repoRoot, 'models/stories260k') },
    evals: { type: 'string', default: '48' },
    windows: { type: 'string', default: '8' },
    seqlen: { type: 'string', default: '128' },
    rounds: { type: 'string', default: '1' },
  },
});
const modelDir = path.resolve(values.model!);
const nEvals = Number(values.evals);
const windows = Number(values.windows);
const seqlen = Number(values.seqlen);
const textDir = path.resolve(repoRoot, '../shared/data/text');

function spawnWorker(url: string): Promise<{ child: ChildProcess; id: string }> {
  const extra = process.env.THROUGHPUT_VERBOSE ? ['--verbose'] : [];
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'worker', '--redis', url, '--model', modelDir, '--threads', '1', ...extra], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let log = '';
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (process.env.THROUGHPUT_VERBOSE) process.stderr.write(d);
      const m = /worker (\S+) serving/.exec(log);
      if (m) resolve({ child, id: m[1] });
    });
    child.once('exit', (c) => reject(new Error(`worker exited (${c}): ${log}`)));
  });
}

const redis = await startRedis();
const loaded = await loadModelDir(modelDir, { threads: 1 });
const pm = loaded.prunable;
const text = (f: string) => readFileSync(path.join(textDir, f), 'utf8').slice(0, 200_000);
const calibrationIds = takeWindows(tokenizeText(loaded.tokenizer, text('tinystories_calibration.txt')), seqlen, 16);
const searchIds = takeWindows(tokenizeText(loaded.tokenizer, text('tinystories_eval.txt')), seqlen, windows);
const spec: SearchSpec = {
  method: 'wanda', sparsity: 0.5, budget: 'exact', mode: 'fast',
  calibration: { nsamples: 16, seqlen, sha256: idsSha256(calibrationIds) },
  search: { windows, seqlen, sha256: idsSha256(searchIds) },
  seed: 1, modelHash: pm.modelHash(),
};
const dense = await computeDense(pm, spec, calibrationIds, 1);
const params = dense.blocks.map((b) => b.params);
const space = dsaSpace({ blocks: dense.blocks, allocate: (s, l) => allocationFromScores(s, params, spec.sparsity, l, spec.budget) });

// Distinct valid candidates: warm-ups first, then the timed batch.
const rng = new Rng(2024);
const pool: Candidate[] = [];
const seen = new Set<string>();
const rounds = Number(values.rounds);
while (pool.length < nEvals + 16 * rounds) {
  const c = space.sample(rng);
  if (!space.check(c).ok || seen.has(candidateKey(c))) continue;
  seen.add(candidateKey(c));
  pool.push(c);
}

const runs: { workers: number; evals: number; seconds: number; perSecond: number }[] = [];
let fitnessOf: Map<string, number> | undefined;
let warmIdx = nEvals;
const order = Array.from({ length: rounds }, (_, r) => (r % 2 === 0 ? [1, 2] : [2, 1])).flat();
for (const k of order) {
  const workers = await Promise.all(Array.from({ length: k }, () => spawnWorker(redis.url)));
  const ev = await createRedisEvaluator({ redis: redis.url, spec, calibrationIds, searchIds, runId: `throughput-${k}-${Date.now()}` });
  await ev.shareDense(dense);
  while (Object.keys(ev.stats.byWorker).length < k) await ev.evaluate(pool.slice(warmIdx, (warmIdx += k)));
  const t0 = performance.now();
  const res = await ev.evaluate(pool.slice(0, nEvals));
  const seconds = (performance.now() - t0) / 1000;
  runs.push({ workers: k, evals: nEvals, seconds, perSecond: nEvals / seconds });
  const f = new Map(res.map((r) => [r.key, r.fitness]));
  if (fitnessOf) for (const [key, v] of f) if (fitnessOf.get(key) !== v) throw new Error(`fitness of ${key} differs between runs`);
  fitnessOf = f;
  await ev.close();
  for (const w of workers) w.child.kill('SIGTERM');
  await Promise.all(workers.map((w) => new Promise((r) => (w.child.exitCode !== null ? r(null) : w.child.once('exit', r)))));
}
await redis.stop();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const rate = (k: number) => median(runs.filter((r) => r.workers === k).map((r) => r.perSecond));
const results = { '1': { perSecond: rate(1) }, '2': { perSecond: rate(2) }, runs };
const speedup = results['2'].perSecond / results['1'].perSecond;
console.log(
  JSON.stringify(
    {
      model: path.relative(repoRoot, modelDir), evals: nEvals, windows, seqlen, cores: os.availableParallelism(),
      loadAverage: os.loadavg().map((x) => Number(x.toFixed(2))), results, speedup: Number(speedup.toFixed(3)),
    },
    null,
    2,
  ),
);
process.exit(0);
