import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  AllocationStatsCache, decodeAllocationStats, encodeAllocationStats, loadAllocationStats, saveAllocationStats,
  type BlockAllocationStats,
} from '../../src/allocators/index.js';
import { DsaPruneError } from '../../src/errors.js';

const dir = mkdtempSync(path.join(tmpdir(), 'dsa-stats-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sample(): BlockAllocationStats[] {
  return [0, 1, 2].map((index) => {
    const n = [5, 0, 1000][index];
    const z = new Float32Array(n);
    for (let i = 0; i < n; i++) z[i] = Math.fround(Math.sin(i * 1.7 + index) * 10 ** (i % 7)); // wide range, negatives
    return {
      index,
      params: n,
      linears: n ? [{ name: `model.layers.${index}.mlp.down_proj`, role: 'down' as const, params: n }] : [],
      z,
    };
  });
}
const key = { modelHash: 'm1', calibrationHash: 'c1', variant: 'seqlen=512' };

function expectSame(a: BlockAllocationStats[], b: BlockAllocationStats[]): void {
  expect(b.length).toBe(a.length);
  a.forEach((x, i) => {
    expect(b[i].index).toBe(x.index);
    expect(b[i].params).toBe(x.params);
    expect(b[i].linears).toEqual(x.linears);
    expect(b[i].z).toBeInstanceOf(Float32Array);
    expect(Array.from(b[i].z)).toEqual(Array.from(x.z)); // bit-exact
  });
}

describe('allocation stats cache', () => {
  it('round-trips through a buffer and a file', async () => {
    const s = sample();
    const dec = decodeAllocationStats(encodeAllocationStats(s, key));
    expect(dec.key).toEqual(key);
    expectSame(s, dec.blocks);
    const file = path.join(dir, 'a', 'stats.dsastats');
    await saveAllocationStats(file, s, key);
    const back = await loadAllocationStats(file, key);
    expect(back!.key).toEqual(key);
    expectSame(s, back!.blocks);
    // File and buffer encodings agree byte for byte.
    expect(Buffer.compare(readFileSync(file), Buffer.from(encodeAllocationStats(s, key)))).toBe(0);
  });

  it('a missing file or another model / calibration / variant is a miss', async () => {
    const file = path.join(dir, 'b.dsastats');
    expect(await loadAllocationStats(file)).toBeUndefined();
    await saveAllocationStats(file, sample(), key);
    expect(await loadAllocationStats(file, { modelHash: 'other' })).toBeUndefined();
    expect(await loadAllocationStats(file, { calibrationHash: 'other' })).toBeUndefined();
    expect(await loadAllocationStats(file, { variant: 'seqlen=256' })).toBeUndefined();
    expect(await loadAllocationStats(file, { modelHash: 'm1' })).toBeDefined();
  });

  it('a corrupt or truncated file is a DsaPruneError naming it', async () => {
    const bad = path.join(dir, 'bad.dsastats');
    writeFileSync(bad, 'hello world, not stats');
    await expect(loadAllocationStats(bad)).rejects.toThrow(DsaPruneError);
    await expect(loadAllocationStats(bad)).rejects.toThrow(/bad\.dsastats/);
    const full = encodeAllocationStats(sample(), key);
    const cut = path.join(dir, 'cut.dsastats');
    writeFileSync(cut, full.subarray(0, full.length - 100));
    await expect(loadAllocationStats(cut)).rejects.toThrow(/truncated/);
    expect(() => decodeAllocationStats(full.subarray(0, full.length - 100))).toThrow(/truncated/);
    // A wrong type in a nested header field (same length, so the layout is intact): invalid-data naming the field.
    const h = new DataView(full.buffer, full.byteOffset).getUint32(12, true);
    const head = Buffer.from(full.subarray(16, 16 + h)).toString('utf8');
    const edited = head.replace('"zLength":1000', '"zLength":"10"');
    expect(edited.length).toBe(head.length);
    const bad2 = Buffer.from(full);
    bad2.write(edited, 16, 'utf8');
    const e = (() => { try { decodeAllocationStats(bad2, 'x.dsastats'); } catch (err) { return err as DsaPruneError; } })();
    expect(e).toBeInstanceOf(DsaPruneError);
    expect(e!.code).toBe('invalid-data');
    expect(e!.message).toBe('x.dsastats is not a dsa-prune statistics file (header: field "blocks[2].zLength" must be an integer ≥ 0, got "10")');
  });

  it('AllocationStatsCache computes once per key, in memory and on disk', async () => {
    let calls = 0;
    const compute = () => {
      calls++;
      return sample();
    };
    const c1 = new AllocationStatsCache(path.join(dir, 'cache'));
    const [a, b] = await Promise.all([c1.getOrCompute(key, compute), c1.getOrCompute(key, compute)]);
    expect(calls).toBe(1);
    expect(a).toBe(b);
    const c2 = new AllocationStatsCache(path.join(dir, 'cache')); // a new process: reads the file
    expectSame(sample(), await c2.getOrCompute(key, compute));
    expect(calls).toBe(1);
    await c2.getOrCompute({ ...key, calibrationHash: 'c2' }, compute);
    expect(calls).toBe(2);
    const mem = new AllocationStatsCache();
    expect(mem.fileFor(key)).toBeUndefined();
    await mem.getOrCompute(key, compute);
    expect(calls).toBe(3);
  });
});
