/** JSON write of the levels checkpoint through the one atomic writer (src/data/atomic.ts), like checkpoint.ts. */
import { writeFileAtomic } from '../data/atomic.js';
import { DsaPruneError } from '../errors.js';

export async function writeAtomicJson(file: string, value: unknown): Promise<void> {
  try {
    await writeFileAtomic(file, JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)));
  } catch (e) {
    throw new DsaPruneError(`cannot write the search checkpoint ${file}: ${(e as Error).message}`, {
      code: 'write-failed', hint: 'check that the folder exists and is writable', cause: e,
    });
  }
}
