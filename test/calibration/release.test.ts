/**
 * The calibration frees its weight feeds when a pass is done (src/model/release.ts), instead of leaving them to the
 * next GC: the prefix's embedding table left as garbage sat in the peak of a SmolLM2-135M prune (docs/scale.md).
 * Checked here: the memory is really given back (ArrayBuffer bytes of the process), every array the runner read is
 * released, the model's own values are untouched, and the statistics are the same bits as without releasing.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCalibration, type CalibrationModel } from '../../src/calibration/index.js';
import { loadModelDir } from '../../src/model/index.js';
import { releaseBuffers } from '../../src/model/release.js';
import type { InputStats } from '../../src/types.js';
import { repoRoot } from './fixture.js';

const dir = path.join(repoRoot, 'models/stories260k');
const N = 6;
const T = 32;
const windows = Int32Array.from({ length: N * T }, (_, i) => 3 + ((i * 7919) % 500));

describe('weight feeds released after each pass', () => {
  it('releaseBuffers detaches the buffers and gives their memory back before it resolves', async () => {
    const MiB = 2 ** 20;
    const a = new Float32Array(16 * MiB); // 64 MiB
    const b = new Uint8Array(32 * MiB);
    a.fill(1);
    b.fill(2);
    const before = process.memoryUsage().arrayBuffers;
    await releaseBuffers([a.buffer, b.buffer, a.buffer]);
    const after = process.memoryUsage().arrayBuffers;
    expect(a.length).toBe(0);
    expect(b.length).toBe(0);
    // 96 MiB less in ArrayBuffers right away, with no GC in between (a.buffer passed twice: counted once).
    expect(before - after).toBeGreaterThanOrEqual(96 * MiB - MiB);
    await releaseBuffers([]);
  });

  it('runCalibration releases every array it read, leaves the model intact, and gives the same statistics', async () => {
    const { prunable: pm } = await loadModelDir(dir);
    const reads: Float32Array[] = [];
    const base = { proto: pm.proto, linears: pm.linears, source: pm.source, config: pm.config };
    const releasing: CalibrationModel = {
      ...base,
      readInitializer: (name) => {
        const v = pm.readInitializer(name);
        reads.push(v);
        return v;
      },
      releaseReads: (v) => pm.releaseReads(v),
    };
    // The same reads, left to the GC (the runner before this change).
    const keeping: CalibrationModel = { ...base, readInitializer: (name) => pm.readInitializer(name) };
    const names = [...new Set(pm.linears.map((l) => l.weight))];
    const dense = new Map(names.map((n) => [n, pm.readInitializer(n).slice()]));

    const collect = async (m: CalibrationModel, mode: 'sequential' | 'oneshot') => {
      const out = new Map<string, InputStats>();
      await runCalibration(m, windows, { nsamples: N, seqlen: T, batchSize: 4, mode, needs: { sq: true, gram: true } }, (_b, st) => {
        for (const [k, v] of st) out.set(k, v);
      });
      return out;
    };
    for (const mode of ['sequential', 'oneshot'] as const) {
      reads.length = 0;
      const got = await collect(releasing, mode);
      const want = await collect(keeping, mode);
      // The prefix read the embedding table, and each block pass its weights: all released (emptied).
      expect(reads.length).toBeGreaterThan(pm.linears.length);
      expect(reads.filter((v) => v.length > 0)).toEqual([]);
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
      for (const [k, w] of want) {
        expect(Buffer.from(got.get(k)!.sq.buffer).equals(Buffer.from(w.sq.buffer)), `${mode} ${k} Σx²`).toBe(true);
        expect(Buffer.from(got.get(k)!.gram!.buffer).equals(Buffer.from(w.gram!.buffer)), `${mode} ${k} XᵀX`).toBe(true);
      }
    }
    // The model's values are untouched, and arrays it did not hand out are left alone.
    for (const [n, v] of dense) expect(Buffer.from(pm.readInitializer(n).buffer).equals(Buffer.from(v.buffer))).toBe(true);
    const foreign = new Float32Array(8).fill(3);
    await pm.releaseReads([foreign]);
    expect(foreign.length).toBe(8);
  });
});
