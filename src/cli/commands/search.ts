import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { defineCommand, formatOptions, parseCommandArgs } from '../args.js';
import type { CliIo } from '../io.js';
import { loadPlugins, PLUGIN_OPTION } from '../plugins.js';
import { formatDuration } from '../progress.js';
import { DsaPruneError, EXIT } from '../../errors.js';
import { loadModelDir } from '../../model/index.js';
import { readTextFile, tokenizeText, type TextTokenizer } from '../../data/text.js';
import { readCheckpoint } from '../../search/checkpoint.js';
import { packageRoot } from '../../eval/tasks/files.js';
import { writeFileAtomicSync } from '../../data/atomic.js';
import { searchModel, type SearchOutput } from '../../search/run.js';
import { checkStructuredSearch } from '../../search/structured-fitness.js';
import { searchChart } from '../../report/search-chart.js';
import { levelSearch, parseLevelStages, readLevelCheckpoint } from '../../search/levels.js';
import { allocatorFrom } from './prune.js';
import { linearProfileChart } from '../../report/profile-chart.js';

const spec = defineCommand({
  name: 'search',
  usage: 'dsa-prune search <modelDir> --method wanda --sparsity 0.7 --calibration <file> [--search-text <file>] --evals <n> [options]',
  positionals: { min: 1, max: 1, names: ['modelDir'] },
  options: {
    method: { type: 'string', default: 'wanda', description: 'pruning method the allocation is searched for: wanda, magnitude, sparsegpt, structured (per-block FFN widths), or one a --plugin registers' },
    target: { type: 'string', valueName: '<t>', description: '--method structured: what is allocated per block (ffn, the only searchable target)' },
    score: { type: 'string', valueName: '<s>', description: '--method structured: channel score wanda-sp (default), flap (with its bias compensation) or magnitude' },
    plugin: PLUGIN_OPTION,
    sparsity: { type: 'number', min: 0, max: 1, minExclusive: true, maxExclusive: true, default: 0.7, description: 'global target sparsity' },
    strategy: { type: 'string', choices: ['dsa', 'levels'], default: 'dsa', description: 'dsa: evolve an allocation function (transfers); levels: level-switch search of per-linear sparsities (this model only)' },
    offspring: { type: 'integer', min: 1, default: 16, description: 'levels: offspring per generation (λ)' },
    fitness: { type: 'string', choices: ['ppl', 'kl'], default: 'ppl', description: 'ppl: search-split perplexity; kl: mean KL(dense ‖ pruned) from the dense top-k' },
    'kl-top-k': { type: 'integer', min: 1, default: 256, description: 'dense next-token probabilities kept per position for --fitness kl (the rest is one bucket)' },
    granularity: { type: 'string', choices: ['block', 'linear'], default: 'block', description: 'the allocation function gives one sparsity per block, or per linear' },
    budget: { type: 'string', choices: ['exact', 'reference'], default: 'exact', description: 'exact: realised = target; reference: the reference code rounding' },
    calibration: { type: 'string', valueName: '<file>', description: 'calibration text (dense statistics)' },
    nsamples: { type: 'integer', min: 1, default: 128, description: 'calibration sequences' },
    seqlen: { type: 'integer', min: 2, default: 512, description: 'tokens per calibration sequence' },
    'search-text': { type: 'string', valueName: '<file>', description: 'search split (default: the calibration text after the calibration windows); must not be an evaluation file' },
    'search-windows': { type: 'integer', min: 1, default: 16, description: 'windows of the search split scored per candidate' },
    'search-seqlen': { type: 'integer', min: 2, description: 'tokens per search window (default min(512, --seqlen))' },
    'eval-text': { type: 'string', multiple: true, valueName: '<file>', description: 'evaluation file(s) the search text must differ from' },
    evals: { type: 'integer', min: 1, default: 300, description: 'evaluation budget' },
    time: { type: 'number', min: 0, minExclusive: true, valueName: '<min>', description: 'wall-clock cap in minutes' },
    mode: { type: 'string', choices: ['fast', 'faithful'], default: 'fast', description: 'fast: one-shot prune from dense statistics; faithful: sequential prune per candidate' },
    workers: { type: 'integer', min: 1, max: 256, description: 'evaluation worker threads (default: one per core)' },
    redis: { type: 'string', valueName: '<url>', description: 'evaluate on `dsa-prune worker` processes through this Redis (redis://, rediss://)' },
    'run-id': { type: 'string', valueName: '<id>', description: 'run id on Redis (default: derived from the run, so a restart resumes it)' },
    'redis-prefix': { type: 'string', valueName: '<p>', description: 'key prefix on Redis' },
    seed: { type: 'integer', default: 0, description: 'seed (equal seeds give equal searches)' },
    population: { type: 'integer', min: 2, default: 16, description: 'population size' },
    random: { type: 'boolean', description: 'also run random search with the same budget (baseline)' },
    'random-only': { type: 'boolean', description: 'run only the random-search baseline' },
    resume: { type: 'string', valueName: '<ckpt>', description: 'continue an interrupted search from its checkpoint' },
    checkpoint: { type: 'string', valueName: '<file>', description: 'checkpoint written after every generation (default: <out>.checkpoint.json)' },
    out: { type: 'string', short: 'o', valueName: '<file>', description: 'result JSON (for `dsa-prune prune --allocator @<file>`); a chart is written next to it (.svg)' },
    'no-final': { type: 'boolean', description: 'skip re-applying the best function with the faithful prune' },
    'level-step': { type: 'number', min: 0, max: 1, minExclusive: true, maxExclusive: true, default: 0.05, description: 'levels: one level = this fraction of the smallest unit, in weights' },
    'level-spread': { type: 'number', min: 0, max: 1, minExclusive: true, default: 0.25, description: 'levels: levels within ±spread of the target sparsity' },
    'level-stages': { type: 'string', valueName: '<w:k,…>', description: 'levels: stages as windows:keep, e.g. 1:8,4:2,16:1 (default: ¼ of --search-windows → 4, ½ → 1, all → 1)' },
    'level-sampling': { type: 'string', choices: ['fixed', 'resample'], default: 'fixed', description: 'levels: fixed = the first windows every generation; resample = fresh windows per stage and generation, the parent re-scored in the last stage (EvoPress)' },
    'level-switches': { type: 'string', choices: ['uniform', 'evopress'], default: 'uniform', description: 'levels: switches per offspring, 1..max uniformly, or the smaller of two draws (EvoPress, favours 1)' },
    'level-max-switches': { type: 'integer', min: 1, default: 3, description: 'levels: at most this many level switches per offspring' },
    'level-start': { type: 'string', valueName: '<allocator>', description: 'levels: start from this allocation (as prune --allocator: owl, dsa:<expr>, @search.json, explicit:…) snapped to the grid, instead of uniform' },
    'level-db-memory': { type: 'number', min: 0, valueName: '<MiB>', description: 'levels + sparsegpt: hold the level database in memory up to this size (default 1024), else in a temporary folder' },
    'level-db-dir': { type: 'string', valueName: '<dir>', description: 'levels + sparsegpt: parent folder of the on-disk level database (default the OS temp folder)' },
  },
});

