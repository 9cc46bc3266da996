/**
 * Channel scores and FLAP's compensation against naive float64 computations from raw activation samples (two-pass
 * variance, explicit sums), independent of the Σx / Σx² shortcut the implementation uses.
 */
import { describe, expect, it } from 'vitest';
import { channelMeans, channelScores, compensationBias } from '../../src/methods/structured/index.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

describe('structured channel scores', () => {
  const F = 12;
  const D = 5;
  const N = 40;
  const r = rng(3);
  const h = Array.from({ length: N }, () => Array.from({ length: F }, (_, j) => r() * (1 + j) + 0.3 * j)); // tokens × F
  const down = Float32Array.from({ length: D * F }, () => r());
  const up = Float32Array.from({ length: F * 4 }, () => r());
  const sq = new Float64Array(F);
  const sum = new Float64Array(F);
  for (const row of h) row.forEach((x, j) => { sq[j] += x * x; sum[j] += x; });
  const input = { width: F, down, downOut: D, up: [{ w: up, dIn: 4, offsets: [0] }], sq, sum, tokens: N };

  it('flap = two-pass variance × ‖W_down[:, j]‖²', () => {
    const s = channelScores('flap', input);
    for (let j = 0; j < F; j++) {
      const mean = h.reduce((a, row) => a + row[j]!, 0) / N;
      const v = h.reduce((a, row) => a + (row[j]! - mean) ** 2, 0) / N;
      let c = 0;
      for (let o = 0; o < D; o++) c += down[o * F + j]! ** 2;
      expect(s[j]).toBeCloseTo(v * c, 10);
    }
  });
  it('wanda-sp = Σ_o |W_down[o, j]| · sqrt(Σ_t h_tj²)', () => {
    const s = channelScores('wanda-sp', input);
    for (let j = 0; j < F; j++) {
      let a = 0;
      for (let o = 0; o < D; o++) a += Math.abs(down[o * F + j]!) * Math.sqrt(h.reduce((x, row) => x + row[j]! ** 2, 0));
      expect(s[j]).toBeCloseTo(a, 10);
    }
  });
  it('magnitude = Σ|W| over the channel’s up row and down column', () => {
    const s = channelScores('magnitude', input);
    for (let j = 0; j < F; j++) {
      let a = 0;
      for (let i = 0; i < 4; i++) a += Math.abs(up[j * 4 + i]!);
      for (let o = 0; o < D; o++) a += Math.abs(down[o * F + j]!);
      expect(s[j]).toBeCloseTo(a, 10);
    }
  });
  it('compensation = Σ_removed mean_j · W_down[:, j]: the block output of the mean activation is kept', () => {
    const removed = [1, 4, 7];
    const b = compensationBias(down, D, F, removed, channelMeans(sum, N));
    for (let o = 0; o < D; o++) {
      // Output of the removed channels on the mean token, computed from the raw samples.
      let e = 0;
      for (const j of removed) e += (h.reduce((a, row) => a + row[j]!, 0) / N) * down[o * F + j]!;
      expect(b[o]).toBeCloseTo(e, 12);
    }
  });
});
