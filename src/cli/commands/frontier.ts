/**
 * `dsa-prune frontier <modelDir> --calibration <file> --ppl <file> [--sparsities 0,0.3,0.5,0.7] [--allocator a]
 * [--out dir] [--json]`: prune and save a grid of variants, measure bytes and perplexity of each, mark the Pareto
 * front, write frontier.json and frontier.html (src/frontier.ts, src/report/frontier.ts).
 */
import path from 'node:path';
import { renameSync, writeFileSync } from 'node:fs';
import { defineCommand, formatOptions, parseCommandArgs } from '../args.js';
import type { CliIo } from '../io.js';
import { createProgress } from '../progress.js';
import { DsaPruneError, EXIT } from '../../errors.js';
import { frontier } from '../../frontier.js';
import { renderFrontier } from '../../report/frontier.js';
import { allocatorFrom } from './prune.js';

const spec = defineCommand({
  name: 'frontier',
  usage: 'dsa-prune frontier <modelDir> --calibration <file> --ppl <file> [--sparsities 0,0.3,0.5,0.7] [--allocator a] [--out dir] [--json]',
  positionals: { min: 1, max: 1, names: ['modelDir'] },
  options: {
    calibration: { type: 'string', multiple: true, valueName: '<file>', description: 'calibration text file(s) (Wanda / SparseGPT)' },
    ppl: { type: 'string', valueName: '<file>', description: 'text file for perplexity (required)' },
    sparsities: { type: 'string', default: '0,0.3,0.5,0.7', valueName: '<list>', description: 'comma-separated sparsities of the grid (0 = dense)' },
    method: { type: 'string', choices: ['magnitude', 'wanda', 'sparsegpt'], default: 'wanda', description: 'pruning method' },
    allocator: { type: 'string', default: 'uniform', valueName: '<a>', description: 'uniform | owl | atp | dsa:<expression> | @<search-result.json>' },
    nsamples: { type: 'integer', min: 1, default: 128, description: 'calibration sequences' },
    seqlen: { type: 'integer', min: 2, description: "calibration tokens per sequence (default min(2048, the model's context))" },
    'ppl-seqlen': { type: 'integer', min: 2, description: 'perplexity window in tokens (default 512 or --seqlen if smaller)' },
    windows: { type: 'integer', min: 1, description: 'evaluate only the first n perplexity windows' },
    tolerance: { type: 'number', min: 0, default: 0.05, description: '"what to ship": the smallest file within this fraction of the dense fp32 perplexity' },
    out: { type: 'string', valueName: '<dir>', description: 'folder for the variants, frontier.json and frontier.html (default frontier-<model>)' },
    'no-gptq': { type: 'boolean', description: 'leave out the GPTQ q4 points (one calibration pass per sparsity less)' },
    'q4-embedding': { type: 'string', choices: ['q4', 'q8'], default: 'q4', description: 'q4 files: embedding table in 4 bits (tied lm_head: codes stored once) or int8' },
  },
});

export const help = `dsa-prune frontier — which file to ship: size vs perplexity of dense and pruned, plain and 4-bit variants

Usage: ${spec.usage}

Prunes the model at each sparsity and saves every variant a transformers.js user could download: dense fp32 / q8 / q4
and, per sparsity, q4, sparse q4 (block mask + bitmask + non-zero 4-bit codes, loads with dtype 'q4'), GPTQ q4 (codes
from GPTQ error feedback on the calibration windows; needs --calibration, off with --no-gptq) and sparse GPTQ q4. Each file
is loaded as transformers.js loads it and its perplexity measured; the Pareto front (no variant both smaller and
better) is marked. Writes <out>/variants/…, <out>/frontier.json and <out>/frontier.html; the page says in one sentence
what to ship (the smallest file within --tolerance of the dense fp32 perplexity).

${formatOptions(spec.options)}

JSON (--json): { model, method, allocator, sparsities, perplexity, points: [{ name, sparsity, format, dtype, dir,
                 file, bytes, ppl, loadMs, pareto }], recommendation: { name, sentence, tolerance }, page }

Example:
  dsa-prune frontier models/stories260k --calibration calib.txt --ppl eval.txt --sparsities 0,0.5 --nsamples 16 --seqlen 128
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const args = parseCommandArgs(argv, spec);
  if (args.help) {
    io.stdout(help);
    return EXIT.ok;
  }
  const v = args.values;
  const modelDir = args.positionals[0]!;
  if (!v.ppl) throw new DsaPruneError('frontier needs --ppl <file>', { hint: spec.usage });
  const sparsities = v.sparsities.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (!sparsities.length || sparsities.some((s) => !Number.isFinite(s))) {
    throw new DsaPruneError(`--sparsities ${v.sparsities} is not a comma-separated list of numbers`, { hint: 'e.g. --sparsities 0,0.3,0.5,0.7' });
  }
  const out = v.out ?? `frontier-${path.basename(path.resolve(modelDir))}`;
  const chosen = v.allocator === 'uniform' ? undefined : allocatorFrom(v.allocator, {});
  if (typeof chosen === 'function') {
    throw new DsaPruneError(`--allocator ${v.allocator} is a levels search result: it applies to one model and one sparsity, not to a grid`, {
      code: 'invalid-input', hint: 'Use uniform, owl, a DSA expression or a DSA search result (@search.json from --strategy dsa) for the frontier.',
    });
  }
  const progress = createProgress(io, args.common);
  let result;
  try {
    result = await frontier(modelDir, {
      calibration: v.calibration, ppl: v.ppl, sparsities, method: v.method as 'wanda',
      allocator: chosen,
      nsamples: v.nsamples, seqlen: v.seqlen, pplSeqlen: v['ppl-seqlen'], pplWindows: v.windows, tolerance: v.tolerance,
      gptq: v['no-gptq'] ? false : undefined, q4Embedding: v['q4-embedding'] as 'q4' | 'q8',
      out, threads: args.common.threads, onProgress: progress.callback, signal: io.signal,
    });
  } finally {
    progress.done();
  }
  const page = path.join(out, 'frontier.html');
  const tmp = `${page}.tmp-${process.pid}`;
  writeFileSync(tmp, renderFrontier(result));
  renameSync(tmp, page);
  if (args.common.json) {
    io.stdout(JSON.stringify({ ...result, page }, null, 2) + '\n');
    return EXIT.ok;
  }
  io.stdout(`${'variant'.padEnd(22)} ${'bytes'.padStart(12)} ${'ppl'.padStart(10)}  Pareto\n`);
  for (const p of [...result.points].sort((a, b) => a.bytes - b.bytes)) {
    io.stdout(`${p.name.padEnd(22)} ${p.bytes.toLocaleString('en-US').padStart(12)} ${p.ppl.toFixed(3).padStart(10)}  ${p.pareto ? '✓' : ''}\n`);
  }
  io.stdout(`${result.recommendation.sentence}\npage: ${page}\n`);
  return EXIT.ok;
}