export const help = `dsa-prune search — evolutionary search for a DSA allocation function

Fitness = perplexity, on a search split disjoint from evaluation data, of the model pruned with the candidate's
allocation (fast: one-shot from dense statistics; faithful: the sequential prune). The best function is re-applied
with the faithful prune at the end. Checkpoints after every generation; --resume continues exactly.

Usage: ${spec.usage}

${formatOptions(spec.options)}

Examples:
  dsa-prune search models/stories260k --sparsity 0.7 --calibration calib.txt --nsamples 64 --evals 100 --out best.json
  dsa-prune search bench-12l --calibration calibration.txt --evals 300 --workers 2 --random --out search.json
  dsa-prune search bench-12l --calibration calibration.txt --evals 300 --redis redis://10.0.0.5:6379 --out search.json
  dsa-prune prune bench-12l --out pruned --allocator @search.json --calibration calibration.txt
  dsa-prune search bench-12l --method structured --target ffn --score wanda-sp --sparsity 0.2 --calibration calibration.txt --nsamples 16 --evals 150 --out ssearch.json
  dsa-prune prune bench-12l --method structured --target ffn --score wanda-sp --sparsity 0.2 --allocator @ssearch.json --calibration calibration.txt --nsamples 16 --out pruned
`;

const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/**
 * Evaluation files the package ships (compared by content hash). Any other evaluation file is named explicitly with
 * --eval-text: the package never looks in folders outside itself or the paths it is given.
 */
