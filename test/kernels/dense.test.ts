import { describe, expect, it } from 'vitest';
import { countZeros } from '../../src/kernels/dense.js';

describe('countZeros (branch-free on the bits)', () => {
  it('counts exactly the entries === 0 (±0; not NaN, subnormals, ±Infinity), on subarrays too', async () => {
    const fc = await import('fast-check');
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.float({ noDefaultInfinity: false }), fc.constantFrom(0, -0, NaN, 1e-45, -1e-45, Infinity, -Infinity)), { maxLength: 200 }),
        fc.nat(7),
        (arr, off) => {
          const base = new Float32Array(arr.length + 8).fill(0);
          base.set(arr, off);
          const w = base.subarray(off, off + arr.length);
          expect(countZeros(w)).toBe(Array.from(w).filter((x) => x === 0).length);
        },
      ),
      { numRuns: 300, seed: 11 },
    );
  });
});
