/**
 * The parts of the distributed search that need no Redis: URL parsing and redaction, the job payload schema (checked
 * against the op tables and against every expression the search space can produce), the dense statistics codec.
 */
import { describe, expect, it } from 'vitest';
import { parseRedisUrl, redactUrl } from '../../src/search/distributed/connection.js';
import { PayloadError, defaultRunId, jobIdOf, parseDsaStructure, validatePayload, PROTOCOL_VERSION } from '../../src/search/distributed/protocol.js';
import { decodeDense, encodeDense } from '../../src/search/distributed/dense-codec.js';
import { formatDsa, parseDsa } from '../../src/allocators/dsa/expression.js';
import { PRE_OPS, REDUCE_OPS, SCALAR_OPS } from '../../src/allocators/dsa/ops.js';
import { dsaSpace } from '../../src/search/space.js';
import { Rng } from '../../src/search/random.js';
import { candidateKey, type SearchSpec } from '../../src/search/types.js';
import { DsaPruneError } from '../../src/errors.js';

describe('Redis URLs', () => {
  it('parses host, port, db, user and password; rediss turns TLS on', () => {
    const a = parseRedisUrl('redis://127.0.0.1:6390/3', {});
    expect(a.options).toMatchObject({ host: '127.0.0.1', port: 6390, db: 3 });
    expect(a.options.password).toBeUndefined();
    expect(a.options.tls).toBeUndefined();
    const b = parseRedisUrl('rediss://alice:p%40ss%3Aword@queue.example.org', {});
    expect(b.options).toMatchObject({ host: 'queue.example.org', port: 6379, db: 0, username: 'alice', password: 'p@ss:word', tls: { servername: 'queue.example.org' } });
    expect(b.display).toBe('rediss://alice:***@queue.example.org');
    expect(b.display).not.toContain('word');
    const c = parseRedisUrl('redis://[::1]:7000', { REDIS_PASSWORD: 'fromenv' });
    expect(c.options).toMatchObject({ host: '::1', port: 7000, password: 'fromenv' });
  });

  it('rejects other schemes, bad databases and non-URLs with a DsaPruneError that hides the password', () => {
    for (const bad of ['http://x:1', 'localhost:6379', 'redis://h:1/99', 'redis://h:1/x']) {
      expect(() => parseRedisUrl(bad, {}), bad).toThrow(DsaPruneError);
    }
    expect(() => parseRedisUrl('http://u:secret@h', {})).toThrow(/\*\*\*/);
    expect(redactUrl('redis://:hunter2@h:1')).toBe('redis://:***@h:1');
  });
});

