import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { arbExpr } from './arbitraries.js';
import {
  DSA_PUBLISHED, PRE_OPS, REDUCE_OPS, CHUNK, dsaMath, dsaScores, formatDsa, importance, importanceTrace,
  parseDsa, simplifyDsa, simplifyDsaExpression, type DsaExpression,
} from '../../src/allocators/dsa/index.js';
import { DsaPruneError } from '../../src/errors.js';
import { mulberry32 } from '../../src/data/text.js';
import { reduceAll, type ChunkSource } from '../../src/allocators/dsa/ops.js';

// ---- independent float64 reference, written literally from METHODS.md on plain arrays ----
const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
const varU = (a: number[]) => {
  const m = mean(a);
  return a.reduce((s, x) => s + (x - m) ** 2, 0) / (a.length - 1);
};
const naivePre: Record<string, (a: number[]) => number[]> = {
  ABS: (a) => a.map(Math.abs),
  LOG: (a) => a.map((x) => Math.log((x <= 0 ? 1 : x) + 1e-6)),
  ABSLOG: (a) => a.map((x) => Math.log(Math.abs(x === 0 ? 1 : x))),
  POW: (a) => a.map((x) => x ** 2),
  EXP: (a) => a.map(Math.exp),
  NORMALIZE: (a) => {
    const m = mean(a);
    const s = Math.sqrt(varU(a));
    return a.map((x) => {
      const v = (x - m) / s;
      return Number.isNaN(v) ? 0 : v;
    });
  },
  SIGMOID: (a) => a.map((x) => 1 / (1 + Math.exp(-x))),
  TANH: (a) => a.map(Math.tanh),
  MMS: (a) => {
    const lo = Math.min(...a);
    const hi = Math.max(...a);
    return a.map((x) => (x - lo) / (hi - lo + 1e-9));
  },
};
const naiveReduce: Record<string, (a: number[]) => number> = {
  MEAN: mean,
  VAR: varU,
  STD: (a) => Math.sqrt(varU(a)),
  L1_NORM: (a) => mean(a.map(Math.abs)),
  FROBENIUS_NORM: (a) => Math.sqrt(a.reduce((s, x) => s + x * x, 0)),
  GRAM: (a) => a.reduce((s, x) => s + x * x, 0),
  GEOMETRIC_MEAN: (a) => (a.some((x) => !(x > 0)) ? NaN : Math.exp(mean(a.map(Math.log)))),
  ENTROPY: (a) => {
    const f = a.filter((x) => x >= 0 && Number.isFinite(x));
    const t = f.reduce((s, x) => s + x, 0);
    if (f.length === 0 || t === 0) return NaN;
    return -f.reduce((s, x) => (x > 0 ? s + (x / t) * Math.log(x / t) : s), 0);
  },
};
const naiveScalar: Record<string, (x: number) => number> = {
  NO_OP: (x) => x, SIN: Math.sin, COS: Math.cos, TAN: Math.tan, ASIN: Math.asin, ACOS: Math.acos, ATAN: Math.atan,
  EXP: Math.exp, LOG: Math.log, ABS: Math.abs, SIGMOID: (x) => 1 / (1 + Math.exp(-x)), TANH: Math.tanh,
  SOFTPLUS: (x) => (x > 20 ? x : Math.log(1 + Math.exp(x))),
};
function naiveImportance(e: DsaExpression, z: Float32Array): number {
  let a = Array.from(z);
  for (const p of e.pre) a = naivePre[p](a);
  let v = naiveReduce[e.reduce](a);
  v = naiveScalar[e.transform](v);
  if (e.post) v = naiveScalar[e.post](v);
  return v;
}
function close(a: number, b: number, rel = 1e-9): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  if (!Number.isFinite(a) || !Number.isFinite(b)) return a === b;
  return Math.abs(a - b) <= rel * Math.max(1, Math.abs(a), Math.abs(b));
}

const rng = mulberry32;
function vector(n: number, seed: number, kind: 'pos' | 'signed' | 'zeros' = 'pos'): Float32Array {
  const r = rng(seed);
  const z = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
    z[i] = kind === 'signed' ? g : kind === 'zeros' && r() < 0.3 ? 0 : Math.abs(g) * 0.5;
  }
  return z;
}


