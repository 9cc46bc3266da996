/** Reading report inputs from disk and writing the page. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { DsaPruneError, EXIT } from '../errors.js';
import { renderReport, type RenderOptions } from './html.js';
import { parseReportInput, type ReportInput } from './types.js';

/** The file a path stands for: a folder → its pruning.json; a file → itself. */
export function reportInputFile(path: string): string {
  const abs = resolve(path);
  if (!existsSync(abs)) {
    throw new DsaPruneError(`${path}: no such file or folder`, {
      hint: 'pass a pruned model folder (with pruning.json) or a search result JSON file',
      exitCode: EXIT.badInput,
    });
  }
  if (statSync(abs).isDirectory()) {
    const f = join(abs, 'pruning.json');
    if (!existsSync(f)) {
      throw new DsaPruneError(`${path}: folder has no pruning.json`, {
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
    throw new DsaPruneError(`${file}: not valid JSON (${(e as Error).message})`, {
      hint: 'pass the pruning.json of a pruned folder or the JSON written by `dsa-prune search --json`',
      exitCode: EXIT.badInput,
      cause: e,
    });
  }
  return { input: parseReportInput(data, file), file };
}

/** Default output path: `<folder>/report.html` for a folder, `<name>.html` next to a JSON file. */
export function defaultReportPath(path: string): string {
  const abs = resolve(path);
  if (existsSync(abs) && statSync(abs).isDirectory()) return join(abs, 'report.html');
  const ext = extname(abs);
  return join(dirname(abs), `${basename(abs, ext)}.html`);
}

/** Render `path` (folder or JSON) to `out` (default: defaultReportPath); returns the written path. Atomic write. */
export async function writeReport(path: string, out?: string, options: RenderOptions = {}): Promise<string> {
  const { input, file } = loadReportInput(path);
  const html = renderReport(input, { source: options.source ?? file, ...options });
  const target = resolve(out ?? defaultReportPath(path));
  await mkdir(dirname(target), { recursive: true });
  const tmp = `${target}.tmp-${process.pid}`;
  await writeFile(tmp, html, 'utf8');
  await rename(tmp, target);
  return target;
}
