/**
 * Finding and reading task files: clear errors naming the file and line for malformed data, and the expected
 * path(s) for missing files.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DsaPruneError } from '../../errors.js';
import { gunzipSync } from 'node:zlib';

/** The dsa-prune package root (the folder with its package.json), from this module's location. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'dsa-prune') return dir;
      } catch {
        /* keep looking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

/**
 * Folders searched for task data, in order: the `dataDir` folder(s) when given (an explicit option: the package never
 * guesses a folder outside itself); else the small subsets shipped in the package's `data/tasks`.
 */
export function taskDataDirs(dataDir?: string | readonly string[]): string[] {
  const given = typeof dataDir === 'string' ? [dataDir] : [...(dataDir ?? [])];
  if (given.length > 0) return given.map((d) => path.resolve(d));
  return [path.join(packageRoot(), 'data/tasks')];
}

/**
 * The first existing file among `candidates` (paths relative to a data folder) in the folders of `dirs`;
 * DsaPruneError naming every expected path when none exists.
 */
export function findTaskFile(task: string, dirs: string[], candidates: string[]): string {
  for (const d of dirs) {
    for (const c of candidates) {
      const p = path.join(d, c);
      if (existsSync(p) && statSync(p).isFile()) return p;
    }
  }
  const expected = dirs.flatMap((d) => candidates.map((c) => path.join(d, c)));
  throw new DsaPruneError(`task ${task}: data file not found; expected ${expected[0]}${expected.length > 1 ? ` (or ${expected.slice(1).join(', ')})` : ''}`, { code: 'not-found',
    hint: 'pass --data-dir <folder> (dataDir) with the files laid out as in docs/evaluation.md ("Task data"), or give the file as <task>=<path>',
  });
}

/** Read a whole text file (`.gz` files are decompressed with node:zlib); unreadable → DsaPruneError with the path. */
export function readTaskText(task: string, file: string): string {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new DsaPruneError(`task ${task}: cannot read ${file}: ${(e as Error).message}`, { code: 'not-found', cause: e });
  }
  if (file.endsWith('.bz2')) {
    throw new DsaPruneError(`task ${task}: ${file} is bzip2-compressed, which dsa-prune does not read`, {
      code: 'unsupported',
      hint: `recompress it with gzip (bzcat ${file} | gzip > ${file.replace(/\.bz2$/, '.gz')}) or decompress it; the full HellaSwag ships as data/eval/hellaswag_val_full.txt.gz in the repository`,
    });
  }
  if (file.endsWith('.gz')) {
    try {
      bytes = gunzipSync(bytes);
    } catch (e) {
      throw new DsaPruneError(`task ${task}: ${file} is not valid gzip data (${(e as Error).message})`, { code: 'invalid-data', hint: 'use a fresh copy of the file', cause: e });
    }
  }
  return new TextDecoder().decode(bytes);
}

/** Error for malformed task data at `file:line`. */
export function badLine(task: string, file: string, line: number, what: string): DsaPruneError {
  return new DsaPruneError(`task ${task}: ${file}:${line}: ${what}`, { code: 'invalid-data',
    hint: 'check the file format (see docs/evaluation.md) or use a fresh copy of the data',
  });
}

/** Parse JSON Lines text; each record comes with its 1-based line number. Blank lines are skipped. */
export function parseJsonl(task: string, file: string, text: string, limit?: number): { line: number; rec: Record<string, unknown> }[] {
  const out: { line: number; rec: Record<string, unknown> }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (limit !== undefined && out.length >= limit) break;
    const s = lines[i]!.trim();
    if (s === '') continue;
    let rec: unknown;
    try {
      rec = JSON.parse(s);
    } catch (e) {
      throw badLine(task, file, i + 1, `invalid JSON (${(e as Error).message})`);
    }
    if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) throw badLine(task, file, i + 1, 'expected a JSON object');
    out.push({ line: i + 1, rec: rec as Record<string, unknown> });
  }
  return out;
}

/** A required string field of a record. */
export function str(task: string, file: string, line: number, rec: Record<string, unknown>, key: string): string {
  const v = rec[key];
  if (typeof v !== 'string') throw badLine(task, file, line, `field "${key}" must be a string, got ${v === undefined ? 'nothing' : typeof v}`);
  return v;
}
