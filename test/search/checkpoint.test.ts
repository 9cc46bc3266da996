/**
 * Checkpoint readers (search and levels) against their schemas: a real checkpoint reads back as written; a corrupt,
 * truncated, foreign or other-version file is refused with `invalid-data`, naming the file and the field path, before
 * any work; another run's settings are refused naming the differing setting.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readCheckpoint, signatureDifference } from '../../src/search/checkpoint.js';
import { readLevelCheckpoint } from '../../src/search/levels.js';
import { functionEvaluator, runSearch } from '../../src/search/evolution.js';
import { dsaSpace } from '../../src/search/space.js';
import { candidateKey } from '../../src/search/types.js';
import { DsaPruneError } from '../../src/errors.js';

const blocks = Array.from({ length: 4 }, (_, b) => ({ z: Float32Array.from({ length: 200 }, (_, i) => Math.exp(0.3 * (b + 1) * Math.sin(i * 1.7 + b))), params: 200 }));
const allocate = (scores: number[], lambda: number) => {
  const lo = Math.min(...scores);
  const hi = Math.max(...scores);
  return scores.map((s) => 0.5 + 2 * lambda * ((s - lo) / (hi - lo || 1) - 0.5));
};
// A fitness with one non-finite value, so the null ↔ Infinity path is exercised.
const evaluator = () => functionEvaluator((c) => ({ fitness: candidateKey(c).length % 7 === 0 ? Infinity : 1 + c.lambda + candidateKey(c).length / 100, blockSparsity: [0.5, 0.5, 0.5, 0.5], seconds: 0 }));

async function refusal(p: Promise<unknown>): Promise<DsaPruneError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(DsaPruneError);
  return e as DsaPruneError;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the test edits arbitrary checkpoint JSON
function edit(file: string, out: string, f: (ck: any) => void): string {
  const ck = JSON.parse(readFileSync(file, 'utf8'));
  f(ck);
  writeFileSync(out, JSON.stringify(ck));
  return out;
}

describe('search checkpoint reader', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'dsa-ckpt-'));
  const ck = path.join(dir, 'ck.json');

  it('reads a real checkpoint back as written (resume equals a straight run)', async () => {
    const straight = await runSearch(dsaSpace({ blocks, allocate }), evaluator(), { evaluations: 40, seed: 3, population: 6 });
    await runSearch(dsaSpace({ blocks, allocate }), evaluator(), { evaluations: 40, seed: 3, population: 6, checkpointPath: ck, maxGenerations: 3 });
    const read = await readCheckpoint(ck);
    // the reader keeps every field of the file (nulls of population fitness back to Infinity only)
    const raw = JSON.parse(readFileSync(ck, 'utf8'));
    for (const m of raw.state.population) if (m.fitness === null) m.fitness = Infinity;
    expect(read).toEqual(raw);
    const resumed = await runSearch(dsaSpace({ blocks, allocate }), evaluator(), { evaluations: 40, seed: 3, population: 6, resume: read });
    expect(resumed.history.map((h) => [h.expression, h.lambda, h.fitness])).toEqual(straight.history.map((h) => [h.expression, h.lambda, h.fitness]));
    expect(resumed.best).toEqual(straight.best);
  });

  it('refuses a wrong type in a nested field, naming the file and the path', async () => {
    const bad = edit(ck, path.join(dir, 'nested.json'), (c) => { c.state.population[1].candidate.lambda = '0.1'; });
    const e = await refusal(readCheckpoint(bad));
    expect(e.code).toBe('invalid-data');
    expect(e.message).toContain(bad);
    expect(e.message).toContain('field "state.population[1].candidate.lambda" must be a number, got "0.1"');
    const bad2 = edit(ck, path.join(dir, 'nested2.json'), (c) => { c.state.history[0].candidate.expression.pre = 'ABS'; });
    expect((await refusal(readCheckpoint(bad2))).message).toContain('"state.history[0].candidate.expression.pre"');
    const bad3 = edit(ck, path.join(dir, 'missing.json'), (c) => { delete c.state.rejected.duplicate; });
    expect((await refusal(readCheckpoint(bad3))).message).toContain('missing field "state.rejected.duplicate"');
  });

  it('refuses truncated JSON, another version, a levels checkpoint and a missing file, each with its code', async () => {
    const text = readFileSync(ck, 'utf8');
    const cut = path.join(dir, 'cut.json');
    writeFileSync(cut, text.slice(0, Math.floor(text.length / 2)));
    const t = await refusal(readCheckpoint(cut));
    expect(t.code).toBe('invalid-data');
    expect(t.message).toMatch(/cut\.json is not valid JSON/);
    const v2 = await refusal(readCheckpoint(edit(ck, path.join(dir, 'v2.json'), (c) => { c.version = 2; })));
    expect(v2.code).toBe('invalid-data');
    expect(v2.message).toContain('field "version" must be version 1');
    const lv = path.join(dir, 'lv.json');
    writeFileSync(lv, JSON.stringify({ version: 1, kind: 'levels', signature: {}, generation: 0, evaluations: 1, parent: [0], parentFitness: 1, history: [] }));
    const l = await refusal(readCheckpoint(lv));
    expect(l.code).toBe('invalid-data');
    expect(l.hint).toMatch(/--strategy levels/);
    expect((await refusal(readCheckpoint(path.join(dir, 'absent.json')))).code).toBe('not-found');
  });

  it('refuses another run\'s settings naming the setting that differs', async () => {
    const d2 = mkdtempSync(path.join(tmpdir(), 'dsa-ckpt-'));
    const c2 = path.join(d2, 'ck.json');
    await runSearch(dsaSpace({ blocks, allocate }), evaluator(), { evaluations: 12, seed: 3, population: 6, checkpointPath: c2, signature: { modelHash: 'aaa', sparsity: 0.5 } });
    const e = await refusal(runSearch(dsaSpace({ blocks, allocate }), evaluator(), { evaluations: 40, seed: 3, population: 6, resume: await readCheckpoint(c2), signature: { modelHash: 'bbb', sparsity: 0.5 } }));
    expect(e.message).toContain('modelHash: checkpoint "aaa", this run "bbb"');
    expect(e.message).not.toContain('sparsity:');
    expect(signatureDifference({ a: 1, b: [1, 2] }, { a: 1, b: [1, 3], c: 'x' })).toBe('b: checkpoint [1,2], this run [1,3]; c: checkpoint absent, this run "x"');
    expect(signatureDifference({ a: 1 }, { a: 1 })).toBe('');
  });
});

describe('levels checkpoint reader', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'dsa-lvck-'));
  const good = { version: 1, kind: 'levels', signature: { strategy: 'levels', modelHash: 'm' }, generation: 2, evaluations: 3.5, parent: [0, 1, -1], parentFitness: 2.5, history: [{ generation: 0, evaluations: 1, fitness: null, accepted: true }, { generation: 1, evaluations: 2, fitness: 2.5, accepted: true }], elapsedSeconds: 4 };
  const write = (name: string, x: unknown) => {
    const f = path.join(dir, name);
    writeFileSync(f, typeof x === 'string' ? x : JSON.stringify(x));
    return f;
  };

  it('reads a valid checkpoint as written (a null fitness read as Infinity)', async () => {
    const ck = await readLevelCheckpoint(write('good.json', good));
    expect(ck).toEqual({ ...good, history: [{ ...good.history[0], fitness: Infinity }, good.history[1]] });
  });

  it('refuses corrupt, truncated, foreign and other-version files with invalid-data naming the field', async () => {
    const cases: [string, unknown, string][] = [
      ['parent.json', { ...good, parent: [0, 'x', 1] }, 'field "parent[1]" must be an integer level, got "x"'],
      ['hist.json', { ...good, history: [good.history[0], { ...good.history[1], accepted: 1 }] }, 'field "history[1].accepted" must be true or false, got 1'],
      ['v2.json', { ...good, version: 2 }, 'field "version" must be version 1'],
      ['dsa.json', { version: 1, signature: {}, state: {} }, 'missing field "kind"'],
      ['sig.json', { ...good, signature: [] }, 'field "signature" must be an object of settings'],
    ];
    for (const [name, data, text] of cases) {
      const f = write(name, data);
      const e = await refusal(readLevelCheckpoint(f));
      expect(e.code, name).toBe('invalid-data');
      expect(e.message, name).toContain(f);
      expect(e.message, name).toContain(text);
    }
    const cut = await refusal(readLevelCheckpoint(write('cut.json', JSON.stringify(good).slice(0, 40))));
    expect(cut.code).toBe('invalid-data');
    expect(cut.message).toMatch(/not valid JSON/);
  });
});
