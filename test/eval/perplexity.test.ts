import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { perplexity, stridedWindows } from '../../src/eval/perplexity.js';
import { tokenNll } from '../../src/eval/forward.js';
import { readTextFile, tokenizeText } from '../../src/data/text.js';
import { hasShared, load, naiveLogProbs, sharedDir, storiesDir } from './helpers.js';

const STORY =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. One day, she saw a big red ball in the park. ' +
  'She ran to the ball and kicked it very hard. The ball went up high in the sky and landed in a tree. Lily was sad because she could not get her ball. ' +
  'Then her friend Tom came and helped her. They were happy and played together all day.';

describe('stridedWindows', () => {
  it('scores every token but the first exactly once (stride < seqlen), with at most seqlen tokens per window', () => {
    for (const [N, L, s] of [[100, 16, 8], [100, 16, 16], [37, 10, 3], [5, 16, 4], [64, 16, 1]] as const) {
      const seen = new Int32Array(N);
      for (const w of stridedWindows(N, L, s)) {
        expect(w.end - w.begin).toBeLessThanOrEqual(L);
        expect(w.from).toBeGreaterThan(w.begin);
        for (let t = w.from; t < w.end; t++) seen[t]!++;
      }
      expect(seen[0]).toBe(0);
      // stride = seqlen: disjoint windows, the first token of each has no context and is not scored (as the reference).
      for (let t = 1; t < N; t++) expect(seen[t]).toBe(s === L && t % L === 0 ? 0 : 1);
    }
  });
});

describe('perplexity on stories260k', () => {
  it('reference protocol equals a naive float64 computation through transformers.js model()', async () => {
    const { model, tokenizer } = await load(storiesDir);
    const ids = tokenizeText(tokenizer, STORY);
    const L = 24;
    const n = Math.floor(ids.length / L);
    expect(n).toBeGreaterThanOrEqual(3);
    let sumMeans = 0;
    for (let w = 0; w < n; w++) {
      const lp = await naiveLogProbs(model, Array.from(ids.slice(w * L, (w + 1) * L)));
      let s = 0;
      for (let t = 1; t < L; t++) s -= lp[t]!;
      sumMeans += s / (L - 1);
    }
    const expected = Math.exp(sumMeans / n);
    for (const batchSize of [1, 2, 64]) {
      const r = await perplexity(model, STORY, { seqlen: L, tokenizer, batchSize });
      expect(r.ppl).toBeCloseTo(expected, 5);
      expect(Math.abs(r.ppl / expected - 1)).toBeLessThan(1e-6);
      expect(r.windows).toBe(n);
      expect(r.tokens).toBe(n * L);
      expect(r.scored).toBe(n * (L - 1));
      expect(r.tokensPerSecond).toBeGreaterThan(0);
    }
    // limitWindows: the first window only.
    const one = await perplexity(model, ids, { seqlen: L, limitWindows: 1 });
    const lp0 = await naiveLogProbs(model, Array.from(ids.slice(0, L)));
    expect(Math.log(one.ppl)).toBeCloseTo(-lp0.slice(1).reduce((a, b) => a + b, 0) / (L - 1), 6);
  });

  it('strided variant: each new token scored with its window context, token-weighted (naive: one forward per token)', async () => {
    const { model, tokenizer } = await load(storiesDir);
    const ids = Array.from(tokenizeText(tokenizer, STORY)).slice(0, 45);
    const L = 12;
    const S = 5;
    // Naive: for every token t ≥ 1, its context starts at the largest multiple of S with t − begin < L, and
    // at or after the previous window's start (HF recipe); recomputed here from the definition, one forward each.
    let sum = 0;
    let count = 0;
    let prevEnd = 0;
    for (let begin = 0; begin < ids.length; begin += S) {
      const end = Math.min(begin + L, ids.length);
      for (let t = Math.max(prevEnd, begin + 1); t < end; t++) {
        const lp = await naiveLogProbs(model, ids.slice(begin, t + 1));
        sum -= lp[t - begin]!;
        count++;
      }
      prevEnd = end;
      if (end === ids.length) break;
    }
    expect(count).toBe(ids.length - 1);
    const r = await perplexity(model, ids, { seqlen: L, stride: S, batchSize: 3 });
    expect(r.scored).toBe(ids.length - 1);
    expect(Math.abs(r.ppl / Math.exp(sum / count) - 1)).toBeLessThan(1e-6);
  });

  it('stride = seqlen on a whole number of windows equals the reference protocol', async () => {
    const { model, tokenizer } = await load(storiesDir);
    const ids = tokenizeText(tokenizer, STORY).slice(0, 60);
    const a = await perplexity(model, ids, { seqlen: 20 });
    const b = await perplexity(model, ids, { seqlen: 20, stride: 20 });
    expect(b.windows).toBe(3);
    expect(Math.abs(a.ppl / b.ppl - 1)).toBeLessThan(1e-12);
  });

  it('tokenNll equals naive log-probs per token, across batch sizes', async () => {
    const { model, tokenizer } = await load(storiesDir);
    const ids = tokenizeText(tokenizer, STORY).slice(0, 48);
    const nll = await tokenNll(model.sessions.model, ids, 3, 16, { batchSize: 2 });
    for (let r = 0; r < 3; r++) {
      const lp = await naiveLogProbs(model, Array.from(ids.slice(r * 16, r * 16 + 16)));
      for (let t = 0; t < 15; t++) expect(nll[r * 15 + t]).toBeCloseTo(-lp[t + 1]!, 5);
    }
  });

  it('rejects bad options and too-short text with clear errors', async () => {
    const { model, tokenizer } = await load(storiesDir);
    await expect(perplexity(model, [1, 2, 3], { seqlen: 8 })).rejects.toThrow(/3 tokens, one window of seqlen 8 needs 8/);
    await expect(perplexity(model, [1, 2, 3], { seqlen: 2, stride: 3 })).rejects.toThrow(/stride must be/);
    await expect(perplexity(model, 'hello', { seqlen: 8 })).rejects.toThrow(/tokenizer/);
    void tokenizer;
  });
});

