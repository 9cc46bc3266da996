/**
 * `dsa-prune frontier <modelDir> --calibration <file> --ppl <file> [--sparsities 0,0.3,0.5,0.7] [--allocator a]
 * [--out dir] [--json]`: prune and save a grid of variants, measure bytes and perplexity of each, mark the Pareto
 * front, write frontier.json and frontier.html (src/frontier.ts, src/report/frontier.ts).
 */
import path from 'node:path';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { defineCommand, formatOptions, parseCommandArgs } from '../args.js';
import type { CliIo } from '../io.js';
import { createProgress } from '../progress.js';
import { DsaPruneError, EXIT } from '../../errors.js';
import { frontier, type FrontierStructuredVariant } from '../../frontier.js';
import { isStructuredResult } from '../../search/structured-fitness.js';
import { renderFrontier } from '../../report/frontier.js';
import { allocatorFrom } from './prune.js';

const spec = defineCommand({
  name: 'frontier',
  usage: 'dsa-prune frontier <modelDir> --calibration <file> --ppl <file> [--ppl <file> …] [--sparsities 0,0.3,0.5,0.7] [--allocator a] [--structured 0.2,0.3] [--structured-search @result.json] [--out dir] [--json]',
  positionals: { min: 1, max: 1, names: ['modelDir'] },
  options: {
    calibration: { type: 'string', multiple: true, valueName: '<file>', description: 'calibration text file(s) (Wanda / SparseGPT)' },
    ppl: { type: 'string', multiple: true, valueName: '<file>', description: 'text file for perplexity (required; repeat for more texts: the first decides the front)' },
    sparsities: { type: 'string', default: '0,0.3,0.5,0.7', valueName: '<list>', description: 'comma-separated sparsities of the grid (0 = dense)' },
    method: { type: 'string', choices: ['magnitude', 'wanda', 'sparsegpt'], default: 'wanda', description: 'pruning method' },
    allocator: { type: 'string', default: 'uniform', valueName: '<a>', description: 'uniform | owl | atp | dsa:<expression> | @<search-result.json>' },
    nsamples: { type: 'integer', min: 1, default: 128, description: 'calibration sequences' },
    seqlen: { type: 'integer', min: 2, description: "calibration tokens per sequence (default min(2048, the model's context))" },
    'ppl-seqlen': { type: 'integer', min: 2, description: 'perplexity window in tokens (default 512 or --seqlen if smaller)' },
    windows: { type: 'integer', min: 1, description: 'evaluate only the first n perplexity windows' },
    tolerance: { type: 'number', min: 0, default: 0.05, description: '"what to ship": the smallest file within this fraction of the dense fp32 perplexity' },
    structured: { type: 'string', valueName: '<list>', description: 'also structured FFN variants (channels removed, then q4) at these sparsities of the block linear parameters' },
    'structured-score': { type: 'string', choices: ['wanda-sp', 'flap', 'magnitude'], default: 'wanda-sp', description: 'channel score of the --structured variants' },
    'structured-search': { type: 'string', multiple: true, valueName: '@<result.json>', description: 'also the searched FFN widths of a `search --method structured` result (at its sparsity and score)' },
    out: { type: 'string', valueName: '<dir>', description: 'folder for the variants, frontier.json and frontier.html (default frontier-<model>)' },
    'no-gptq': { type: 'boolean', description: 'leave out the GPTQ q4 points (one calibration pass per sparsity less)' },
    'q4-embedding': { type: 'string', choices: ['q4', 'q8'], default: 'q4', description: 'q4 files: embedding table in 4 bits (tied lm_head: codes stored once) or int8' },
    'q4-head-block': { type: 'integer', min: 16, valueName: '<n>', description: 'q4 files: block size of the lm_head and the 4-bit embedding table only (power of two ≥ 16; default 16 when it divides the table, else 32; 32 = the exporters\' uniform layout)' },
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

--structured 0.2,0.3 adds structured variants: --method structured --target ffn (--structured-score, default
wanda-sp; uniform widths) at those sparsities of the block linear parameters, FFN channels removed, saved as q4 — a
smaller dense file, where the unstructured points need sparse q4 to shrink. --structured-search @result.json adds the
searched widths of a \`search --method structured\` result (its own sparsity and score; that model only). Several --ppl
texts: each point is measured on all; the first decides the front and the recommendation.

${formatOptions(spec.options)}

JSON (--json): { model, method, allocator, sparsities, perplexity: { file, seqlen, windows?, files }, points: [{ name,
                 sparsity, format, dtype, dir, file, bytes, ppl, ppls: [{ file, ppl }], tokensPerSecond, loadMs, pareto,
                 structured? }], recommendation: { name, sentence, tolerance }, page }

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
  if (!v.ppl?.length) throw new DsaPruneError('frontier needs --ppl <file>', { hint: spec.usage });
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
  const structured: FrontierStructuredVariant[] = [];
  if (v.structured !== undefined) {
    const list = v.structured.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
    if (!list.length || list.some((s) => !Number.isFinite(s))) {
      throw new DsaPruneError(`--structured ${v.structured} is not a comma-separated list of numbers`, { code: 'invalid-input', hint: 'e.g. --structured 0.2,0.25,0.3' });
    }
    for (const s of list) structured.push({ sparsity: s, score: v['structured-score'] as 'wanda-sp' });
  }
  for (const value of v['structured-search'] ?? []) {
    if (!value.startsWith('@')) throw new DsaPruneError(`--structured-search ${value}: pass the result file as @<result.json>`, { code: 'invalid-input', hint: 'e.g. --structured-search @ssearch.json' });
    const file = value.slice(1);
    let raw: { sparsity?: unknown; structured?: { score?: unknown }; spec?: { structured?: { score?: unknown } } };
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new DsaPruneError(`cannot read search result ${file}: ${(e as Error).message}`, { code: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not-found' : 'invalid-data', hint: 'Pass the JSON written by `dsa-prune search --method structured --out`.', cause: e });
    }
    if (!isStructuredResult(raw) || typeof raw.sparsity !== 'number') {
      throw new DsaPruneError(`--structured-search ${file} is not a structured search result`, { code: 'invalid-input', hint: 'Pass the JSON written by `dsa-prune search --method structured --out`.' });
    }
    const score = String(raw.structured?.score ?? raw.spec?.structured?.score ?? 'wanda-sp') as 'wanda-sp';
    const alloc = allocatorFrom(value, { method: 'structured', target: ['ffn'], score, sparsity: raw.sparsity });
    structured.push({ sparsity: raw.sparsity, score, allocator: alloc, label: 'searched' });
  }
  const progress = createProgress(io, args.common);
  let result;
  try {
    result = await frontier(modelDir, {
      calibration: v.calibration, ppl: v.ppl, sparsities, method: v.method as 'wanda',
      allocator: chosen,
      nsamples: v.nsamples, seqlen: v.seqlen, pplSeqlen: v['ppl-seqlen'], pplWindows: v.windows, tolerance: v.tolerance,
      structured,
      gptq: v['no-gptq'] ? false : undefined, q4Embedding: v['q4-embedding'] as 'q4' | 'q8', ...(v['q4-head-block'] !== undefined ? { q4HeadBlock: v['q4-head-block'] as number } : {}),
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
  const more = result.perplexity.files.length > 1;
  io.stdout(`${'variant'.padEnd(26)} ${'bytes'.padStart(12)} ${(more ? result.perplexity.files.map((f, k) => `ppl[${k}]`.padStart(10)).join(' ') : 'ppl'.padStart(10))}  Pareto\n`);
  for (const p of [...result.points].sort((a, b) => a.bytes - b.bytes)) {
    io.stdout(`${p.name.padEnd(26)} ${p.bytes.toLocaleString('en-US').padStart(12)} ${p.ppls.map((x) => x.ppl.toFixed(3).padStart(10)).join(' ')}  ${p.pareto ? '✓' : ''}\n`);
  }
  if (more) result.perplexity.files.forEach((f, k) => io.stdout(`ppl[${k}]: ${f}\n`));
  io.stdout(`${result.recommendation.sentence}\npage: ${page}\n`);
  return EXIT.ok;
}
