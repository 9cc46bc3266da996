/** Atomic JSON write of the levels checkpoint (temporary file in the same folder, then rename), like checkpoint.ts. */
import { rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DsaPruneError } from '../errors.js';

export async function writeAtomicJson(file: string, value: unknown): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    await writeFile(tmp, JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)));
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw new DsaPruneError(`cannot write the search checkpoint ${file}: ${(e as Error).message}`, { hint: 'check that the folder exists and is writable', cause: e });
  }
}
