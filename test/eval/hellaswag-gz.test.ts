/**
 * The full HellaSwag validation set ships gzip-compressed (data/eval/hellaswag_val_full.txt.gz, read with node:zlib;
 * repository only, not in the npm package): its bytes are those of the upstream file (length and sha256 of
 * `bzcat hellaswag_val_full.txt.bz2`, recorded when the bzip2 decoder was removed), and its first 300 items are the
 * shipped subset data/tasks/hellaswag/val.txt.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { loadTask } from '../../src/eval/tasks/index.js';
import { repoRoot } from './helpers.js';

const gz = path.join(repoRoot, 'data/eval/hellaswag_val_full.txt.gz');

describe('data/eval/hellaswag_val_full.txt.gz', () => {
  it('is the upstream file, byte for byte', () => {
    const out = gunzipSync(readFileSync(gz));
    expect(out.length).toBe(7770677);
    expect(createHash('sha256').update(out).digest('hex')).toBe('d572539320eb2050e858ca34b495bbe2103e3b3f1391a9c3bcdf215b0bb93bd1');
  });

  it('loads through the task loader: 10042 items, the first 300 equal to the shipped subset', () => {
    const full = loadTask(`hellaswag=${gz}`, []);
    const subset = loadTask('hellaswag', [path.join(repoRoot, 'data/tasks')]);
    expect(full.items.length).toBe(10042);
    expect(subset.items.length).toBe(300);
    expect(full.items.slice(0, 300)).toEqual(subset.items);
  });
});
