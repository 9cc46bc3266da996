import { describe, expect, it } from 'vitest';
import {
  kthSmallest,
  quickselectInPlace,
  setSmallest,
  smallestInGroup,
  stableCut,
  zeroSmallestF32,
} from '../../src/kernels/select.js';
import { randomMatrix, rng, stableOrder } from './rng.js';

function sortedCopy(a: ArrayLike<number>): number[] {
  return Array.from(a, (x) => (Number.isNaN(x) ? Infinity : x)).sort((x, y) => x - y);
}

describe('quickselect / kthSmallest', () => {
  it('matches a full sort on random, tied, sorted and reversed inputs', () => {
    const cases: Float32Array[] = [
      randomMatrix(1, 1001, 1),
      randomMatrix(1, 777, 2, 5), // many ties
      Float32Array.from({ length: 500 }, (_, i) => i),
      Float32Array.from({ length: 500 }, (_, i) => 500 - i),
      new Float32Array(64), // all equal
      Float32Array.from([3]),
    ];
    const r = rng(3);
    for (const c of cases) {
      const sorted = sortedCopy(c);
      for (let t = 0; t < 20; t++) {
        const k = Math.floor(r() * c.length);
        expect(kthSmallest(c, k)).toBe(sorted[k]);
      }
      expect(kthSmallest(c, 0)).toBe(sorted[0]);
      expect(kthSmallest(c, c.length - 1)).toBe(sorted[c.length - 1]);
    }
  });

  it('works on a sub-range and does not touch the input', () => {
    const a = randomMatrix(1, 300, 4);
    const before = a.slice();
    const sorted = sortedCopy(a.subarray(100, 250));
    expect(kthSmallest(a, 37, 100, 150)).toBe(sorted[37]);
    expect(a).toEqual(before);
    const b = Float64Array.from(a);
    expect(quickselectInPlace(b, 50, 50, 60)).toBe(sortedCopy(a.subarray(50, 60))[0]);
  });

  it('sorts NaN last', () => {
    const a = Float32Array.from([NaN, 2, 1, NaN, 0]);
    expect(kthSmallest(a, 2)).toBe(2);
    expect(kthSmallest(a, 3)).toBe(Infinity);
  });
});

describe('stableCut / setSmallest = first k of a stable ascending sort', () => {
  it('marks exactly the first k of a stable sort (ties lowest index first)', () => {
    const r = rng(5);
    for (const levels of [0, 3, 7]) {
      const v = randomMatrix(1, 333, 10 + levels, levels);
      const order = stableOrder(v);
      for (const k of [0, 1, 2, 50, 166, 332, 333, Math.floor(r() * 333)]) {
        const mask = new Uint8Array(v.length);
        expect(setSmallest(v, k, mask, 1)).toBe(k);
        const expected = new Uint8Array(v.length);
        for (let t = 0; t < k; t++) expected[order[t]] = 1;
        expect(mask).toEqual(expected);
      }
    }
  });

  it('zeroes a Float32 target at an offset', () => {
    const v = Float32Array.from([5, 1, 1, 1, 0, 9]);
    const target = new Float32Array(10).fill(7);
    setSmallest(v, 3, target, 0, 0, 6, 4);
    // order: idx4 (0), idx1, idx2, idx3 (1s) → first 3: 4, 1, 2
    expect(Array.from(target)).toEqual([7, 7, 7, 7, 7, 0, 0, 7, 0, 7]);
    expect(stableCut(v, 3)).toEqual({ value: 1, equalTaken: 2 });
  });
});

describe('smallestInGroup', () => {
  it('picks min(count, width) by (value, index) for small and large groups', () => {
    const out = new Int32Array(64);
    for (const [width, count, levels] of [
      [4, 2, 3],
      [8, 4, 2],
      [4, 5, 3],
      [3, 2, 0],
      [32, 16, 4],
      [64, 20, 4],
    ]) {
      const v = randomMatrix(1, width, width * 31 + count, levels);
      const c = smallestInGroup(v, 0, width, count, out);
      const expected = stableOrder(v).slice(0, Math.min(count, width)).sort((a, b) => a - b);
      expect(c).toBe(expected.length);
      expect(Array.from(out.subarray(0, c))).toEqual(expected);
    }
  });
});

describe('property: setSmallest / kthSmallest agree with a stable sort on any float32 input', () => {
  it('holds for arbitrary arrays (NaN, ±0, ±Infinity, ties) and any k', async () => {
    const fc = await import('fast-check');
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.float({ noDefaultInfinity: false }), fc.constantFrom(0, -0, 1, NaN)), { minLength: 1, maxLength: 80 }),
        fc.nat(),
        (arr, kRaw) => {
          const v = Float32Array.from(arr);
          const k = kRaw % (v.length + 1);
          const mask = new Uint8Array(v.length);
          setSmallest(v, k, mask, 1);
          const expected = new Uint8Array(v.length);
          const order = stableOrder(v);
          for (let t = 0; t < k; t++) expected[order[t]] = 1;
          expect(mask).toEqual(expected);
          if (k < v.length) expect(kthSmallest(v, k) === sortedCopy(v)[k]).toBe(true); // -0 and +0 are the same key
        },
      ),
      { numRuns: 300, seed: 42 },
    );
  });
});

describe('zeroSmallestF32 (Wanda\'s float32 row cut)', () => {
  it('zeroes exactly the first k of a stable sort of the row, at any offsets (NaN, ±0, ±Infinity, ties)', async () => {
    const fc = await import('fast-check');
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.float({ noDefaultInfinity: false }), fc.constantFrom(0, -0, 1, NaN, 0.5)), { minLength: 1, maxLength: 120 }),
        fc.nat(),
        fc.nat(5),
        fc.nat(5),
        fc.boolean(),
        (arr0, kRaw, vOff, oOff, abs) => {
          // abs: the histogram path (no negative value; Wanda's metric), else the quickselect fallback
          const arr = abs ? arr0.map((x) => Math.abs(x)) : arr0;
          const len = arr.length;
          const values = new Float32Array(vOff + len + 2).fill(-7);
          values.set(arr, vOff);
          const row = Float32Array.from(arr);
          const k = kRaw % (len + 1);
          const out = new Float32Array(oOff + len + 3).fill(9);
          const n = zeroSmallestF32(values, k, out, vOff, len, oOff, new Float32Array(len));
          expect(n).toBe(k);
          const expected = new Float32Array(oOff + len + 3).fill(9);
          for (const i of stableOrder(row).slice(0, k)) expected[oOff + i] = 0;
          expect(Array.from(out)).toEqual(Array.from(expected));
        },
      ),
      { numRuns: 400, seed: 7 },
    );
  });

  it('gives the generic setSmallest result on wide tied rows', () => {
    for (const [len, levels] of [[576, 0], [1536, 6], [4864, 3]] as const) {
      const v = randomMatrix(1, len, len, levels).map(Math.abs);
      for (const k of [1, len >> 1, len - 1]) {
        const a = new Float32Array(len).fill(1);
        const b = new Float32Array(len).fill(1);
        setSmallest(v, k, a, 0);
        zeroSmallestF32(v, k, b, 0, len, 0, new Float32Array(len));
        expect(b).toEqual(a);
      }
    }
  });
});