describe.skipIf(!hasShared)('perplexity: reference numbers (../shared)', () => {
  const ref = hasShared ? JSON.parse(readFileSync(path.join(sharedDir, 'reference/reference.json'), 'utf8')) : undefined;

  it('stories260k / tinystories_eval, seqlen 512: tokens match reference.json and ppl = 5.816300 (7 digits)', async () => {
    const { model, tokenizer } = await load(path.join(sharedDir, 'models/stories260k'));
    const m = ref.models.stories260k;
    const ids = tokenizeText(tokenizer, await readTextFile(path.join(sharedDir, 'data/text/tinystories_eval.txt')));
    const tok = m.tokens['eval:tinystories'];
    expect(ids.length).toBe(tok.count);
    expect(Array.from(ids.slice(0, tok.head.length))).toEqual(tok.head);
    expect(createHash('sha256').update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength)).digest('hex')).toBe(tok.sha256_int32le);
    const r = await perplexity(model, ids, { seqlen: 512 });
    expect(r.windows).toBe(Math.floor(tok.count / 512));
    expect(Math.abs(r.ppl / m.dense.tinystories - 1)).toBeLessThan(1e-6);
  }, 900_000);

  // The full bench-12l run is ~1 min of CPU on 2 cores: opt in with DSA_PRUNE_FULL_EVAL=1 (the docs give the measured
  // number); by default the tokens are checked and the first 4 windows against a naive float64 computation.
  it.skipIf(!process.env.DSA_PRUNE_FULL_EVAL)('bench-12l / SOTU 2001–2021, seqlen 512: tokens match and ppl = 56.1382 (6 digits)', async () => {
    const { model, tokenizer } = await load(path.join(sharedDir, 'models/bench-12l'));
    const m = ref.models['bench-12l'];
    const ids = tokenizeText(tokenizer, await readTextFile(path.join(sharedDir, 'data/bench-corpus/eval_sotu_2001_2021.txt')));
    const tok = m.tokens['eval:sotu'];
    expect(ids.length).toBe(tok.count);
    expect(createHash('sha256').update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength)).digest('hex')).toBe(tok.sha256_int32le);
    const r = await perplexity(model, ids, { seqlen: 512 });
    expect(Math.abs(r.ppl / m.dense.sotu - 1)).toBeLessThan(1e-6);
  }, 900_000);

  it('bench-12l / SOTU: tokens match reference.json; first 4 windows equal a naive float64 computation', async () => {
    const { model, tokenizer } = await load(path.join(sharedDir, 'models/bench-12l'));
    const tok = ref.models['bench-12l'].tokens['eval:sotu'];
    const ids = tokenizeText(tokenizer, await readTextFile(path.join(sharedDir, 'data/bench-corpus/eval_sotu_2001_2021.txt')));
    expect(ids.length).toBe(tok.count);
    expect(Array.from(ids.slice(0, tok.head.length))).toEqual(tok.head);
    expect(createHash('sha256').update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength)).digest('hex')).toBe(tok.sha256_int32le);
    let sumMeans = 0;
    for (let w = 0; w < 4; w++) {
      const lp = await naiveLogProbs(model, Array.from(ids.slice(w * 512, (w + 1) * 512)));
      sumMeans -= lp.reduce((a, b) => a + b, 0) / 511;
    }
    const r = await perplexity(model, ids, { seqlen: 512, limitWindows: 4 });
    expect(r.windows).toBe(4);
    expect(Math.abs(r.ppl / Math.exp(sumMeans / 4) - 1)).toBeLessThan(1e-6);
  }, 300_000);
});
