/**
 * Dense allocation statistics (BlockAllocationStats[]) on disk and in memory, so the pipeline and the search compute
 * the dense pass once per model and calibration set.
 *
 * File format (little-endian):
 *   8 bytes  magic "DSAPSTAT"
 *   u32      format version (1)
 *   u32      H = byte length of the JSON header
 *   H bytes  UTF-8 JSON { modelHash, calibrationHash, variant?, blocks: [{ index, params, linears, zLength }] }
 *   padding  zero bytes up to a multiple of 8
 *   then, block after block, zLength float32 values of z.
 * Files are written to a temporary name and renamed, so a reader never sees half a file.
 */
import { open, mkdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { DsaPruneError } from '../errors.js';
import { writeFileAtomic } from '../data/atomic.js';
import { checkSchema, count, obj, v } from '../data/schema.js';
import { LINEAR_ROLES } from '../types.js';
import type { BlockAllocationStats } from './types.js';

/** What the statistics were computed from; a cached file is reused only when every field matches. */
export interface AllocationStatsKey {
  /** Hash of the model weights / folder (the caller's choice, e.g. sha256 of model.onnx). */
  modelHash: string;
  /** Hash of the calibration token windows. */
  calibrationHash: string;
  /** Anything else that changes the statistics (selected linears, sequence length, …). */
  variant?: string;
}

const MAGIC = 'DSAPSTAT';
const VERSION = 1;

interface Header extends AllocationStatsKey {
  blocks: { index: number; params: number; linears: BlockAllocationStats['linears']; zLength: number }[];
}


/** A block's linears as BlockAllocationStats describes them (also in the Redis dense-statistics header). */
export const blockLinearsSchema = v.array(
  obj({ name: v.string('a linear name'), role: v.picklist(LINEAR_ROLES, 'a linear role'), params: count() }, 'a linear { name, role, params }'),
  'an array of linears',
);

/** The JSON header (Header), checked field by field before any vector is read. */
const headerSchema = obj(
  {
    modelHash: v.string('a model hash'),
    calibrationHash: v.string('a calibration hash'),
    variant: v.optional(v.string('a string')),
    blocks: v.array(
      obj(
        {
          index: count(), params: count(), zLength: count(),
          linears: blockLinearsSchema,
        },
        'a block { index, params, linears, zLength }',
      ),
      'an array of blocks',
    ),
  },
  'a header object',
);

function headerBytes(blocks: readonly BlockAllocationStats[], key: AllocationStatsKey): { head: Uint8Array; dataStart: number } {
  const header: Header = {
    modelHash: key.modelHash,
    calibrationHash: key.calibrationHash,
    ...(key.variant !== undefined ? { variant: key.variant } : {}),
    blocks: blocks.map((b) => ({ index: b.index, params: b.params, linears: b.linears, zLength: b.z.length })),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const dataStart = Math.ceil((16 + json.length) / 8) * 8;
  const head = new Uint8Array(dataStart);
  head.set(Buffer.from(MAGIC, 'latin1'), 0);
  const dv = new DataView(head.buffer);
  dv.setUint32(8, VERSION, true);
  dv.setUint32(12, json.length, true);
  head.set(json, 16);
  return { head, dataStart };
}

function parseHeader(buf: Uint8Array, where: string): { header: Header; dataStart: number } {
  const corrupt = (why: string) =>
    new DsaPruneError(`${where} is not a dsa-prune statistics file (${why})`, { code: 'invalid-data', hint: 'Delete it; the statistics are recomputed on the next run.' });
  if (buf.length < 16 || Buffer.from(buf.subarray(0, 8)).toString('latin1') !== MAGIC) throw corrupt('bad magic');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== VERSION) throw corrupt(`format version ${version}, this dsa-prune reads ${VERSION}`);
  const h = dv.getUint32(12, true);
  if (16 + h > buf.length) throw corrupt('truncated header');
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(buf.subarray(16, 16 + h)).toString('utf8'));
  } catch {
    throw corrupt('unreadable header');
  }
  const checked = checkSchema(headerSchema, raw);
  if (!checked.ok) throw corrupt(`header: ${checked.problem.text}`);
  const header: Header = checked.value;
  return { header, dataStart: Math.ceil((16 + h) / 8) * 8 };
}

const keyOf = (h: AllocationStatsKey): AllocationStatsKey => ({
  modelHash: h.modelHash,
  calibrationHash: h.calibrationHash,
  ...(h.variant !== undefined ? { variant: h.variant } : {}),
});
const sameKey = (a: AllocationStatsKey, b: Partial<AllocationStatsKey>) =>
  (b.modelHash === undefined || a.modelHash === b.modelHash) &&
  (b.calibrationHash === undefined || a.calibrationHash === b.calibrationHash) &&
  (b.variant === undefined || a.variant === b.variant);

const bytesOf = (z: Float32Array) => new Uint8Array(z.buffer, z.byteOffset, z.byteLength);

/** The whole file in memory (small models, tests, sending over a queue). */
export function encodeAllocationStats(blocks: readonly BlockAllocationStats[], key: AllocationStatsKey): Uint8Array {
  const { head, dataStart } = headerBytes(blocks, key);
  const total = dataStart + blocks.reduce((a, b) => a + b.z.byteLength, 0);
  const out = new Uint8Array(total);
  out.set(head, 0);
  let off = dataStart;
  for (const b of blocks) {
    out.set(bytesOf(b.z), off);
    off += b.z.byteLength;
  }
  return out;
}

