/** Reading report inputs from disk and writing the page. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { DsaPruneError, EXIT } from '../errors.js';
import { writeFileAtomic } from '../data/atomic.js';
import { renderReport, type RenderOptions } from './html.js';
import { parseReportInput, validateQuality, type QualityScores, type ReportInput } from './types.js';

/** The file a path stands for: a folder → its pruning.json; a file → itself. */
export function reportInputFile(path: string): string {
  const abs = resolve(path);
  if (!existsSync(abs)) {
    throw new DsaPruneError(`${path}: no such file or folder`, { code: 'not-found',
      hint: 'pass a pruned model folder (with pruning.json) or a search result JSON file',
      exitCode: EXIT.badInput,
    });
  }
  if (statSync(abs).isDirectory()) {
    const f = join(abs, 'pruning.json');
    if (!existsSync(f)) {
      throw new DsaPruneError(`${path}: folder has no pruning.json`, { code: 'not-found',
        hint: 'pass a folder written by savePruned / `dsa-prune prune --out`, or a search result JSON file',
        exitCode: EXIT.badInput,
      });
    }
    return f;
  }
  return abs;
}

/** Read and validate a report input (pruned folder, pruning.json, or search result JSON). */
export function loadReportInput(path: string): { input: ReportInput; file: string } {
  const file = reportInputFile(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DsaPruneError(`${file}: cannot read (${(e as Error).message})`, { exitCode: EXIT.badInput, cause: e });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new DsaPruneError(`${file}: not valid JSON (${(e as Error).message})`, { code: 'invalid-data',
      hint: 'pass the pruning.json of a pruned folder or the JSON written by `dsa-prune search --json`',
      exitCode: EXIT.badInput,
      cause: e,
    });
  }
  return { input: parseReportInput(data, file), file };
}

/** The JSON of a file, or a DsaPruneError naming it. */
function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new DsaPruneError(`${file}: cannot read ${what} (${(e as Error).message})`, { exitCode: EXIT.badInput, cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DsaPruneError(`${file}: ${what} is not valid JSON (${(e as Error).message})`, { code: 'invalid-data', cause: e });
  }
}

/**
 * Quality from `dsa-prune eval --json` output: `{ ppl?, tasks }`. When that run used `--compare <dense>`, the file
 * holds both: the top level is the evaluated model and `compare` the other one.
 */
export function loadEvalJson(file: string): { self?: QualityScores; compared?: QualityScores } {
  const data = readJson(resolve(file), 'the evaluation result') as Record<string, unknown> | null;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new DsaPruneError(`${file}: expected the JSON object printed by \`dsa-prune eval --json\``, { exitCode: EXIT.badInput });
  }
  const { compare, ...own } = data;
  return {
    self: validateQuality(file, own, 'eval'),
    compared: compare !== undefined ? validateQuality(file, compare, 'compare') : undefined,
  };
}

/** Extra data merged into a report: evaluation results and other allocations to chart. */
export interface ReportExtras {
  /** `eval --json` of the pruned model (with `--compare <dense>`: also the dense numbers). */
  evalFile?: string;
  /** `eval --json` of the dense model. */
  denseEvalFile?: string;
  /** Other allocations: name → a pruned folder, pruning.json or search result (its best block sparsities). */
  compare?: Record<string, string>;
}

/** Merge the extras into an input (a copy; the input is not changed). */
export function mergeExtras(input: ReportInput, extras: ReportExtras): ReportInput {
  const compare: Record<string, number[]> = {};
  const own = input.kind === 'pruned' ? input.manifest.blockSparsity : input.result.best.blockSparsity;
  for (const [name, p] of Object.entries(extras.compare ?? {})) {
    const other = loadReportInput(p).input;
    const blocks = other.kind === 'pruned' ? other.manifest.blockSparsity : other.result.best.blockSparsity;
    if (!blocks) throw new DsaPruneError(`${p}: no per-block sparsities to compare (search result without best.blockSparsity)`, { exitCode: EXIT.badInput });
    if (own && own.length !== blocks.length) {
      throw new DsaPruneError(`${p} has ${blocks.length} blocks, the model of the report has ${own.length}`, {
        hint: 'compare allocations of the same model',
        exitCode: EXIT.badInput,
      });
    }
    compare[name] = blocks;
  }
  let dense: QualityScores | undefined;
  let pruned: QualityScores | undefined;
  if (extras.evalFile) {
    const e = loadEvalJson(extras.evalFile);
    pruned = e.self;
    dense = e.compared;
  }
  if (extras.denseEvalFile) dense = loadEvalJson(extras.denseEvalFile).self;
  if (input.kind === 'search') {
    return Object.keys(compare).length ? { kind: 'search', result: { ...input.result, compare: { ...input.result.compare, ...compare } } } : input;
  }
  const m = { ...input.manifest };
  if (Object.keys(compare).length) m.compare = { ...m.compare, ...compare };
  if (dense || pruned) m.quality = { ...m.quality, ...(dense ? { dense } : {}), ...(pruned ? { pruned } : {}) };
  return { kind: 'pruned', manifest: m };
}

/** Default output path: `<folder>/report.html` for a folder, `<name>.html` next to a JSON file. */
export function defaultReportPath(path: string): string {
  const abs = resolve(path);
  if (existsSync(abs) && statSync(abs).isDirectory()) return join(abs, 'report.html');
  const ext = extname(abs);
  return join(dirname(abs), `${basename(abs, ext)}.html`);
}

/** Render `path` (folder or JSON) to `out` (default: defaultReportPath); returns the written path. Atomic write. */
export async function writeReport(path: string, out?: string, options: RenderOptions & ReportExtras = {}): Promise<string> {
  const { input, file } = loadReportInput(path);
  const { evalFile, denseEvalFile, compare, ...render } = options;
  const merged = mergeExtras(input, { evalFile, denseEvalFile, compare });
  const html = renderReport(merged, { ...render, source: render.source ?? file });
  const target = resolve(out ?? defaultReportPath(path));
  await mkdir(dirname(target), { recursive: true });
  await writeFileAtomic(target, html);
  return target;
}
