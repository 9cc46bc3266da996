/**
 * `dsa-prune demo`: the newcomer's main job on the embedded stories260k model — dense perplexity on the shipped
 * TinyStories eval text, Wanda at 50 % (uniform), save to ./out/stories260k-pruned, perplexity again, the OWL
 * allocation of the same budget for comparison, and the HTML report. Well under a minute on 2 cores.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { defineCommand, formatOptions, parseCommandArgs } from '../args.js';
import type { CliIo } from '../io.js';
import { createProgress } from '../progress.js';
import { DsaPruneError, EXIT } from '../../errors.js';
import { loadModelDir } from '../../model/index.js';
import { planPrune, pruneModel, type PruneOptions } from '../../prune.js';
import { savePruned } from '../../save.js';
import { owl } from '../../allocators/index.js';
import { perplexity } from '../../eval/perplexity.js';
import { tokenizeText } from '../../data/text.js';
import { writeReport } from '../../report/load.js';
import { formatNumber } from '../../report/charts.js';
import { packageRoot } from '../../eval/tasks/files.js';

const spec = defineCommand({
  name: 'demo',
  usage: 'dsa-prune demo [--out <dir>] [--method wanda] [--sparsity 0.5] [--no-compare]',
  options: {
    out: { type: 'string', short: 'o', valueName: '<dir>', default: 'out/stories260k-pruned', description: 'where to save the pruned model and report.html' },
    method: { type: 'string', choices: ['magnitude', 'wanda', 'sparsegpt'], default: 'wanda', description: 'pruning method' },
    sparsity: { type: 'number', min: 0, max: 1, maxExclusive: true, default: 0.5, description: 'target sparsity' },
    nsamples: { type: 'integer', min: 1, default: 64, description: 'calibration sequences' },
    seqlen: { type: 'integer', min: 2, max: 512, default: 512, description: 'tokens per calibration / perplexity window' },
    windows: { type: 'integer', min: 1, description: 'evaluate only the first n perplexity windows (faster, less exact)' },
    'no-compare': { type: 'boolean', description: 'skip the OWL allocation shown next to uniform in the report' },
  },
});

export const help = `dsa-prune demo — prune the embedded stories260k model end to end

usage: ${spec.usage}

Loads the stories260k model shipped in the package (a 5-block Llama), measures its perplexity on the shipped
TinyStories eval text, prunes it with Wanda at 50 % (calibration: the shipped TinyStories calibration text,
64 × 512 tokens), saves it to ./out/stories260k-pruned, measures again, and writes report.html next to it
(per-block sparsity of uniform vs OWL, dense vs pruned perplexity). Nothing is downloaded.

options:
${formatOptions(spec.options)}

examples:
  dsa-prune demo
  dsa-prune demo --method sparsegpt --sparsity 0.6 --out out/sgpt60
  dsa-prune demo --json
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const args = parseCommandArgs(argv, spec);
  if (args.help) {
    io.stdout(help);
    return EXIT.ok;
  }
  const v = args.values;
  const t0 = performance.now();
  const root = packageRoot();
  const modelDir = path.join(root, 'models/stories260k');
  const calibFile = path.join(root, 'data/tinystories/tinystories_calibration.txt');
  const evalFile = path.join(root, 'data/tinystories/tinystories_eval.txt');
  for (const f of [modelDir, calibFile, evalFile]) {
    if (!existsSync(f)) throw new DsaPruneError(`the demo needs ${f}, which is missing from this installation`, { hint: 'reinstall dsa-prune' });
  }
  const out = path.resolve(v.out);
  if (existsSync(out) && readdirSync(out).length > 0 && !existsSync(path.join(out, 'pruning.json'))) {
    throw new DsaPruneError(`--out ${v.out} exists and is not an earlier demo output (no pruning.json)`, {
      hint: 'choose an empty or new folder with --out',
      exitCode: EXIT.badInput,
    });
  }
  const progress = createProgress(io, args.common);
  const say = (s: string) => progress.log(s);
  const { model, tokenizer } = await loadModelDir(modelDir, { threads: args.common.threads });
  try {
    const evalIds = tokenizeText(tokenizer, readFileSync(evalFile, 'utf8'));
    const ppl = async (label: string) =>
      (
        await perplexity(model, evalIds, {
          seqlen: v.seqlen,
          limitWindows: v.windows,
          signal: io.signal,
          onProgress: (p) => progress.callback({ ...p, phase: label }),
        })
      ).ppl;

    say(`stories260k: dense perplexity on tinystories_eval (seqlen ${v.seqlen}) …`);
    const tDense = performance.now();
    const densePpl = await ppl('dense perplexity');
    const denseSeconds = (performance.now() - tDense) / 1000;

    const base: PruneOptions = {
      method: v.method,
      sparsity: v.sparsity,
      calibration: { files: [calibFile] },
      nsamples: v.nsamples,
      seqlen: v.seqlen,
      threads: args.common.threads,
      onProgress: progress.callback,
      signal: io.signal,
    };
    let owlBlocks: number[] | undefined;
    if (!v['no-compare']) {
      say('OWL allocation of the same budget, for the report …');
      owlBlocks = (await planPrune(model, { ...base, allocator: owl() })).blockSparsity;
    }
    say(`pruning: ${v.method} ${formatNumber(v.sparsity * 100)}% unstructured, calibration ${v.nsamples} × ${v.seqlen} tokens …`);
    const report = await pruneModel(model, base);

    say('pruned perplexity …');
    const tPruned = performance.now();
    const prunedPpl = await ppl('pruned perplexity');
    const prunedSeconds = (performance.now() - tPruned) / 1000;
    progress.done();

    await savePruned(model, out, {
      overwrite: true,
      manifest: {
        model: 'stories260k',
        quality: {
          dense: { ppl: densePpl, pplData: 'tinystories_eval' },
          pruned: { ppl: prunedPpl, pplData: 'tinystories_eval' },
        },
        // this model is the uniform allocation: OWL of the same budget is the comparison
        ...(owlBlocks ? { compare: { owl: owlBlocks } } : {}),
        seconds: {
          'dense perplexity': denseSeconds,
          'calibration (prune)': report.seconds.calibration,
          'prune': report.seconds.prune,
          'prune total': report.seconds.total,
          'pruned perplexity': prunedSeconds,
          'demo total': (performance.now() - t0) / 1000,
        },
      },
    });
    const reportPath = await writeReport(out);
    const seconds = (performance.now() - t0) / 1000;
    const summary = {
      model: 'stories260k',
      method: report.method,
      sparsity: report.sparsity,
      realizedSparsity: report.realizedSparsity,
      ppl: { dense: densePpl, pruned: prunedPpl, data: 'tinystories_eval', seqlen: v.seqlen },
      blockSparsity: report.blockSparsity,
      ...(owlBlocks ? { owlBlockSparsity: owlBlocks } : {}),
      out,
      report: reportPath,
      seconds,
    };
    if (args.common.json) io.stdout(`${JSON.stringify(summary, null, 2)}\n`);
    else if (!args.common.quiet) {
      io.stdout(
        [
          '',
          `stories260k pruned with ${report.method} at ${formatNumber(report.sparsity * 100)}% (realised ${formatNumber(report.realizedSparsity * 100, 5)}%)`,
          `perplexity on tinystories_eval: dense ${densePpl.toFixed(4)} → pruned ${prunedPpl.toFixed(4)}`,
          `per block: ${report.blockSparsity.map((s) => `${(s * 100).toFixed(1)}%`).join(' ')}`,
          ...(owlBlocks ? [`OWL would give: ${owlBlocks.map((s) => `${(s * 100).toFixed(1)}%`).join(' ')}`] : []),
          `saved: ${path.relative(process.cwd(), out) || '.'}   (load it with AutoModelForCausalLM.from_pretrained)`,
          `report: ${path.relative(process.cwd(), reportPath)}`,
          `done in ${seconds.toFixed(1)} s`,
          '',
        ].join('\n'),
      );
    } else io.stdout(`${reportPath}\n`);
    return EXIT.ok;
  } finally {
    progress.done();
    await (model as { dispose?: () => Promise<unknown> }).dispose?.();
  }
}
