import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readTextFile, takeWindows, tokenizeText } from '../../src/data/text.js';
import { DsaPruneError } from '../../src/errors.js';
import { load, storiesDir } from './helpers.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'dsa-eval-text-'));

describe('takeWindows', () => {
  const ids = Int32Array.from({ length: 103 }, (_, i) => i * 7);
  it('takes the first n non-overlapping windows, row-major', () => {
    const w = takeWindows(ids, 10, 3);
    expect(Array.from(w)).toEqual([...Array(30).keys()].map((i) => i * 7));
  });
  it('samples distinct, aligned, non-overlapping windows reproducibly with a seed', () => {
    const a = takeWindows(ids, 10, 10, { seed: 42 });
    const b = takeWindows(ids, 10, 10, { seed: 42 });
    expect(Array.from(a)).toEqual(Array.from(b));
    const starts = new Set<number>();
    for (let w = 0; w < 10; w++) {
      const first = a[w * 10]! / 7;
      expect(first % 10).toBe(0);
      for (let t = 0; t < 10; t++) expect(a[w * 10 + t]).toBe((first + t) * 7);
      starts.add(first);
    }
    expect(starts.size).toBe(10); // all 10 slots of 103 tokens used exactly once
    expect(Array.from(takeWindows(ids, 10, 10, { seed: 7 }))).not.toEqual(Array.from(a));
  });
  it('says how many tokens are needed vs present', () => {
    expect(() => takeWindows(ids, 10, 11, { purpose: 'calibration text' })).toThrow(/need 110 tokens, the text has 103/);
    expect(() => takeWindows(ids, 10, 11)).toThrow(DsaPruneError);
  });
});

describe('readTextFile', () => {
  it('reads UTF-8 and drops a BOM', async () => {
    const f = path.join(tmp, 'ok.txt');
    writeFileSync(f, '\ufeffhéllo');
    expect(await readTextFile(f)).toBe('héllo');
  });
  it('names the path of a missing, empty, directory or non-UTF-8 file', async () => {
    const missing = path.join(tmp, 'nope.txt');
    await expect(readTextFile(missing)).rejects.toThrow(`text file not found: ${missing}`);
    const empty = path.join(tmp, 'empty.txt');
    writeFileSync(empty, ' \n');
    await expect(readTextFile(empty)).rejects.toThrow(`text file ${empty} is empty`);
    const bad = path.join(tmp, 'latin1.txt');
    writeFileSync(bad, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
    await expect(readTextFile(bad)).rejects.toThrow(`text file ${bad} is not valid UTF-8`);
    const d = path.join(tmp, 'dir');
    mkdirSync(d);
    await expect(readTextFile(d)).rejects.toThrow(d);
  });
});

describe('tokenizeText', () => {
  it('tokenizes as one string with the tokenizer defaults (one BOS at the start only)', async () => {
    const { tokenizer } = await load(storiesDir);
    const ids = tokenizeText(tokenizer, 'Once upon a time.\nThe end.');
    expect(ids).toBeInstanceOf(Int32Array);
    expect(ids[0]).toBe(tokenizer.bos_token_id);
    expect(Array.from(ids).filter((x) => x === tokenizer.bos_token_id).length).toBe(1);
    expect(Array.from(ids.slice(1))).toEqual(tokenizer.encode('Once upon a time.\nThe end.', { add_special_tokens: false }));
  });
});
