/**
 * Plugins: modules a user hands the CLI (`--plugin <module.js>`) or the search API (`plugins`) that register their
 * methods with `registerMethod` from 'dsa-prune' when imported. Imported before the command runs, and again in every
 * search worker thread (each thread has its own registry); a Redis worker imports its own `--plugin` modules.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DsaPruneError } from '../errors.js';

/** Absolute paths of the plugin files (relative ones against `cwd`); a DsaPruneError `not-found` for a missing one. */
export function resolvePlugins(files: readonly string[] | undefined, cwd = process.cwd()): string[] {
  return (files ?? []).map((f) => {
    const abs = path.resolve(cwd, f);
    if (!existsSync(abs) || !statSync(abs).isFile()) {
      throw new DsaPruneError(`plugin ${f} not found (looked for ${abs})`, {
        code: 'not-found', hint: 'pass the path of a JavaScript module (.js/.mjs) that calls registerMethod() from \'dsa-prune\'',
      });
    }
    return abs;
  });
}

/** Import each plugin once per thread, in order; returns their absolute paths (to pass on to worker threads). */
export async function importPlugins(files: readonly string[] | undefined, cwd?: string): Promise<string[]> {
  const abs = resolvePlugins(files, cwd);
  for (const f of abs) {
    try {
      await import(pathToFileURL(f).href);
    } catch (e) {
      if (e instanceof DsaPruneError) throw e;
      throw new DsaPruneError(`plugin ${f} failed to load: ${(e as Error).message}`, {
        code: 'invalid-input', cause: e, hint: 'a plugin is an ES module that imports { registerMethod } from \'dsa-prune\' and registers its methods; \'dsa-prune\' must resolve from the plugin\'s folder (npm install dsa-prune next to it)',
      });
    }
  }
  return abs;
}