describe('parseDsa / formatDsa', () => {
  it('parses the published function in both forms to the same expression', () => {
    const a = parseDsa(DSA_PUBLISHED);
    expect(a).toEqual({ pre: ['ABSLOG'], reduce: 'VAR', transform: 'ATAN', post: 'ASIN' });
    expect(parseDsa('asin(atan(var(abslog(z))))')).toEqual(a);
    expect(parseDsa('W:(ABSLOG)-(VAR)-(ATAN,ASIN)-(7)')).toEqual(a); // inert 4th field
    expect(parseDsa(' w : ( abslog ) - ( var ) - ( atan , asin ) ')).toEqual(a);
    expect(formatDsa(a, 'mathjs')).toBe('asin(atan(var(abslog(z))))');
    expect(formatDsa(a, 'reference')).toBe(DSA_PUBLISHED);
  });

  it('handles NO_OP in every field', () => {
    expect(parseDsa('W:(NO_OP)-(NO_OP)-(NO_OP)')).toEqual({ pre: [], reduce: 'MEAN', transform: 'NO_OP' });
    expect(parseDsa('W:()-(GRAM)-(NO_OP,EXP)')).toEqual({ pre: [], reduce: 'GRAM', transform: 'EXP' });
    expect(parseDsa('mean(z)')).toEqual({ pre: [], reduce: 'MEAN', transform: 'NO_OP' });
    expect(parseDsa('var(z^2)')).toEqual({ pre: ['POW'], reduce: 'VAR', transform: 'NO_OP' });
    expect(formatDsa('W:(POW,MMS)-(ENTROPY)-(LOG)', 'mathjs')).toBe('log(entropy(mms(square(z))))');
  });

  it('round-trips every expression of the space through both forms', () => {
    fc.assert(
      fc.property(arbExpr, (e) => {
        const ref = formatDsa(e, 'reference');
        const mj = formatDsa(e, 'mathjs');
        const a = parseDsa(ref);
        expect(parseDsa(mj)).toEqual(a);
        expect(formatDsa(a, 'reference')).toBe(formatDsa(parseDsa(mj), 'reference'));
      }),
      { numRuns: 300 },
    );
  });

  it.each([
    ['W:(FOO)-(VAR)-(ATAN)', /unknown pre-process op FOO/],
    ['W:(ABS,ABS,ABS)-(VAR)-(ATAN)', /3 pre-process ops/],
    ['W:(ABS)-(VAR,MEAN)-(ATAN)', /exactly one reduction/],
    ['W:(ABS)-(VAR)-()', /one or two scalar ops/],
    ['W:(ABS)-(VAR)-(A,B,C)', /one or two scalar ops/],
    ['W:(ABS)-(VAR)-(ATAN)-(x)', /4th field/],
    ['var(log(z))', /safelog/],
    ['asin(z)', /no reduction/],
    ['mms(var(z))', /element-wise/],
    ['sin(cos(tan(var(z))))', /at most 2/],
    ['var(mean(z))', /only one reduction/],
    ['var(x)', /unknown variable x/],
    ['var(z^3)', /power 2/],
    ['', /empty/],
  ])('rejects %s with a DsaPruneError', (text, re) => {
    let err: unknown;
    try {
      parseDsa(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DsaPruneError);
    expect((err as Error).message).toMatch(re);
    expect((err as DsaPruneError).hint).toBeTruthy();
  });
});

describe('importance (typed-array kernels) vs naive float64', () => {
  it('every pre op and reduction on vectors crossing chunk boundaries', () => {
    const n = CHUNK + 123;
    for (const kind of ['pos', 'signed', 'zeros'] as const) {
      const z = vector(n, kind.length, kind);
      const cases = [
        ...REDUCE_OPS.map((r) => ({ pre: [] as string[], reduce: r.name })),
        ...PRE_OPS.flatMap((o) => ['MEAN', 'VAR'].map((reduce) => ({ pre: [o.name], reduce }))),
        { pre: ['NORMALIZE', 'MMS'], reduce: 'ENTROPY' },
      ];
      {
        for (const c of cases) {
          const e = { ...c, transform: 'NO_OP' };
          const got = importance(e, z);
          const want = naiveImportance(e, z);
          expect(close(got, want, 1e-8), `${formatDsa(e)} on ${kind}: ${got} vs ${want}`).toBe(true);
        }
      }
    }
  });

  it('random expressions on random vectors', () => {
    fc.assert(
      fc.property(arbExpr, fc.integer({ min: 1, max: 600 }), fc.integer(), fc.constantFrom('pos', 'signed', 'zeros'), (e, n, seed, kind) => {
        const z = vector(n, seed, kind as 'pos');
        const got = importance(e, z);
        const want = naiveImportance(e, z);
        expect(close(got, want, 1e-7), `${formatDsa(e)} n=${n}: ${got} vs ${want}`).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('the published function: asin(atan(var(ln|z|)))', () => {
    const z = new Float32Array([0.1, 0.5, 2, 0, 3]);
    const logs = [0.1, 0.5, 2, 1, 3].map((x) => Math.log(Math.fround(x)));
    const v = varU(logs);
    expect(importance(DSA_PUBLISHED, z)).toBeNaN(); // var = 1.79 > tan 1
    const t = importanceTrace(DSA_PUBLISHED, z);
    expect(t.reduced).toBeCloseTo(v, 12);
    expect(t.stages.map((s) => s.op)).toEqual(['ATAN', 'ASIN']);
    const small = new Float32Array([1, 1.5, 2, 2.5]);
    const w = varU(Array.from(small).map(Math.log));
    expect(importance(DSA_PUBLISHED, small)).toBeCloseTo(Math.asin(Math.atan(w)), 14);
  });

  it('edge cases follow IEEE semantics', () => {
    expect(importance('var(z)', new Float32Array([3]))).toBeNaN(); // n − 1 = 0
    expect(importance('geometric_mean(z)', new Float32Array([1, 0, 2]))).toBeNaN();
    expect(importance('entropy(z)', new Float32Array([-1, -2]))).toBeNaN();
    expect(importance('entropy(z)', new Float32Array([1, 1, 1, 1]))).toBeCloseTo(Math.log(4), 14);
    expect(importance('log(mean(z))', new Float32Array([0, 0]))).toBe(-Infinity);
    expect(importance('mean(normalize(z))', new Float32Array([2, 2, 2]))).toBe(0); // NaN → 0
  });

  it('dsaScores scores every block', () => {
    const blocks = [1, 2, 3].map((s) => ({ z: vector(100, s) }));
    expect(dsaScores('std(z)', blocks)).toEqual(blocks.map((b) => importance('std(z)', b.z)));
  });

  it('mathjs registration evaluates the same function on small arrays', () => {
    const math = dsaMath();
    fc.assert(
      fc.property(arbExpr, fc.integer({ min: 2, max: 40 }), fc.integer(), (e, n, seed) => {
        const z = vector(n, seed, 'zeros');
        const got = math.evaluate(formatDsa(e, 'mathjs'), { z: Array.from(z) }) as unknown;
        const want = importance(e, z);
        const g = typeof got === 'number' ? got : NaN;
        expect(close(g, want, 1e-9), `${formatDsa(e, 'mathjs')}: ${String(got)} vs ${want}`).toBe(true);
      }),
      { numRuns: 150 },
    );
  });
});

describe('simplifyDsa', () => {
  it('gives equivalent spellings one canonical string', () => {
    expect(simplifyDsa('W:(ABS,ABS)-(MEAN)-(ATAN,TAN)')).toBe('l1_norm(z)');
    expect(simplifyDsa('W:(ABS)-(L1_NORM)-(NO_OP)')).toBe('l1_norm(z)');
    expect(simplifyDsa('l1_norm(z)')).toBe('l1_norm(z)');
    expect(simplifyDsa('W:(POW,ABS)-(GRAM)-(EXP,ABS)')).toBe('exp(gram(square(z)))');
    expect(simplifyDsa('abs(var(abslog(abs(z))))')).toBe('var(abslog(z))');
    expect(simplifyDsa(DSA_PUBLISHED)).toBe('asin(atan(var(abslog(z))))');
    // not identities: kept
    expect(simplifyDsa('atan(tan(var(z)))')).toBe('atan(tan(var(z)))');
    expect(simplifyDsa('sin(asin(var(z)))')).toBe('sin(asin(var(z)))');
  });

  it('never changes the function (random expressions, random vectors)', () => {
    fc.assert(
      fc.property(arbExpr, fc.integer({ min: 2, max: 300 }), fc.integer(), fc.constantFrom('pos', 'signed', 'zeros'), (e, n, seed, kind) => {
        const z = vector(n, seed, kind as 'pos');
        const s = simplifyDsaExpression(e);
        const a = importance(e, z);
        const b = importance(s, z);
        expect(close(a, b, 1e-9), `${formatDsa(e, 'mathjs')} → ${formatDsa(s, 'mathjs')}: ${a} vs ${b}`).toBe(true);
        expect(simplifyDsa(s)).toBe(simplifyDsa(e)); // idempotent
      }),
      { numRuns: 300 },
    );
  });
});

describe('reduceAll (the fused pass the search memoises)', () => {
  it('gives every reduction bit for bit as its own reducer, across chunks and with NaN, ±Infinity, zeros and negatives', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.double({ noNaN: false }), fc.constantFrom(0, -0, 1e-300, Infinity, -Infinity, NaN), fc.double({ min: 0, max: 10 })), { minLength: 1, maxLength: 300 }),
        fc.integer({ min: 1, max: 5 }),
        (xs, chunks) => {
          // The vector is repeated so that it spans several CHUNK-sized chunks when long enough.
          const a = Float64Array.from({ length: xs.length * chunks }, (_, i) => xs[i % xs.length]!);
          const src: ChunkSource = (visit) => {
            const size = Math.max(1, Math.ceil(a.length / chunks));
            for (let off = 0; off < a.length; off += size) {
              const part = a.slice(off, Math.min(a.length, off + size));
              visit(part, part.length);
            }
          };
          const all = reduceAll(src);
          for (const r of REDUCE_OPS) expect(Object.is(all[r.name], r.reduce(src)) || all[r.name] === r.reduce(src)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
