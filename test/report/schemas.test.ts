/**
 * The JSON formats declared once as valibot schemas (src/data/schema.ts builds the messages): every refusal names the
 * file, the field path and what was expected, with a code; optional fields written as null read as absent.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DsaPruneError } from '../../src/errors.js';
import { checkSchema, strictObj, v } from '../../src/data/schema.js';
import { validatePrunedManifest, validateSearchAllocation, validateSearchResult } from '../../src/report/types.js';
import { levelsAllocator } from '../../src/search/levels.js';
import { allocatorFrom } from '../../src/cli/commands/prune.js';
import { PROTOCOL_VERSION, PayloadError, decodeResult, validatePayload, validateSpec } from '../../src/search/distributed/protocol.js';

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

const manifest = { method: 'wanda', sparsity: 0.5, blockSparsity: [0.5, 0.5] };

describe('pruning.json and search results', () => {
  it('names nested field paths and the expectation, code invalid-data, exit 2', () => {
    const cases: [unknown, string][] = [
      [{ ...manifest, linears: [{ name: 'a', block: 0, sparsity: 0.5 }, { name: 'b', sparsity: 0.5 }] }, 'p.json: missing field "linears[1].block" (a number)'],
      [{ ...manifest, quality: { dense: { tasks: { arc: { n: 3 } } } } }, 'p.json: missing field "quality.dense.tasks.arc.acc" (a number)'],
      [{ ...manifest, quality: { pruned: { ppl: 'low' } } }, 'p.json: field "quality.pruned.ppl" must be a number, got "low"'],
      [{ ...manifest, compare: { owl: [0.5, 'x'] } }, 'p.json: field "compare.owl[1]" must be a number, got "x"'],
      [{ ...manifest, allocator: { expression: 'x' } }, 'p.json: missing field "allocator.name" (a string)'],
      [{ ...manifest, seconds: [1, 2] }, 'p.json: field "seconds" must be an object of phase → seconds, got [1,2]'],
      // long values are cut to 60 characters
      [[manifest], 'p.json: expected a JSON object, got [{"method":"wanda","sparsity":0.5,"blockSparsity":[0.5,0.…'],
    ];
    for (const [data, message] of cases) {
      const e = thrown(() => validatePrunedManifest(data, 'p.json')) as DsaPruneError;
      expect(e).toBeInstanceOf(DsaPruneError);
      expect(e.message).toBe(message);
      expect(e.code).toBe('invalid-data');
      expect(e.exitCode).toBe(2);
      expect(e.hint).toMatch(/pruning\.json/);
    }
    expect(thrown(() => validateSearchResult({ best: { fitness: 1 }, history: [] }, 's.json')).message).toBe(
      's.json: missing field "best.expression" (a string)',
    );
    expect(thrown(() => validateSearchResult({ best: { expression: 'x', fitness: 1 }, history: [{ fitness: 'x' }] }, 's.json')).message).toBe(
      's.json: field "history[0].fitness" must be a number, or null for an invalid candidate, got "x"',
    );
  });

  it('optional fields written as null read as absent; wrong-typed extras of older files are dropped; defaults filled', () => {
    const m = validatePrunedManifest({ ...manifest, realizedSparsity: null, quality: null, calibration: null, notes: ['a', 3], tool: { v: 1 } }, 'p.json');
    expect(m).toStrictEqual({ ...manifest, notes: ['a'], tool: '{"v":1}' });
    const r = validateSearchResult({ best: { expression: 'x', fitness: 2 }, history: [{ fitness: null }, { fitness: 3, lambda: 'bad' }], random: null }, 's.json');
    expect(r).toStrictEqual({
      best: { expression: 'x', fitness: 2 },
      history: [{ evaluation: 0, fitness: null }, { evaluation: 1, fitness: 3 }],
      evaluations: 2,
    });
  });

  it('--allocator @file: the allocation part of a DSA result, and a levels result, checked with their schemas', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dsa-prune-schemas-'));
    const write = (name: string, data: unknown) => {
      const f = path.join(dir, name);
      writeFileSync(f, JSON.stringify(data));
      return f;
    };
    expect(validateSearchAllocation({ best: { expression: 'W:(ABS)-(MEAN)-(NO_OP)', lambda: null }, granularity: 'linear' }, 'x')).toStrictEqual({
      best: { expression: 'W:(ABS)-(MEAN)-(NO_OP)' }, granularity: 'linear',
    });
    const noExpr = write('a.json', { best: { fitness: 1 } });
    expect(thrown(() => allocatorFrom(`@${noExpr}`, {}))).toMatchObject({ code: 'invalid-data', message: `${noExpr}: missing field "best.expression" (a DSA expression)` });
    const badGran = write('b.json', { best: { expression: 'W:(ABS)-(MEAN)-(NO_OP)' }, granularity: 'row' });
    expect(thrown(() => allocatorFrom(`@${badGran}`, {})).message).toBe(`${badGran}: field "granularity" must be "block" or "linear", got "row"`);
    expect(thrown(() => allocatorFrom(`@${path.join(dir, 'none.json')}`, {}))).toMatchObject({ code: 'not-found' });
    const ok = write('c.json', { best: { expression: 'W:(ABS)-(MEAN)-(NO_OP)', lambda: 0.1 } });
    expect(typeof allocatorFrom(`@${ok}`, {})).toBe('object');
    // A levels result: checked when the model is known, and its sparsities must be sparsities.
    const levels = write('l.json', { strategy: 'levels', modelHash: 'h1', best: { linearSparsity: { 'model.layers.0.mlp.up_proj': 1.5 } } });
    const deferred = allocatorFrom(`@${levels}`, {});
    expect(typeof deferred).toBe('function');
    expect(thrown(() => (deferred as (h: string) => unknown)('h1'))).toMatchObject({
      code: 'invalid-data', message: `${levels}: field "best.linearSparsity.model.layers.0.mlp.up_proj" must be a sparsity in [0, 1], got 1.5`,
    });
    expect(thrown(() => levelsAllocator({ best: { linearSparsity: {} } }, 'h', 'r.json')).message).toBe('r.json: missing field "modelHash" (a model hash)');
  });
});

describe('queue payloads (PayloadError, field named)', () => {
  const good = { v: PROTOCOL_VERSION, runId: 'run-1', nonce: 'ab'.repeat(16), key: 'k', expression: 'W:(ABSLOG)-(VAR)-(ATAN,ASIN)', lambda: 0.08 };
  it('says which field of the job is wrong', () => {
    const cases: [unknown, string][] = [
      [{ ...good, lambda: 0.51 }, 'job data: field "lambda" must be a number in [0, 0.5], got 0.51'],
      [{ ...good, path: '/tmp/x' }, 'job data: unexpected field "path"'],
      [{ ...good, v: 2 }, 'job data: field "v" must be protocol version 1 (the version this worker speaks), got 2'],
      [(({ nonce: _n, ...rest }) => rest)(good), 'job data: missing field "nonce" (a nonce)'],
      [null, 'job data: expected an object { v, runId, nonce, key, expression, lambda }, got null'],
    ];
    for (const [data, message] of cases) {
      const e = thrown(() => validatePayload(data));
      expect(e).toBeInstanceOf(PayloadError);
      expect(e.message).toBe(message);
    }
    const spec = { method: 'wanda', sparsity: 0.5, budget: 'exact', mode: 'fast', calibration: { nsamples: 1, seqlen: 2, sha256: 'a' }, search: { windows: 1, seqlen: 0, sha256: 'b' }, seed: 1, modelHash: 'm' };
    expect(thrown(() => validateSpec(spec)).message).toBe('run spec: field "search.seqlen" must be an integer ≥ 1, got 0');
  });

  it('stored results: null fitness reads as Infinity, null in blockSparsity as NaN, a malformed entry is refused', () => {
    const r = decodeResult(JSON.stringify({ runId: 'r', key: 'k', fitness: null, blockSparsity: [0.5, null], seconds: 1, extra: 'x' }));
    expect(r.fitness).toBe(Infinity);
    expect(r.blockSparsity[0]).toBe(0.5);
    expect(Number.isNaN(r.blockSparsity[1])).toBe(true);
    expect(r).not.toHaveProperty('extra');
    expect(thrown(() => decodeResult('{"runId":"r","key":"k","fitness":1,"seconds":1}')).message).toBe(
      'stored result: missing field "blockSparsity" (an array of numbers, one per block)',
    );
    expect(thrown(() => decodeResult('{'))).toBeInstanceOf(PayloadError);
  });
});

describe('checkSchema', () => {
  it('reports the first problem with its path, and nothing for a valid value', () => {
    const s = strictObj({ a: v.array(v.number('a number'), 'a list') }, 'an object');
    expect(checkSchema(s, { a: [1, 2] })).toEqual({ ok: true, value: { a: [1, 2] } });
    const bad = checkSchema(s, { a: [1, true] });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.problem).toMatchObject({ path: 'a[1]', missing: false, expected: 'a number', got: 'true', text: 'field "a[1]" must be a number, got true' });
  });
});
