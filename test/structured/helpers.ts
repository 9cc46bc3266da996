/** What the structured-pruning tests share: deterministic tokens, logits of a session, the relative max difference. */
import type * as ort from 'onnxruntime-node';
import { expect } from 'vitest';
import { buildFeeds } from '../../src/eval/forward.js';

/** Deterministic token ids in [1, vocab) (a linear congruential sequence). */
export function tokens(n: number, vocab: number, seed = 7): Int32Array {
  const out = new Int32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = 1 + (s % (vocab - 1));
  }
  return out;
}

/** The logits of one plain run of `session` on `ids` as [batch × seqlen]. */
export async function logitsOf(session: ort.InferenceSession, ids: Int32Array, batch: number, seqlen: number, config?: Record<string, unknown>): Promise<Float32Array> {
  const out = await session.run(buildFeeds(session as never, ids, batch, seqlen, { config }), ['logits']);
  return out.logits!.data as Float32Array;
}

/** max |a − b| / max |b| (the arrays must have the same length). */
export function maxRel(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}
