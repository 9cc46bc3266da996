/** The one atomic writer: the target is the old file or the new one, never partial; a failure leaves no temporary file. */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tempPathFor, writeFileAtomic, writeFileAtomicSync } from '../../src/data/atomic.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'dsa-atomic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('writeFileAtomic', () => {
  it('writes strings, bytes and piecewise output; replaces an existing file; leaves no temporary file', async () => {
    const f = path.join(dir, 'a.json');
    writeFileSync(f, 'old');
    await writeFileAtomic(f, '{"x":1}');
    expect(readFileSync(f, 'utf8')).toBe('{"x":1}');
    await writeFileAtomic(f, new Uint8Array([104, 105]));
    expect(readFileSync(f, 'utf8')).toBe('hi');
    await writeFileAtomic(f, async (fh) => {
      await fh.write('one,');
      await fh.write(new Uint8Array([116, 119, 111]));
    });
    expect(readFileSync(f, 'utf8')).toBe('one,two');
    writeFileAtomicSync(f, 'sync');
    expect(readFileSync(f, 'utf8')).toBe('sync');
    expect(readdirSync(dir)).toEqual(['a.json']);
  });

  it('a writer that fails midway: the old file stays, the temporary file is removed, the error comes through unchanged', async () => {
    const f = path.join(dir, 'b.bin');
    writeFileSync(f, 'intact');
    const boom = new Error('disk full (simulated)');
    await expect(writeFileAtomic(f, async (fh) => {
      await fh.write('partial');
      throw boom;
    })).rejects.toBe(boom);
    expect(readFileSync(f, 'utf8')).toBe('intact');
    expect(readdirSync(dir).filter((e) => e.endsWith('.tmp'))).toEqual([]);
  });

  it('a target that cannot be replaced (a folder): the error comes through, nothing is left behind', async () => {
    const d = path.join(dir, 'folder');
    mkdirSync(d);
    await expect(writeFileAtomic(d, 'x')).rejects.toMatchObject({ code: expect.stringMatching(/^E/) });
    expect(() => writeFileAtomicSync(d, 'x')).toThrow();
    expect(readdirSync(dir).filter((e) => e.endsWith('.tmp'))).toEqual([]);
    expect(path.dirname(tempPathFor(d))).toBe(dir); // same folder, so the rename stays on one file system
  });
});
