/**
 * Search checkpoints: the whole loop state as JSON after every generation, written atomically (temp file + rename in
 * the same folder), so a killed search leaves either the previous or the new checkpoint, never half of one.
 */
import { readFile } from 'node:fs/promises';
import { DsaPruneError } from '../errors.js';
import { writeFileAtomic } from '../data/atomic.js';
import type { SearchState } from './types.js';

export interface SearchCheckpoint {
  version: 1;
  /** Settings that must match on resume (model hash, method, sparsity, data hashes…). */
  signature: Record<string, unknown>;
  /** Loop options, for the record. */
  options: Record<string, unknown>;
  state: SearchState;
}

/** JSON has no Infinity: fitness values that are not finite are stored as null (see SearchState). */
export async function writeCheckpoint(file: string, ck: SearchCheckpoint): Promise<void> {
  const json = JSON.stringify(ck, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v));
  try {
    await writeFileAtomic(file, json);
  } catch (e) {
    throw new DsaPruneError(`cannot write the search checkpoint ${file}: ${(e as Error).message}`, {
      hint: 'check that the folder exists and is writable', cause: e,
    });
  }
}

export async function readCheckpoint(file: string): Promise<SearchCheckpoint> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new DsaPruneError(`cannot read the search checkpoint ${file}: ${(e as Error).message}`, {
      hint: 'pass the file written by an earlier `dsa-prune search --checkpoint` / `--out` run', cause: e,
    });
  }
  let ck: SearchCheckpoint;
  try {
    ck = JSON.parse(text) as SearchCheckpoint;
  } catch (e) {
    throw new DsaPruneError(`the search checkpoint ${file} is not valid JSON`, { hint: 'it may be truncated; use an earlier copy', cause: e });
  }
  if (!ck || ck.version !== 1 || !ck.state || !Array.isArray(ck.state.population) || !Array.isArray(ck.state.history)) {
    throw new DsaPruneError(`${file} is not a dsa-prune search checkpoint (version 1)`);
  }
  // Restore non-finite fitness values.
  for (const m of ck.state.population) if (m.fitness === null) m.fitness = Infinity;
  return ck;
}
