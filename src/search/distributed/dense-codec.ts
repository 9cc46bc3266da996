/**
 * Dense statistics (block vectors z and per-linear input statistics) as bytes, so one dense pass can serve every
 * worker through Redis. Layout: uint32 LE header length, JSON header (shapes only: names, sizes, counts), zero padding
 * to 8 bytes, then the arrays in header order (z float32, sq float64, gram float64, sum float64 — Σx, a structured
 * flap search's). Decoding copies into fresh typed
 * arrays and checks every size against the header, so a corrupt or foreign entry is rejected, never half-used.
 */
import type { InputStats, LinearRole } from '../../types.js';
import { blockLinearsSchema } from '../../allocators/stats-cache.js';
import type { BlockAllocationStats } from '../../allocators/types.js';
import type { DenseData } from '../fitness.js';
import type { RedisClient } from './connection.js';
import { checkSchema, count, obj, v } from '../../data/schema.js';

/** Entries larger than this are not shared (Redis strings max out at 512 MB); workers then compute their own. */
export const MAX_SHARED_DENSE_BYTES = 256 * 1024 * 1024;

interface Header {
  v: 1;
  blocks: { index: number; params: number; linears: { name: string; role: LinearRole; params: number }[]; z: number }[];
  stats: { name: string; sq: number; gram: number; sum?: number; nsamples: number; tokens: number }[];
}


/** The JSON header of an entry (Header): every count an integer, so a foreign or corrupt entry is refused by field. */
const headerSchema = obj(
  {
    v: v.literal(1, 'version 1'),
    blocks: v.array(
      obj(
        {
          index: count(), params: count(), z: count(),
          linears: blockLinearsSchema,
        },
        'a block { index, params, linears, z }',
      ),
      'an array of blocks',
    ),
    stats: v.array(
      obj({ name: v.string('a linear name'), sq: count(), gram: count(), sum: v.optional(count()), nsamples: count(), tokens: count() }, 'a statistics entry { name, sq, gram, sum?, nsamples, tokens }'),
      'an array of statistics entries',
    ),
  },
  'a header object',
);

/** Size in bytes encodeDense would produce (without building it). */
export function denseByteLength(d: DenseData): number {
  let n = 0;
  for (const b of d.blocks) n += b.z.length * 4;
  n = Math.ceil(n / 8) * 8;
  for (const s of d.stats.values()) n += (s.sq.length + (s.gram?.length ?? 0) + (s.sum?.length ?? 0)) * 8;
  return n + 64 * 1024; // header estimate
}

export function encodeDense(d: DenseData): Buffer {
  const header: Header = {
    v: 1,
    blocks: d.blocks.map((b) => ({ index: b.index, params: b.params, linears: b.linears, z: b.z.length })),
    stats: [...d.stats.entries()].map(([name, s]) => ({ name, sq: s.sq.length, gram: s.gram?.length ?? 0, ...(s.sum ? { sum: s.sum.length } : {}), nsamples: s.nsamples, tokens: s.tokens })),
  };
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const start = Math.ceil((4 + head.length) / 8) * 8;
  let zBytes = 0;
  for (const b of d.blocks) zBytes += b.z.length * 4;
  const statsStart = start + Math.ceil(zBytes / 8) * 8;
  let total = statsStart;
  for (const s of d.stats.values()) total += (s.sq.length + (s.gram?.length ?? 0) + (s.sum?.length ?? 0)) * 8;
  const out = Buffer.alloc(total);
  out.writeUInt32LE(head.length, 0);
  head.copy(out, 4);
  let off = start;
  const put = (a: Float32Array | Float64Array): void => {
    const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    out.set(bytes, off); // platform byte order: little-endian on every platform Node supports for onnxruntime
    off += a.byteLength;
  };
  for (const b of d.blocks) put(b.z);
  off = statsStart;
  for (const s of d.stats.values()) {
    put(s.sq);
    if (s.gram) put(s.gram);
    if (s.sum) put(s.sum);
  }
  return out;
}

/** Decode and check; throws Error on any inconsistency. */
export function decodeDense(buf: Uint8Array): DenseData {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 4) throw new Error('dense statistics entry is truncated');
  const hlen = b.readUInt32LE(0);
  if (4 + hlen > b.length) throw new Error('dense statistics header is truncated');
  const checked = checkSchema(headerSchema, JSON.parse(b.subarray(4, 4 + hlen).toString('utf8')));
  if (!checked.ok) throw new Error(`dense statistics header: ${checked.problem.text}`);
  const header: Header = checked.value;
  let off = Math.ceil((4 + hlen) / 8) * 8;
  const take = (n: number, bytesPer: 4 | 8): Uint8Array => {
    if (!Number.isInteger(n) || n < 0 || off + n * bytesPer > b.length) throw new Error('dense statistics arrays are truncated');
    const part = new Uint8Array(n * bytesPer);
    part.set(b.subarray(off, off + n * bytesPer));
    off += n * bytesPer;
    return part;
  };
  const blocks: BlockAllocationStats[] = header.blocks.map((h) => {
    const z = new Float32Array(take(h.z, 4).buffer);
    return { index: h.index, params: h.params, linears: h.linears, z };
  });
  off = Math.ceil(off / 8) * 8;
  const stats = new Map<string, InputStats>();
  for (const h of header.stats) {
    const sq = new Float64Array(take(h.sq, 8).buffer);
    const s: InputStats = { sq, nsamples: h.nsamples, tokens: h.tokens };
    if (h.gram > 0) s.gram = new Float64Array(take(h.gram, 8).buffer);
    if (h.sum !== undefined && h.sum > 0) s.sum = new Float64Array(take(h.sum, 8).buffer);
    stats.set(h.name, s);
  }
  if (off !== b.length) throw new Error('dense statistics entry has trailing bytes');
  return { blocks, stats };
}

/** Dense statistics shared between workers through Redis, keyed by model hash + calibration hash. */
export interface DenseCache {
  /** The bytes another worker (or the coordinator) stored, or null. */
  get(): Promise<Uint8Array | null>;
  /** Store bytes for the others (first writer wins; expires after a day). */
  put(bytes: Uint8Array): Promise<void>;
}

/** A DenseCache on one Redis string key. */
export function redisDenseCache(client: RedisClient, key: string): DenseCache {
  return {
    get: async () => {
      const b = await client.getBuffer(key);
      return b ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : null;
    },
    put: async (bytes) => {
      await client.set(key, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'EX', 86400, 'NX');
    },
  };
}

/** Share dense statistics (computed by the coordinator) with the workers: they skip their own dense pass. */
export async function shareDense(cache: DenseCache, dense: DenseData): Promise<boolean> {
  if (denseByteLength(dense) > MAX_SHARED_DENSE_BYTES) return false;
  await cache.put(encodeDense(dense));
  return true;
}
