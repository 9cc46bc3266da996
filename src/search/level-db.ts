/**
 * The SparseGPT level database of the level-switch search (EvoPress's "database"): for every linear and every level of
 * the grid, the linear's weights pruned by one-shot SparseGPT at that level, computed ONCE, linear after linear, from
 * the dense calibration statistics (the dense Gram of the search, as the fast fitness uses it). A candidate of the
 * search then assembles its model from the database (a copy per linear) instead of running the solver per candidate.
 *
 * Size: Σ over linears of (distinct levels of the linear) × dOut · dIn × 4 bytes (float32, so an assembled candidate
 * is bit-identical to running SparseGPT at those levels directly). It is held in memory (SharedArrayBuffers: worker
 * threads read the same bytes, no copy) when it fits `maxMemoryBytes` (default 1 GiB), else written to a temporary
 * folder (one file per linear and level; removed by close()) when it fits the free space there and `maxDiskBytes`;
 * else refused before any work, with the numbers.
 */
import { mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DsaPruneError } from '../errors.js';
import type { BudgetMode, LinearInfo } from '../types.js';
import type { PrunableModel } from '../model/index.js';
import { sparsegpt } from '../methods/index.js';
import type { DenseData } from './fitness.js';
import { apportionCounts } from '../budget/counts.js';

/** Default memory budget of the database before it goes to disk. */
export const LEVEL_DB_MEMORY_DEFAULT = 1024 ** 3;
/** Disk left free when the database is written to disk. */
const DISK_MARGIN = 256 * 1024 ** 2;

export interface LevelDbEntry {
  linear: string;
  /** Pruned weights of the linear at this level. */
  count: number;
  /** In memory: [dOut × dIn] row-major, in a SharedArrayBuffer. */
  data?: Float32Array;
  /** On disk: file name inside the database folder (raw little-endian float32). */
  file?: string;
}

/** What a worker thread needs to read the database (structured-cloneable; memory entries share their buffers). */
export interface LevelDbDescriptor {
  kind: 'memory' | 'disk';
  dir?: string;
  bytes: number;
  entries: LevelDbEntry[];
}

export interface LevelDbOptions {
  /** Hold the database in memory up to this many bytes (default 1 GiB); above, on disk. 0 = always on disk. */
  maxMemoryBytes?: number;
  /** Parent folder of the temporary database folder (default the OS temp folder). */
  dir?: string;
  /** Largest database written to disk (default: the free space of `dir` minus 256 MiB). */
  maxDiskBytes?: number;
  /** Pattern budget of the search (the levels search uses exact). */
  budget?: BudgetMode;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

export interface LevelDb {
  readonly kind: 'memory' | 'disk';
  readonly bytes: number;
  readonly entries: number;
  readonly seconds: number;
  /** Share with worker threads. */
  descriptor(): LevelDbDescriptor;
  /** The pruned weights [dOut × dIn] of `l` at `sparsity`, or undefined when that level is not in the database. */
  lookup(l: LinearInfo, sparsity: number): Float32Array | undefined;
  /** Remove the temporary folder (disk). */
  close(): void;
}

/** The part of a level grid (levels.ts LevelGrid) the database reads. */
export interface LevelDbGrid {
  quantum: number;
  units: { params: number; base: number; lo: number; hi: number; linears: { name: string; params: number }[] }[];
}

/** Per-linear sparsities of one unit pruning `count` of its weights (the unit's share apportioned over its linears). */
export function unitSparsities(u: LevelDbGrid['units'][number], count: number): Record<string, number> {
  if (u.linears.length === 1) return { [u.linears[0].name]: count / u.params };
  const s = count / u.params;
  const c = apportionCounts(u.linears.map(() => s), u.linears.map((l) => l.params), s, { min: 0, max: 1 });
  const out: Record<string, number> = {};
  u.linears.forEach((l, j) => (out[l.name] = c[j] / l.params));
  return out;
}

/** The distinct pruned counts of every linear over the grid's levels. */
export function levelDbPlan(grid: LevelDbGrid, linears: LinearInfo[]): { linear: LinearInfo; counts: number[] }[] {
  const byName = new Map(linears.map((l) => [l.name, l]));
  const counts = new Map<string, Set<number>>();
  for (const u of grid.units) {
    for (let k = u.lo; k <= u.hi; k++) {
      const sp = unitSparsities(u, u.base + k * grid.quantum);
      for (const [name, s] of Object.entries(sp)) {
        const l = byName.get(name);
        if (!l) throw new DsaPruneError(`level database: the grid names ${name}, which is not a linear of this model`);
        let set = counts.get(name);
        if (!set) counts.set(name, (set = new Set()));
        set.add(Math.round(s * l.dIn * l.dOut));
      }
    }
  }
  return linears.filter((l) => counts.has(l.name)).map((l) => ({ linear: l, counts: [...counts.get(l.name)!].sort((a, b) => a - b) }));
}

const gb = (b: number) => (b >= 1024 ** 3 ? `${(b / 1024 ** 3).toFixed(2)} GiB` : `${(b / 1024 ** 2).toFixed(1)} MiB`);
const keyOf = (name: string, count: number) => `${name}|${count}`;

/** Free bytes of the file system holding `dir`. */
function freeBytes(dir: string): number {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return Infinity;
  }
}

/**
 * Compute the database: for each linear (in model order), each of its levels, one-shot SparseGPT on a fresh copy of the
 * dense weights with the dense Gram. Refused (DsaPruneError `refused`, nothing written) when it fits neither memory
 * nor disk.
 */