function knownEvalFiles(): string[] {
  const f = path.join(packageRoot(), 'data/tinystories/tinystories_eval.txt');
  return existsSync(f) ? [f] : [];
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const args = parseCommandArgs(argv, spec);
  if (args.help) {
    io.stdout(help);
    return EXIT.ok;
  }
  const v = args.values;
  const modelDir = args.positionals[0]!;
  // User methods first (an unknown --method is refused here, before anything is read).
  const structured = v.method === 'structured';
  const plugins = await loadPlugins(v.plugin, structured ? undefined : v.method);
  if (!structured && (v.target !== undefined || v.score !== undefined)) {
    throw new DsaPruneError('--target and --score apply to --method structured only', { hint: 'Add --method structured, or drop --target / --score.' });
  }
  const structuredOpt = structured ? { structured: { ...(v.target !== undefined ? { target: v.target } : {}), ...(v.score !== undefined ? { score: v.score } : {}) } } : {};
  if (structured) {
    // Refused before the model is read (heads / depth / faithful / linear granularity).
    checkStructuredSearch({ target: v.target, score: v.score, granularity: v.granularity, ...(v.strategy === 'dsa' ? { mode: v.mode } : {}) });
  }
  if (!v.calibration) throw new DsaPruneError('search needs --calibration <file> (dense statistics come from it)', { hint: spec.usage });
  if (v.random && v['random-only']) throw new DsaPruneError('--random and --random-only exclude each other');
  const quiet = args.common.json || args.common.quiet;
  const say = (s: string) => {
    if (!quiet) io.stderr(s + '\n');
  };

  // The search split must be disjoint from evaluation data.
  const calBytes = readFileSync(v.calibration);
  let searchBytes: Buffer | undefined;
  if (v['search-text']) {
    searchBytes = readFileSync(v['search-text']);
    const h = sha(searchBytes);
    for (const f of [...(v['eval-text'] ?? []), ...knownEvalFiles()]) {
      if (sha(readFileSync(f)) === h) {
        throw new DsaPruneError(`--search-text ${v['search-text']} is the evaluation file ${f}: a search must not see the data it is evaluated on`, { code: 'refused',
          hint: 'pass a held-out part of your training/calibration text, or omit --search-text to use the calibration text after the calibration windows',
        });
      }
    }
    if (h === sha(calBytes)) searchBytes = undefined; // same file: use its part after the calibration windows
  }
  for (const f of v['eval-text'] ?? []) {
    if (sha(readFileSync(f)) === sha(calBytes) && !searchBytes) {
      throw new DsaPruneError(`--calibration ${v.calibration} is the evaluation file ${f}; its tail would be the search split`, { code: 'refused',
        hint: 'pass --search-text with held-out text',
      });
    }
  }

  const { prunable, tokenizer } = await loadModelDir(modelDir, { threads: args.common.threads });
  if (!tokenizer) throw new DsaPruneError(`${modelDir} has no tokenizer files; search needs to tokenize the texts`);
  say(`tokenizing ${v.calibration}${searchBytes ? ` and ${v['search-text']}` : ''}`);
  const calIds = tokenizeText(tokenizer as TextTokenizer, await readTextFile(v.calibration));
  const used = v.nsamples * v.seqlen;
  if (calIds.length < used) {
    throw new DsaPruneError(`not enough calibration: ${v.nsamples} windows of ${v.seqlen} tokens need ${used} tokens, ${v.calibration} has ${calIds.length}`, {
      hint: 'use a longer text, fewer --nsamples or a shorter --seqlen',
    });
  }
  let searchIds: Int32Array;
  if (searchBytes) searchIds = tokenizeText(tokenizer as TextTokenizer, await readTextFile(v['search-text']!));
  else {
    searchIds = calIds.subarray(used);
    say(`search split: the calibration text after its first ${v.nsamples} × ${v.seqlen} tokens (${searchIds.length} tokens; never an evaluation file)`);
  }

  const out = v.out;
  const pruneFlags = structured ? `--method structured --target ffn --score ${v.score ?? 'wanda-sp'} --sparsity ${v.sparsity} ` : '';
  const checkpointPath = v.checkpoint ?? v.resume ?? (out ? out.replace(/\.json$/i, '') + '.checkpoint.json' : 'search.checkpoint.json');
  if (v.strategy === 'levels') {
    if (v.random || v['random-only'] || v.mode === 'faithful') {
      throw new DsaPruneError('--strategy levels evaluates with the fast fitness and has no random baseline: --random, --random-only and --mode faithful are for --strategy dsa');
    }
    // --level-start: any allocator prune --allocator takes (a levels result only on its own model).
    const startSpec = v['level-start'] !== undefined ? allocatorFrom(v['level-start'], {}) : undefined;
    const start = typeof startSpec === 'function' ? startSpec(prunable.modelHash()) : startSpec;
    const lr = await levelSearch(prunable, {
      method: v.method, sparsity: v.sparsity, granularity: v.granularity as 'block' | 'linear', fitness: v.fitness as 'ppl' | 'kl', klTopK: v['kl-top-k'],
      budget: v.budget as 'exact', calibrationIds: calIds.subarray(0, used), nsamples: v.nsamples, seqlen: v.seqlen, searchIds, ...structuredOpt,
      searchWindows: v['search-windows'], searchSeqlen: v['search-seqlen'], evaluations: v.evals, offspring: v.offspring,
      timeLimitSeconds: v.time !== undefined ? v.time * 60 : undefined, threads: args.common.threads, seed: v.seed, checkpointPath,
      step: v['level-step'], spread: v['level-spread'],
      ...(v['level-stages'] !== undefined ? { stages: parseLevelStages(v['level-stages']) } : {}),
      sampling: v['level-sampling'] as 'fixed' | 'resample', switchDistribution: v['level-switches'] as 'uniform' | 'evopress', maxSwitches: v['level-max-switches'],
      ...(start ? { start } : {}), workers: v.workers ?? 1, modelDir, redis: v.redis, runId: v['run-id'], redisPrefix: v['redis-prefix'], onPhase: (m) => say(m),
      levelDb: { ...(v['level-db-memory'] !== undefined ? { maxMemoryBytes: v['level-db-memory'] * 1024 ** 2 } : {}), ...(v['level-db-dir'] ? { dir: v['level-db-dir'] } : {}) },
      resume: v.resume ? await readLevelCheckpoint(v.resume) : undefined, signal: io.signal,
      onProgress: (p) => say(`levels gen ${p.generation}  evals ${p.evaluations.toFixed(2)}/${p.budget}  best ${p.best.toFixed(4)}`),
    });
    const json = { ...lr, model: modelDir, method: v.method, sparsity: v.sparsity, budget: v.budget, seed: v.seed, checkpoint: checkpointPath };
    const text = JSON.stringify(json, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : x), 2) + '\n';
    if (out) {
      writeFileAtomicSync(out, text);
      const profile = prunable.linears.filter((l) => l.block >= 0 && lr.best.linearSparsity[l.name] !== undefined)
        .map((l) => ({ name: l.name, block: l.block, role: l.role, sparsity: lr.best.linearSparsity[l.name]! }));
      writeFileAtomicSync(out.replace(/\.json$/i, '') + '.svg', linearProfileChart(profile, v.sparsity, `Levels search — ${v.method} ${(v.sparsity * 100).toFixed(0)} %, per-linear sparsity`));
    }
    if (args.common.json) io.stdout(text);
    else if (!args.common.quiet) {
      io.stdout(`levels (${lr.granularity}, ${lr.fitness}): fitness ${lr.best.fitness.toFixed(4)} after ${lr.evaluations.toFixed(2)} evaluations, ${lr.generations} generations (${lr.stoppedBy})\n`);
      io.stdout(`per block: ${lr.best.blockSparsity.map((s) => (s * 100).toFixed(1) + '%').join(' ')}\n`);
      if (out) io.stdout(`wrote ${out}; prune this model with: dsa-prune prune ${modelDir} ${pruneFlags}--allocator @${out} --calibration ${v.calibration} --out <dir>\n`);
    }
    return EXIT.ok;
  }
  const resume = v.resume ? await readCheckpoint(v.resume) : undefined;
  const result: SearchOutput = await searchModel(prunable, {
    modelDir, method: v.method, sparsity: v.sparsity, granularity: v.granularity as 'block' | 'linear',
    fitness: v.fitness as 'ppl' | 'kl', klTopK: v['kl-top-k'], budget: v.budget as 'exact', mode: v.mode as 'fast',
    calibrationIds: calIds.subarray(0, used), nsamples: v.nsamples, seqlen: v.seqlen, searchIds,
    searchWindows: v['search-windows'], searchSeqlen: v['search-seqlen'], evaluations: v.evals,
    timeLimitSeconds: v.time !== undefined ? v.time * 60 : undefined, workers: v.workers, threads: args.common.threads,
    redis: v.redis, runId: v['run-id'], redisPrefix: v['redis-prefix'], plugins, ...structuredOpt,
    seed: v.seed, population: v.population, random: v.random, randomOnly: v['random-only'], checkpointPath, resume,
    final: !v['no-final'], signal: io.signal,
    onPhase: (m) => say(m),
    onProgress: (p) => {
      if (quiet || !p.generationDone) return;
      say(`${p.strategy === 'random' ? 'random ' : ''}gen ${p.generation}  evals ${p.evaluations}/${p.budget}  best ${p.bestFitness.toFixed(3)}  ${(p.evalsPerSecond * 60).toFixed(1)} evals/min  ETA ${formatDuration(p.etaSeconds)}`);
    },
  });

  const json = {
    best: result.best, history: result.history, ...(result.random ? { random: result.random, randomBest: result.randomBest } : {}),
    evaluations: result.evaluations, generations: result.generations, rejected: result.rejected, stoppedBy: result.stoppedBy,
    model: result.model, method: result.method, ...(result.structured ? { structured: result.structured } : {}), sparsity: result.sparsity, budget: result.budget, mode: result.mode, granularity: result.granularity, fitness: result.fitness, seed: result.seed,
    settings: result.settings, spec: result.spec, seconds: result.seconds, evalsPerMinute: result.evalsPerMinute, checkpoint: checkpointPath,
  };
  const text = JSON.stringify(json, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : x), 2) + '\n';
  if (out) {
    writeFileAtomicSync(out, text);
    writeFileAtomicSync(out.replace(/\.json$/i, '') + '.svg', searchChart(result));
  }
  if (args.common.json) io.stdout(text);
  else if (!args.common.quiet) {
    const b = result.best;
    io.stdout(`best: ${b.expression}  (${b.simplified}), λ = ${b.lambda}\n`);
    io.stdout(`fitness ${b.fitness.toFixed(4)} (${result.mode})${b.faithful ? `, faithful prune ${b.faithful.fitness.toFixed(4)}` : ''} after ${result.evaluations} evaluations (${result.evalsPerMinute.toFixed(1)}/min)\n`);
    io.stdout(`per block: ${b.blockSparsity.map((s) => (s * 100).toFixed(1) + '%').join(' ')}\n`);
    if (result.randomBest) io.stdout(`random search (same budget): best ${result.randomBest.fitness.toFixed(4)} — ${result.randomBest.expression}, λ = ${result.randomBest.lambda}\n`);
    if (b.ffnWidths) io.stdout(`FFN width kept per block (faithful structured prune): ${b.ffnWidths.join(' ')}\n`);
    if (out) io.stdout(`wrote ${out} and ${out.replace(/\.json$/i, '')}.svg; prune with: dsa-prune prune ${modelDir} ${pruneFlags}--allocator @${out} --calibration ${v.calibration} --out <dir>\n`);
  }
  return EXIT.ok;
}
