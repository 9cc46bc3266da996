/** `dsa-prune report <run.json | prunedFolder> [--out report.html]`: one self-contained offline HTML page. */
import { defineCommand, formatOptions, parseCommandArgs } from '../args.js';
import type { CliIo } from '../io.js';
import { writeReport } from '../../report/load.js';
import { DsaPruneError, EXIT } from '../../errors.js';

const spec = defineCommand({
  name: 'report',
  usage: 'dsa-prune report <prunedFolder | pruning.json | search.json> [--out report.html]',
  positionals: { min: 1, max: 1, names: ['prunedFolder | run.json'] },
  options: {
    out: { type: 'string', short: 'o', valueName: '<file.html>', description: 'where to write the page (default: <folder>/report.html or <name>.html next to the JSON)' },
    title: { type: 'string', valueName: '<text>', description: 'page title' },
    'log-y': { type: 'boolean', description: 'log scale for the search curve (default: automatic)' },
    eval: { type: 'string', valueName: '<eval.json>', description: '`dsa-prune eval --json` of the pruned model (with --compare <dense>: both)' },
    'dense-eval': { type: 'string', valueName: '<eval.json>', description: '`dsa-prune eval --json` of the dense model' },
    compare: { type: 'string', multiple: true, valueName: '<name=path>', description: 'another allocation to chart: name=<pruned folder | pruning.json | search.json>' },
  },
});

export const help = `dsa-prune report — render a pruned model or a search result as one offline HTML page

usage: ${spec.usage}

The page is self-contained (inline CSS and SVG, no scripts, no network): the summary (model, method, sparsity,
allocator, calibration), the per-block sparsity chart with every allocation in the data (uniform, OWL, DSA, …),
the quality table (dense vs pruned perplexity and task scores, when present), timings, and for a search result
the search curve (every candidate and best-so-far vs evaluations, random search alongside when present).

options:
${formatOptions(spec.options)}

examples:
  dsa-prune report out/stories260k-pruned                  # writes out/stories260k-pruned/report.html
  dsa-prune report search.json --out search-report.html
  dsa-prune report out/pruned --json                       # prints {"report": "<path>"}
  dsa-prune eval out/dsa70 --ppl eval.txt --compare models/m --json > eval.json
  dsa-prune report out/dsa70 --eval eval.json --compare uniform=out/uniform70 --compare owl=out/owl70
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const args = parseCommandArgs(argv, spec);
  if (args.help) {
    io.stdout(help);
    return EXIT.ok;
  }
  const compare: Record<string, string> = {};
  for (const c of args.values.compare ?? []) {
    const eq = c.indexOf('=');
    if (eq <= 0 || eq === c.length - 1) {
      throw new DsaPruneError(`--compare must be name=<path>, got ${JSON.stringify(c)}`, {
        hint: 'e.g. --compare uniform=out/uniform50 --compare owl=out/owl50',
        exitCode: EXIT.badInput,
      });
    }
    compare[c.slice(0, eq)] = c.slice(eq + 1);
  }
  const target = await writeReport(args.positionals[0], args.values.out, {
    ...(args.values.eval !== undefined ? { evalFile: args.values.eval } : {}),
    ...(args.values['dense-eval'] !== undefined ? { denseEvalFile: args.values['dense-eval'] } : {}),
    ...(Object.keys(compare).length ? { compare } : {}),
    ...(args.values.title !== undefined ? { title: args.values.title } : {}),
    ...(args.values['log-y'] ? { logY: true } : {}),
  });
  if (args.common.json) io.stdout(`${JSON.stringify({ report: target })}\n`);
  else if (!args.common.quiet) io.stdout(`report written to ${target}\n`);
  return EXIT.ok;
}