describe('job payload schema', () => {
  const good = { v: PROTOCOL_VERSION, runId: 'run-1', nonce: 'ab'.repeat(16), key: 'k', expression: 'W:(ABSLOG)-(VAR)-(ATAN,ASIN)', lambda: 0.08 };

  it('accepts a well-formed payload and every expression the search space produces', () => {
    expect(validatePayload(good)).toEqual(good);
    const space = dsaSpace({ blocks: [{ z: Float32Array.of(1, 2), params: 2 }, { z: Float32Array.of(3, 5), params: 2 }], allocate: (s) => s });
    const rng = new Rng(1);
    for (let i = 0; i < 500; i++) {
      const c = space.sample(rng);
      const text = formatDsa(c.expression, 'reference');
      const st = parseDsaStructure(text);
      // Independent check against the expression object itself (NO_OPs are inert and not printed).
      expect(st.pre).toEqual(c.expression.pre.filter((p) => p !== 'NO_OP'));
      expect(st.reduce).toBe(c.expression.reduce);
      const scalars = [c.expression.transform, c.expression.post ?? 'NO_OP'].filter((x) => x !== 'NO_OP');
      expect(st.scalar.filter((x) => x !== 'NO_OP')).toEqual(scalars);
      expect(candidateKey({ expression: parseDsa(text), lambda: c.lambda })).toBe(candidateKey(c));
    }
  });

  it('accepts every op name of the tables and nothing else', () => {
    for (const p of PRE_OPS) expect(() => parseDsaStructure(`W:(${p.name})-(MEAN)-(NO_OP)`)).not.toThrow();
    for (const r of REDUCE_OPS) expect(() => parseDsaStructure(`W:(NO_OP)-(${r.name})-(NO_OP)`)).not.toThrow();
    for (const o of SCALAR_OPS) expect(() => parseDsaStructure(`W:(ABS)-(MEAN)-(${o.name},${o.name})`)).not.toThrow();
    for (const bad of [
      'W:(FOO)-(MEAN)-(NO_OP)',
      'W:(ABS)-(DETERMINANT)-(NO_OP)',
      'W:(ABS)-(MEAN)-(EVAL)',
      'W:(ABS,ABS,ABS)-(MEAN)-(NO_OP)',
      'W:(ABS)-(MEAN)-(SIN,SIN,SIN)',
      'W:(ABS)-(MEAN)-(NO_OP)-(process.exit())',
      'sin(var(z))',
      'W:(ABS)-(MEAN)-(NO_OP)\n',
      '',
      'W:(ABS)-(MEAN)-(NO_OP)'.padEnd(500, ' '),
    ]) {
      expect(() => parseDsaStructure(bad), JSON.stringify(bad)).toThrow(PayloadError);
    }
  });

  it('refuses wrong types, ranges, extra fields and malformed ids', () => {
    const cases: unknown[] = [
      null, [], 'x',
      { ...good, v: 2 },
      { ...good, lambda: -0.1 }, { ...good, lambda: 0.51 }, { ...good, lambda: Infinity }, { ...good, lambda: '0.1' },
      { ...good, runId: 'a:b' }, { ...good, runId: '' }, { ...good, runId: 'x'.repeat(65) },
      { ...good, nonce: 'xyz' },
      { ...good, key: '' }, { ...good, key: 'k'.repeat(401) },
      { ...good, path: '/tmp/model' },
      { ...good, expression: { pre: [] } },
    ];
    for (const c of cases) expect(() => validatePayload(c), JSON.stringify(c)).toThrow(PayloadError);
  });

  it('job ids and run ids are stable and legal for BullMQ (no ":")', () => {
    const spec: SearchSpec = {
      method: 'wanda', sparsity: 0.5, budget: 'exact', mode: 'fast',
      calibration: { nsamples: 1, seqlen: 2, sha256: 'a' }, search: { windows: 1, seqlen: 2, sha256: 'b' }, seed: 1, modelHash: 'm',
    };
    const a = defaultRunId(spec, Int32Array.of(1, 2), Int32Array.of(3));
    // Key order in the spec object does not matter; a different seed or different tokens give another run.
    const { seed, ...rest } = spec;
    const reordered = { seed, ...rest } as SearchSpec;
    expect(Object.keys(reordered)[0]).toBe('seed');
    expect(defaultRunId(reordered, Int32Array.of(1, 2), Int32Array.of(3))).toBe(a);
    expect(defaultRunId({ ...spec, seed: 2 }, Int32Array.of(1, 2), Int32Array.of(3))).not.toBe(a);
    expect(defaultRunId(spec, Int32Array.of(1), Int32Array.of(2, 3))).not.toBe(a);
    expect(jobIdOf(a, 'sin(var(z))|0.080000')).toMatch(/^run-[0-9a-f]{24}-[0-9a-f]{32}$/);
  });
});

describe('dense statistics codec', () => {
  it('round-trips blocks and statistics exactly and rejects truncated entries', () => {
    const z = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * k) * 1e3);
    const d = {
      blocks: [
        { index: 0, params: 6, linears: [{ name: 'a', role: 'q' as const, params: 6 }], z: z(6, 1) },
        { index: 1, params: 3, linears: [{ name: 'b', role: 'down' as const, params: 3 }], z: z(3, 2) },
      ],
      stats: new Map([
        ['a', { sq: Float64Array.of(1.5, Math.PI, 1e-300), nsamples: 4, tokens: 128 }],
        ['b', { sq: Float64Array.of(2), gram: Float64Array.of(4), nsamples: 4, tokens: 128 }],
      ]),
    };
    const bytes = encodeDense(d);
    const back = decodeDense(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    expect(back.blocks.map((b) => [b.index, b.params, b.linears, [...b.z]])).toEqual(d.blocks.map((b) => [b.index, b.params, b.linears, [...b.z]]));
    expect([...back.stats.keys()]).toEqual(['a', 'b']);
    expect([...back.stats.get('a')!.sq]).toEqual([1.5, Math.PI, 1e-300]);
    expect(back.stats.get('a')!.gram).toBeUndefined();
    expect([...back.stats.get('b')!.gram!]).toEqual([4]);
    expect(back.stats.get('b')!.tokens).toBe(128);
    expect(() => decodeDense(bytes.subarray(0, bytes.length - 8))).toThrow(/truncated/);
    expect(() => decodeDense(Buffer.concat([bytes, Buffer.alloc(8)]))).toThrow(/trailing/);
    // A header with a wrong type in a nested field (same length, so only the field is wrong) is refused by its path.
    const hlen = bytes.readUInt32LE(0);
    const head = bytes.subarray(4, 4 + hlen).toString('utf8');
    const edited = head.replace('"tokens":128', '"tokens":"1"');
    expect(edited).not.toBe(head);
    expect(edited.length).toBe(head.length);
    const bad = Buffer.from(bytes);
    bad.write(edited, 4, 'utf8');
    expect(() => decodeDense(bad)).toThrow('dense statistics header: field "stats[0].tokens" must be an integer ≥ 0, got "1"');
    const v2 = Buffer.from(bytes);
    v2.write(head.replace('"v":1', '"v":2'), 4, 'utf8');
    expect(() => decodeDense(v2)).toThrow('field "v" must be version 1, got 2');
  });
});