/** Inverse of encodeAllocationStats (z vectors are copied into fresh, aligned Float32Arrays). */
export function decodeAllocationStats(bytes: Uint8Array, where = 'statistics buffer'): { key: AllocationStatsKey; blocks: BlockAllocationStats[] } {
  const { header, dataStart } = parseHeader(bytes, where);
  let off = dataStart;
  const blocks = header.blocks.map((b) => {
    const n = b.zLength * 4;
    if (off + n > bytes.length) throw new DsaPruneError(`${where} is truncated (block ${b.index})`, { hint: 'Delete it; the statistics are recomputed on the next run.' });
    const z = new Float32Array(b.zLength);
    bytesOf(z).set(bytes.subarray(off, off + n));
    off += n;
    return { index: b.index, params: b.params, linears: b.linears, z };
  });
  return { key: keyOf(header), blocks };
}

/** Write the statistics to `file` (block by block: no second copy of the vectors in memory). */
export async function saveAllocationStats(file: string, blocks: readonly BlockAllocationStats[], key: AllocationStatsKey): Promise<void> {
  await mkdir(path.dirname(path.resolve(file)), { recursive: true });
  try {
    await writeFileAtomic(file, async (fh) => {
      const { head } = headerBytes(blocks, key);
      await fh.write(head);
      for (const b of blocks) if (b.z.byteLength) await fh.write(bytesOf(b.z));
    });
  } catch (e) {
    throw new DsaPruneError(`could not write allocation statistics to ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Read statistics written by saveAllocationStats. Returns undefined when the file does not exist or was computed
 * from another model / calibration set / variant than `expect` says; throws DsaPruneError when the file is corrupt.
 */
export async function loadAllocationStats(
  file: string,
  expect: Partial<AllocationStatsKey> = {},
): Promise<{ key: AllocationStatsKey; blocks: BlockAllocationStats[] } | undefined> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DsaPruneError(`could not read allocation statistics ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const size = (await fh.stat()).size;
    const first = new Uint8Array(Math.min(size, 16));
    await fh.read(first, 0, first.length, 0);
    if (first.length < 16) parseHeader(first, file);
    const h = new DataView(first.buffer).getUint32(12, true);
    const headBuf = new Uint8Array(Math.min(size, 16 + h));
    await fh.read(headBuf, 0, headBuf.length, 0);
    const { header, dataStart } = parseHeader(headBuf, file);
    const key = keyOf(header);
    if (!sameKey(key, expect)) return undefined;
    let off = dataStart;
    const blocks: BlockAllocationStats[] = [];
    for (const b of header.blocks) {
      const z = new Float32Array(b.zLength);
      const n = z.byteLength;
      if (off + n > size) throw new DsaPruneError(`${file} is truncated (block ${b.index})`, { hint: 'Delete it; the statistics are recomputed on the next run.' });
      // Read in pieces: a single read is limited to 2 GiB.
      for (let done = 0; done < n; ) {
        const len = Math.min(n - done, 1 << 30);
        const { bytesRead } = await fh.read(bytesOf(z), done, len, off + done);
        if (bytesRead <= 0) throw new DsaPruneError(`${file} is truncated (block ${b.index})`);
        done += bytesRead;
      }
      off += n;
      blocks.push({ index: b.index, params: b.params, linears: b.linears, z });
    }
    return { key, blocks };
  } finally {
    await fh.close();
  }
}

/**
 * In-memory cache of dense statistics, optionally backed by a folder of files (keep it outside the model folder).
 * `getOrCompute(key, compute)` returns the cached statistics or computes, stores and returns them.
 */
export class AllocationStatsCache {
  private readonly memory = new Map<string, Promise<BlockAllocationStats[]>>();

  /** @param dir folder for `<hash>.dsastats` files; memory only when omitted. */
  constructor(readonly dir?: string) {}

  /** File that holds the statistics of `key` (undefined without a folder). */
  fileFor(key: AllocationStatsKey): string | undefined {
    if (!this.dir) return undefined;
    const h = createHash('sha256').update(JSON.stringify(keyOf(key))).digest('hex').slice(0, 24);
    return path.join(this.dir, `${h}.dsastats`);
  }

  getOrCompute(key: AllocationStatsKey, compute: () => Promise<BlockAllocationStats[]> | BlockAllocationStats[]): Promise<BlockAllocationStats[]> {
    const id = JSON.stringify(keyOf(key));
    let p = this.memory.get(id);
    if (!p) {
      p = (async () => {
        const file = this.fileFor(key);
        if (file) {
          const hit = await loadAllocationStats(file, key);
          if (hit) return hit.blocks;
        }
        const blocks = await compute();
        if (file) await saveAllocationStats(file, blocks, key);
        return blocks;
      })();
      this.memory.set(id, p);
      p.catch(() => this.memory.delete(id));
    }
    return p;
  }

  /** Forget the in-memory copies (files stay). */
  clear(): void {
    this.memory.clear();
  }
}