export async function buildLevelDb(pm: PrunableModel, dense: DenseData, grid: LevelDbGrid, linears: LinearInfo[], o: LevelDbOptions = {}): Promise<LevelDb> {
  const t0 = performance.now();
  const plan = levelDbPlan(grid, linears);
  const levels = plan.reduce((a, p) => a + p.counts.length, 0);
  const bytes = plan.reduce((a, p) => a + p.counts.length * p.linear.dIn * p.linear.dOut * 4, 0);
  const weights = plan.reduce((a, p) => a + p.linear.dIn * p.linear.dOut, 0);
  const maxMem = o.maxMemoryBytes ?? LEVEL_DB_MEMORY_DEFAULT;
  const parent = o.dir ?? os.tmpdir();
  const kind: 'memory' | 'disk' = bytes <= maxMem ? 'memory' : 'disk';
  let dir: string | undefined;
  const size = `${levels} levels over ${plan.length} linears (${weights} weights, ${(levels / Math.max(1, plan.length)).toFixed(1)} levels each on average) × 4 bytes = ${bytes} bytes (${gb(bytes)})`;
  if (kind === 'disk') {
    const free = freeBytes(parent);
    const maxDisk = Math.min(o.maxDiskBytes ?? Infinity, free - DISK_MARGIN);
    if (bytes > maxDisk) {
      throw new DsaPruneError(
        `the SparseGPT level database needs ${size}: more than the memory limit of ${maxMem} bytes (${gb(maxMem)}) and than the disk room in ${parent} (${o.maxDiskBytes !== undefined ? `limit ${o.maxDiskBytes} bytes, ` : ''}${Number.isFinite(free) ? `${gb(free)} free` : 'free space unknown'}, ${gb(DISK_MARGIN)} kept free)`,
        { code: 'refused', hint: 'use fewer levels (a smaller --level-spread or a larger --level-step), --granularity block, a larger --level-db-memory, or --level-db-dir on a disk with room' },
      );
    }
    dir = mkdtempSync(path.join(parent, 'dsa-prune-level-db-'));
  }
  const entries: LevelDbEntry[] = [];
  let done = 0;
  try {
    for (const [li, p] of plan.entries()) {
      const l = p.linear;
      const stats = dense.stats.get(l.name);
      if (!stats?.gram) throw new DsaPruneError(`level database: no dense Gram for ${l.name}`, { hint: 'compute the dense statistics with method sparsegpt' });
      for (const count of p.counts) {
        o.signal?.throwIfAborted();
        const w = pm.readWeight(l);
        await sparsegpt.prune({ weight: w, dOut: l.dOut, dIn: l.dIn, stats, sparsity: count / (l.dIn * l.dOut), pattern: { kind: 'unstructured' }, budget: o.budget ?? 'exact', signal: o.signal, name: l.name });
        if (kind === 'memory') {
          const data = new Float32Array(new SharedArrayBuffer(w.byteLength));
          data.set(w);
          entries.push({ linear: l.name, count, data });
        } else {
          const file = `${li}-${count}.f32`;
          writeFileSync(path.join(dir!, file), new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
          entries.push({ linear: l.name, count, file });
        }
        o.onProgress?.(++done, levels);
      }
    }
  } catch (e) {
    if (dir) rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const desc: LevelDbDescriptor = { kind, ...(dir ? { dir } : {}), bytes, entries };
  const reader = openLevelDb(desc);
  return {
    kind, bytes, entries: entries.length, seconds: (performance.now() - t0) / 1000,
    descriptor: () => desc,
    lookup: reader,
    close() {
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The lookup of a database descriptor (a worker thread's side): memory entries by reference, disk entries read per call. */
export function openLevelDb(desc: LevelDbDescriptor): (l: LinearInfo, sparsity: number) => Float32Array | undefined {
  const map = new Map<string, LevelDbEntry>(desc.entries.map((e) => [keyOf(e.linear, e.count), e]));
  return (l, sparsity) => {
    const e = map.get(keyOf(l.name, Math.round(sparsity * l.dIn * l.dOut)));
    if (!e) return undefined;
    if (e.data) return e.data;
    const b = readFileSync(path.join(desc.dir!, e.file!));
    if (b.byteLength !== l.dIn * l.dOut * 4) throw new DsaPruneError(`level database file ${e.file} of ${l.name} has ${b.byteLength} bytes, expected ${l.dIn * l.dOut * 4}`);
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
}

/**
 * A database filled on demand (queue workers, which do not know the grid): a linear's level is pruned the first time a
 * job needs it and kept while the total stays within `maxMemoryBytes` (default 1 GiB; beyond, computed per use).
 * Same numbers as buildLevelDb: one-shot SparseGPT on a fresh copy of the dense weights with the dense Gram.
 */
export function lazyLevelDb(pm: PrunableModel, dense: DenseData, o: { maxMemoryBytes?: number; budget?: BudgetMode } = {}) {
  const map = new Map<string, Float32Array>();
  const max = o.maxMemoryBytes ?? LEVEL_DB_MEMORY_DEFAULT;
  let bytes = 0;
  return {
    get bytes() {
      return bytes;
    },
    get entries() {
      return map.size;
    },
    async lookup(l: LinearInfo, sparsity: number): Promise<Float32Array> {
      const key = keyOf(l.name, Math.round(sparsity * l.dIn * l.dOut));
      const hit = map.get(key);
      if (hit) return hit;
      const w = pm.readWeight(l);
      await sparsegpt.prune({ weight: w, dOut: l.dOut, dIn: l.dIn, stats: dense.stats.get(l.name), sparsity, pattern: { kind: 'unstructured' }, budget: o.budget ?? 'exact', name: l.name });
      if (bytes + w.byteLength <= max) {
        map.set(key, w);
        bytes += w.byteLength;
      }
      return w;
    },
  };
}
