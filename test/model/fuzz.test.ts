/**
 * Fuzzing the ONNX reader and the discovery with fast-check: random bytes and mutations (bit flips, truncation,
 * splices) of a real model. The only acceptable outcomes are a decoded graph or a DsaPruneError — no other exception,
 * no hang. Runs are kept small for CI (DSA_PRUNE_FUZZ_RUNS raises them).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DsaPruneError } from '../../src/errors.js';
import { discoverLinears } from '../../src/model/discover.js';
import { decodeModel, encodeModel } from '../../src/model/onnx.js';
import { buildToyDecoder } from '../fixtures/graphs.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const runs = Number(process.env.DSA_PRUNE_FUZZ_RUNS ?? 150);
const toyBytes = encodeModel(buildToyDecoder({ blocks: 2, hidden: 8, inter: 12, vocab: 16, fused: true }).model);
const storiesBytes = new Uint8Array(readFileSync(path.join(repoRoot, 'models/stories260k/onnx/model.onnx')));

/** Decode and discover; returns 'ok' or 'rejected', rethrows anything that is not a DsaPruneError. */
function readAndDiscover(bytes: Uint8Array): 'ok' | 'rejected' {
  try {
    const m = decodeModel(bytes, 'fuzz.onnx');
    discoverLinears(m.graph, { includeLmHead: true });
    return 'ok';
  } catch (e) {
    if (e instanceof DsaPruneError) return 'rejected';
    throw e;
  }
}

const mutation = (len: number) =>
  fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat({ max: len - 1 }), bit: fc.nat({ max: 7 }) }),
    fc.record({ kind: fc.constant('truncate' as const), at: fc.nat({ max: len - 1 }) }),
    fc.record({ kind: fc.constant('byte' as const), at: fc.nat({ max: len - 1 }), value: fc.nat({ max: 255 }) }),
    fc.record({ kind: fc.constant('splice' as const), at: fc.nat({ max: len - 1 }), junk: fc.uint8Array({ maxLength: 16 }) }),
  );
type Mutation = { kind: 'flip'; at: number; bit: number } | { kind: 'truncate'; at: number } | { kind: 'byte'; at: number; value: number } | { kind: 'splice'; at: number; junk: Uint8Array };

function mutate(src: Uint8Array, ms: Mutation[]): Uint8Array {
  let b = new Uint8Array(src);
  for (const m of ms) {
    if (m.at >= b.length) continue;
    if (m.kind === 'flip') b[m.at] ^= 1 << m.bit;
    else if (m.kind === 'byte') b[m.at] = m.value;
    else if (m.kind === 'truncate') b = b.slice(0, m.at);
    else {
      const out = new Uint8Array(b.length + m.junk.length);
      out.set(b.subarray(0, m.at), 0);
      out.set(m.junk, m.at);
      out.set(b.subarray(m.at), m.at + m.junk.length);
      b = out;
    }
  }
  return b;
}

describe('fuzz: ONNX reader + discovery', () => {
  it('unmutated fixtures decode and discover', () => {
    expect(readAndDiscover(toyBytes)).toBe('ok');
    expect(readAndDiscover(storiesBytes)).toBe('ok');
  });

  it('random bytes: decoded or a DsaPruneError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (b) => {
      readAndDiscover(b);
    }), { numRuns: runs * 2 });
  });

  it('mutated toy graph (bit flips, bytes, truncation, splices): decoded or a DsaPruneError', () => {
    fc.assert(fc.property(fc.array(mutation(toyBytes.length), { minLength: 1, maxLength: 6 }), (ms) => {
      readAndDiscover(mutate(toyBytes, ms as Mutation[]));
    }), { numRuns: runs });
  });

  it('mutated stories260k header region: decoded or a DsaPruneError', () => {
    // Mutate only the first 64 KiB (graph structure, names) to keep each run fast on a 1.3 MB model.
    const head = Math.min(storiesBytes.length, 65536);
    fc.assert(fc.property(fc.array(mutation(head), { minLength: 1, maxLength: 3 }), (ms) => {
      readAndDiscover(mutate(storiesBytes, ms as Mutation[]));
    }), { numRuns: Math.max(10, runs >> 2) });
  });
});
