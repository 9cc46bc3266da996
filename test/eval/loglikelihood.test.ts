import { describe, expect, it } from 'vitest';
import { encodePair, scoreSequences, type ScoreRequest } from '../../src/eval/loglikelihood.js';
import { forwardLogits, argmaxAt } from '../../src/eval/forward.js';
import { modelScorer, scoreTask } from '../../src/eval/tasks/index.js';
import { load, naiveLogProbs, storiesDir } from './helpers.js';

/** Naive reference: one transformers.js model() call per request, float64 sums. */
async function naiveScore(model: unknown, r: ScoreRequest): Promise<{ logprob: number; greedy: boolean }> {
  const ids = Array.from(r.ids);
  const lp = await naiveLogProbs(model, ids);
  let s = 0;
  for (let t = r.contStart; t < ids.length; t++) s += lp[t]!;
  return { logprob: s, greedy: false };
}

/** Greedy continuation of `ids` by `n` tokens, one full forward per step (independent of the scorer). */
async function greedy(model: any, ids: number[], n: number): Promise<number[]> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const seq = ids.slice();
  for (let i = 0; i < n; i++) {
    const { data, vocab } = await forwardLogits(model.sessions.model, Int32Array.from(seq), 1, seq.length);
    seq.push(argmaxAt(data, (seq.length - 1) * vocab, vocab));
  }
  return seq.slice(ids.length);
}

describe('encodePair (lm-eval tokenization)', () => {
  it('moves trailing context spaces to the continuation and splits whole = context + continuation', async () => {
    const { tokenizer } = await load(storiesDir);
    const r = encodePair(tokenizer, 'The cat sat on the ', 'mat.');
    const whole = tokenizer.encode('The cat sat on the mat.', { add_special_tokens: false });
    const ctx = tokenizer.encode('The cat sat on the', { add_special_tokens: false });
    expect(Array.from(r.ids)).toEqual([tokenizer.bos_token_id, ...ctx, ...whole.slice(ctx.length)]);
    expect(r.contStart).toBe(1 + ctx.length);
    const noBos = encodePair(tokenizer, 'The cat sat on the ', 'mat.', { bos: false });
    expect(Array.from(noBos.ids)).toEqual([...ctx, ...whole.slice(ctx.length)]);
    // Empty context: the sequence starts from BOS either way (lm-eval's prefix token).
    const e = encodePair(tokenizer, '', 'Hello there.', { bos: false });
    expect(e.ids[0]).toBe(tokenizer.bos_token_id);
    expect(e.contStart).toBe(1);
  });
});

describe('scoreSequences on stories260k', () => {
  it('packed, KV-prefix and unbatched paths equal naive per-request log-likelihoods', async () => {
    const { model, tokenizer } = await load(storiesDir);
    const ctx = 'Once upon a time, there was a little dog named Max. Max liked to run in the park with his friend, a small cat. One day,';
    const conts = [' Max saw a big ball.', ' the cat was sad.', ' they went home', ' it rained all day and night.'];
    const reqs = conts.map((c) => ({ ...encodePair(tokenizer, ctx, c), group: 0 }));
    // A second group with a short context, and an ungrouped request.
    reqs.push({ ...encodePair(tokenizer, 'Lily', ' was happy.'), group: 1 }, { ...encodePair(tokenizer, 'Lily', ' ran.'), group: 1 });
    reqs.push(encodePair(tokenizer, '', 'The sun is hot.') as typeof reqs[number]);
    const expected = await Promise.all(reqs.map((r) => naiveScore(model, r)));
    const kv = await scoreSequences(model, reqs, { minSharedPrefix: 8 });
    const packed = await scoreSequences(model, reqs, { noKvReuse: true, batchSize: 3 });
    const single = await scoreSequences(model, reqs, { noKvReuse: true, batchSize: 1 });
    for (let i = 0; i < reqs.length; i++) {
      for (const got of [kv, packed, single]) expect(got[i]!.logprob).toBeCloseTo(expected[i]!.logprob, 4);
    }
  });

  it('KV path handles continuations that start inside the shared prefix', async () => {
    const { model, tokenizer } = await load(storiesDir);
    // Same context, continuations sharing their first words: the common prefix reaches into the continuation.
    const ctx = 'Tom had a red car. He liked to drive it to the park every day with his mom and dad.';
    const reqs = [' He was very happy.', ' He was very sad.'].map((c) => ({ ...encodePair(tokenizer, ctx, c), group: 3 }));
    const expected = await Promise.all(reqs.map((r) => naiveScore(model, r)));
    const got = await scoreSequences(model, reqs, { minSharedPrefix: 4 });
    got.forEach((g, i) => expect(g.logprob).toBeCloseTo(expected[i]!.logprob, 4));
  });

  it("flags the model's own greedy continuation and prefers it in a multiple-choice item", async () => {
    const { model, tokenizer } = await load(storiesDir);
    const context = 'Once upon a time, there was a little girl named Lily. She loved to';
    const prompt = tokenizer.encode(context, { add_special_tokens: false });
    const g = await greedy(model, [tokenizer.bos_token_id, ...prompt], 6);
    // The decoder drops the word-initial space; find the text that re-encodes to exactly the greedy tokens.
    const decoded: string = tokenizer.decode(g);
    const greedyText = [decoded, ` ${decoded}`, ` ${decoded.trimStart()}`].find((t) => {
      const r = encodePair(tokenizer, context, t);
      return Array.from(r.ids.slice(r.contStart)).join() === g.join();
    });
    expect(greedyText).toBeDefined();
    const req = encodePair(tokenizer, context, greedyText!);
    expect(Array.from(req.ids.slice(req.contStart))).toEqual(g);
    const alt = encodePair(tokenizer, context, ' banana kernel quantum zebra');
    const [a, b] = await scoreSequences(model, [req, alt]);
    expect(a!.greedy).toBe(true);
    expect(b!.greedy).toBe(false);
    const r = await scoreTask(
      {
        name: 'greedy',
        file: '-',
        accNorm: true,
        items: [
          { choices: [{ context, continuation: ' banana kernel quantum zebra' }, { context, continuation: greedyText! }], label: 1 },
          { choices: [{ context, continuation: greedyText! }, { context, continuation: ' purple seventeen wrench' }], label: 0 },
        ],
      },
      modelScorer(model, tokenizer),
    );
    expect(r).toEqual({ acc: 1, acc_norm: 1, n: 2 });
  });
});
