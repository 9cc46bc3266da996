import { afterAll, describe, expect, it } from 'vitest';
import { bench, clearCollected, collected, formatTable, ratio, record, value } from '../../bench/harness.js';

afterAll(() => clearCollected()); // nothing to print when the worker exits

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('bench harness', () => {
  it('times the median of the repeats and samples the peak RSS while the case runs', async () => {
    const before = process.memoryUsage.rss();
    let calls = 0;
    const big = await bench(
      'hold 64 MB',
      async () => {
        calls++;
        const a = new Float64Array(8 * 1024 * 1024); // 64 MB
        a.fill(1); // touch every page
        await sleep(120);
        return a[a.length - 1];
      },
      { repeat: 2, warmup: 1, sampleMs: 10 },
    );
    expect(calls).toBe(3);
    expect(big.repeat).toBe(2);
    expect(big.min).toBeLessThanOrEqual(big.seconds);
    expect(big.seconds).toBeLessThanOrEqual(big.max);
    expect(big.min).toBeGreaterThanOrEqual(0.11);
    expect(big.peakRssMB).toBeGreaterThan(before / 2 ** 20 + 40);
    expect(big.maxRssMB).toBeGreaterThanOrEqual(big.peakRssMB - 1);

    const quick = await bench('sleep 30 ms', () => sleep(30), { repeat: 3 });
    const r = ratio('hold / sleep', big, quick);
    expect(r.value).toBeCloseTo(big.seconds / quick.seconds, 12);
    value('tokens per second', 1234.5, 'tok/s');
    record({ name: 'external case', seconds: 2.5, peakRssMB: 300 });
    expect(collected().map((x) => x.kind)).toEqual(['time', 'time', 'ratio', 'value', 'time']);

    const text = formatTable(collected());
    const lines = text.split('\n');
    expect(lines.length).toBe(2 + 5);
    expect(lines[0]).toMatch(/^case\s+seconds\s+min–max\s+repeat\s+peak RSS MB\s+max RSS MB\s+notes$/);
    expect(text).toContain('hold / sleep');
    expect(text).toMatch(/hold 64 MB \/ sleep 30 ms/);
    expect(text).toContain('1235 tok/s');
    expect(lines.find((l) => l.startsWith('external case'))).toMatch(/2\.5\s+2\.5–2\.5\s+1\s+300/);
  });
});
