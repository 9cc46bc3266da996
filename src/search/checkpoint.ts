/**
 * Search checkpoints: the whole loop state as JSON after every generation, written atomically (temp file + rename in
 * the same folder), so a killed search leaves either the previous or the new checkpoint, never half of one.
 *
 * Reading one is checked against a valibot schema (searchCheckpointSchema; the levels checkpoint's is in levels.ts)
 * before any work: a truncated, corrupt or foreign file is refused with code `invalid-data`, naming the file and the
 * field path. The checked value is the file's own object (nothing dropped), so a resume continues from exactly what
 * was written.
 */
import { readFile } from 'node:fs/promises';
import { DsaPruneError } from '../errors.js';
import { writeFileAtomic } from '../data/atomic.js';
import { count, obj, parseSchema, plainObject, v } from '../data/schema.js';
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
      code: 'write-failed', hint: 'check that the folder exists and is writable', cause: e,
    });
  }
}

const fitnessOrNull = v.nullable(v.number('a number (null when not finite)'));
const strings = (what: string) => v.array(v.string('a string'), what);

/** A candidate as JSON: the expression's op names and λ. */
const candidateSchema = obj(
  {
    expression: obj(
      { pre: strings('an array of op names'), reduce: v.string('an op name'), transform: v.string('an op name'), post: v.optional(v.string('an op name')) },
      'an expression { pre, reduce, transform, post? }',
    ),
    lambda: v.number('a number'),
  },
  'a candidate { expression, lambda }',
);

/** What a search checkpoint (version 1) holds; SearchState in types.ts is the type it checks. */
export const searchCheckpointSchema = obj(
  {
    version: v.literal(1, 'version 1 (the checkpoint format this dsa-prune writes)'),
    signature: plainObject('an object of settings'),
    options: v.optional(plainObject('an object of options')),
    state: obj(
      {
        strategy: v.picklist(['evolution', 'random'], '"evolution" or "random"'),
        seed: v.number('a number'),
        generation: count(),
        evaluations: count(),
        elapsedSeconds: v.number('a number of seconds'),
        population: v.array(
          obj({ candidate: candidateSchema, allocationKey: v.string('a string'), fitness: fitnessOrNull, evaluation: count() }, 'a member { candidate, allocationKey, fitness, evaluation }'),
          'an array of population members',
        ),
        seen: v.pipe(plainObject('an object of allocation key → fitness'), v.record(v.string(), fitnessOrNull, 'an object of allocation key → fitness')),
        history: v.array(
          obj(
            {
              evaluation: count(), generation: count(), expression: v.string('a string'), lambda: v.number('a number'), fitness: fitnessOrNull,
              blockSparsity: v.array(v.nullable(v.number('a number')), 'an array of numbers, one per block'), seconds: v.number('a number'),
              worker: v.optional(v.string('a worker id')), candidate: candidateSchema,
            },
            'a history entry',
          ),
          'an array of history entries',
        ),
        rejected: obj({ invalid: count(), duplicate: count() }, 'an object { invalid, duplicate }'),
      },
      'the search state { strategy, seed, population, seen, history, … }',
    ),
  },
  'a search checkpoint object',
);

/**
 * Read and parse a checkpoint file's JSON: a missing file is `not-found`, an unreadable or truncated one
 * `invalid-data`, both naming the file. `what` names the kind in messages ("search checkpoint").
 */
export async function readCheckpointJson(file: string, what: string, hint: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not-found' : 'invalid-input';
    throw new DsaPruneError(`cannot read the ${what} ${file}: ${(e as Error).message}`, { code, hint, cause: e });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new DsaPruneError(`the ${what} ${file} is not valid JSON (${(e as Error).message})`, {
      code: 'invalid-data', hint: 'it may be truncated; use an earlier copy or start a new search', cause: e,
    });
  }
}

/**
 * Why a checkpoint's settings differ from this run's: the keys whose values differ, each with both values
 * (`modelHash: checkpoint "a", this run "b"`); empty when they are equal.
 */
export function signatureDifference(have: Record<string, unknown>, want: Record<string, unknown>): string {
  const keys = [...new Set([...Object.keys(have), ...Object.keys(want)])];
  const show = (x: unknown) => {
    const s = x === undefined ? 'absent' : JSON.stringify(x);
    return s.length > 80 ? `${s.slice(0, 77)}…` : s;
  };
  return keys
    .filter((k) => JSON.stringify(have[k]) !== JSON.stringify(want[k]))
    .map((k) => `${k}: checkpoint ${show(have[k])}, this run ${show(want[k])}`)
    .join('; ');
}

export async function readCheckpoint(file: string): Promise<SearchCheckpoint> {
  const hint = 'pass the file written by an earlier `dsa-prune search --checkpoint` / `--out` run';
  const data = await readCheckpointJson(file, 'search checkpoint', hint);
  if (data && typeof data === 'object' && (data as { kind?: unknown }).kind === 'levels') {
    throw new DsaPruneError(`${file} is a levels search checkpoint, not a DSA search one`, { code: 'invalid-data', hint: 'resume it with --strategy levels' });
  }
  parseSchema(searchCheckpointSchema, data, { file, hint: `not a dsa-prune search checkpoint (version 1): ${hint}` });
  const ck = data as SearchCheckpoint;
  // Restore non-finite fitness values.
  for (const m of ck.state.population) if ((m.fitness as number | null) === null) m.fitness = Infinity;
  return ck;
}
