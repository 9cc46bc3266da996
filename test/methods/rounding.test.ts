import { describe, expect, it } from 'vitest';
import { exactCount, referenceRowCount, rowCounts, splitExactCount } from '../../src/budget/rounding.js';

describe('rowCounts', () => {
  it('reference: floor(dIn·s) in every row (Python int())', () => {
    expect(Array.from(rowCounts(3, 64, 0.6, 'reference'))).toEqual([38, 38, 38]);
    expect(referenceRowCount(172, 0.7)).toBe(120); // 120.39999…
    expect(referenceRowCount(10, 0.3)).toBe(3); // 10·0.3 = 3.0000000000000004
  });

  it('exact: total round(s·numel), rows differ by ≤ 1, extras to the lowest rows', () => {
    for (const [dOut, dIn, s] of [[3, 64, 0.6], [7, 10, 0.55], [64, 172, 0.7], [5, 3, 0.1], [4, 4, 0]] as const) {
      const c = rowCounts(dOut, dIn, s, 'exact');
      const total = c.reduce((a, b) => a + b, 0);
      expect(total).toBe(Math.round(s * dOut * dIn));
      expect(Math.max(...c) - Math.min(...c)).toBeLessThanOrEqual(1);
      for (let i = 1; i < dOut; i++) expect(c[i]).toBeLessThanOrEqual(c[i - 1]);
    }
    expect(Array.from(rowCounts(3, 64, 0.6, 'exact'))).toEqual([39, 38, 38]); // 115.2 → 115
  });

  it('splitExactCount sums to exactCount and each part is within one of s·size', () => {
    const ends = [64 * 128, 64 * 256, 64 * 300];
    const parts = splitExactCount(0.7, ends);
    expect(parts.reduce((a, b) => a + b, 0)).toBe(exactCount(0.7, 64 * 300));
    let prev = 0;
    ends.forEach((e, i) => {
      expect(Math.abs(parts[i] - 0.7 * (e - prev))).toBeLessThanOrEqual(1);
      prev = e;
    });
  });
});
