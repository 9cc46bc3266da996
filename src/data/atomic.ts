/**
 * The one atomic file writer: the bytes go to a temporary file in the target's folder (same file system), which is
 * renamed over the target only once complete, so a reader sees the old file or the new one, never half of one; on
 * any failure the temporary file is removed and the error rethrown unchanged (callers say what failed, in their
 * terms). Multi-file ONNX writes (a model and its external data) use compress/files.ts writeModelAtomic; whole
 * folders, model/save.ts (temporary folder + rename).
 */
import { randomBytes } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** A temporary name next to `file`: hidden, unique per process and call. */
export function tempPathFor(file: string): string {
  const abs = path.resolve(file);
  return path.join(path.dirname(abs), `.${path.basename(abs)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Write `data` to `file` atomically. `data` may be a function that writes through the open handle (large outputs
 * written piece by piece, without a second copy in memory).
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array | ((fh: FileHandle) => Promise<void>)): Promise<void> {
  const tmp = tempPathFor(file);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'w');
    if (typeof data === 'function') await data(fh);
    else await fh.writeFile(data);
    await fh.close();
    fh = undefined;
    await rename(tmp, path.resolve(file));
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}

/** writeFileAtomic, synchronously, for whole strings or byte arrays. */
export function writeFileAtomicSync(file: string, data: string | Uint8Array): void {
  const tmp = tempPathFor(file);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path.resolve(file));
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
