import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { bunzip2 } from '../../src/data/bzip2.js';
import { hasShared, sharedDir } from './helpers.js';

// Two concatenated streams made by `bzip2 -c t.txt` twice; t.txt has long runs (exercises RUNA/RUNB and the
// 4-byte run-length stage).
const MULTI =
  'QlpoOTFBWSZTWaSTYUQAAATxgAAQCQBAADJEgHAgADEA0ACUjTamJplru07RxlRJRYL2fF3JFOFCQpJNhRBCWmg5MUFZJlNZpJNhRAAABPGAABAJAEAAMkSAcCAAMQDQAJSNNqYmmWu7TtHGVElFgvZ8XckU4UJCkk2FEA==';
const LINE = 'aaaaaaaaaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbb hello hello\nxyz\n';

describe('bunzip2', () => {
  it('decodes concatenated streams with long runs', () => {
    const out = new TextDecoder().decode(bunzip2(Buffer.from(MULTI, 'base64')));
    expect(out).toBe(LINE + LINE);
  });
  it('rejects corrupt data with the file name', () => {
    const bytes = Buffer.from(MULTI, 'base64');
    bytes[20] = bytes[20]! ^ 0x55;
    expect(() => bunzip2(bytes, 'x.bz2')).toThrow(/x\.bz2: (corrupt|truncated) bzip2 data/);
    expect(() => bunzip2(Buffer.from('hello'), 'y.bz2')).toThrow(/y\.bz2: corrupt bzip2 data \(no "BZh" signature\)/);
  });
  it.skipIf(!hasShared)('decodes the shared HellaSwag file (sha256 of `bzcat` output)', () => {
    const out = bunzip2(readFileSync(path.join(sharedDir, 'data/eval/hellaswag_val_full.txt.bz2')));
    expect(out.length).toBe(7770677);
    expect(createHash('sha256').update(out).digest('hex')).toBe('d572539320eb2050e858ca34b495bbe2103e3b3f1391a9c3bcdf215b0bb93bd1');
  });
});
