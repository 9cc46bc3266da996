/**
 * Evaluation bench: tokens/s of perplexity() and of zero-shot scoring against one plain transformers.js `model()`
 * forward over the same batch (same windows, same threads).
 *
 *   npx tsx bench/eval.bench.ts        (or `npm run bench eval`)
 *
 * Cases (bench-12l when ../shared is present, else the embedded stories260k):
 * - `model() forward`: the windows [n × 512] through `model({ input_ids, attention_mask })`, in batches of 1 row
 *   (the same rows per run as perplexity's automatic batch), logits copied to JS — the floor for any evaluation;
 * - `perplexity()`: the same windows, reference protocol (NLL reduced in float64 per batch);
 * - zero-shot: BoolQ (first 40, bench-12l; synthetic groups on stories260k without ../shared) scored with KV prefix
 *   reuse vs. the packed path, and plain forwards of the same rows right-padded (no sharing).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoModelForCausalLM, AutoTokenizer, Tensor, env } from '@huggingface/transformers';
import { bench, ratio, value } from './harness.js';
import { perplexity } from '../src/eval/perplexity.js';
import { scoreSequences, encodePair, type ScoreRequest } from '../src/eval/loglikelihood.js';
import { loadTask } from '../src/eval/tasks/index.js';
import type { CausalLMLike } from '../src/eval/forward.js';
import { takeWindows, tokenizeText } from '../src/data/text.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..');
const shared = path.resolve(repoRoot, '../shared');
const hasShared = existsSync(path.join(shared, 'models/bench-12l'));
env.allowRemoteModels = false;

const SEQLEN = 512;
const N = 16;

async function loadModel(dir: string) {
  return {
    model: await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'fp32' }),
    tokenizer: await AutoTokenizer.from_pretrained(dir),
  };
}

async function plainForward(model: any, ids: Int32Array, rows: number, L: number, bs: number): Promise<void> { // eslint-disable-line @typescript-eslint/no-explicit-any
  for (let r = 0; r < rows; r += bs) {
    const b = Math.min(bs, rows - r);
    const chunk = ids.subarray(r * L, (r + b) * L);
    await model({
      input_ids: new Tensor('int64', BigInt64Array.from(chunk, (x) => BigInt(x)), [b, L]),
      attention_mask: new Tensor('int64', new BigInt64Array(b * L).fill(1n), [b, L]),
    });
  }
}

// Perplexity vs plain forward.
{
  const dir = hasShared ? path.join(shared, 'models/bench-12l') : path.join(repoRoot, 'models/stories260k');
  const textFile = hasShared ? path.join(shared, 'data/bench-corpus/eval_sotu_2001_2021.txt') : undefined;
  const { model, tokenizer } = await loadModel(dir);
  const text = textFile ? readFileSync(textFile, 'utf8') : 'Once upon a time, there was a little girl. '.repeat(1500);
  const ids = takeWindows(tokenizeText(tokenizer as never, text), SEQLEN, N);
  const name = path.basename(dir);
  const notes = `${name}, ${N} × ${SEQLEN} tokens, batch 1`;
  await plainForward(model, ids, 1, SEQLEN, 1); // warm-up
  const plain = await bench(`model() forward (${name})`, () => plainForward(model, ids, N, SEQLEN, 1), { repeat: 3, notes });
  const ppl = await bench(`perplexity() (${name})`, () => perplexity(model as unknown as CausalLMLike, ids, { seqlen: SEQLEN }), { repeat: 3, notes });
  ratio('perplexity / model() forward', ppl, plain);
  value(`perplexity tokens/s (${name})`, (N * SEQLEN) / ppl.seconds, 'tokens/s');
  value(`model() forward tokens/s (${name})`, (N * SEQLEN) / plain.seconds, 'tokens/s');
  await model.dispose();
}

// Zero-shot scoring vs plain forward: BoolQ (long shared passages, 2 answers) on bench-12l when ../shared is present,
// else synthetic 4-choice groups with a 40-word shared context on stories260k.
{
  const dir = hasShared ? path.join(shared, 'models/bench-12l') : path.join(repoRoot, 'models/stories260k');
  const { model, tokenizer } = await loadModel(dir);
  const reqs: ScoreRequest[] = [];
  let what: string;
  if (hasShared) {
    const task = loadTask('boolq', [path.join(shared, 'data/eval')], { limit: 40 });
    task.items.forEach((it, g) => it.choices.forEach((c) => reqs.push({ ...encodePair(tokenizer as never, c.context, c.continuation), group: g })));
    what = 'BoolQ first 40';
  } else {
    const words = 'the little dog ran to the park and saw a big red ball near a tree with his friend'.split(' ');
    for (let g = 0; g < 100; g++) {
      const ctx = Array.from({ length: 40 }, (_, i) => words[(g * 7 + i * 3) % words.length]).join(' ');
      for (let c = 0; c < 4; c++) {
        const cont = ' ' + Array.from({ length: 8 + c }, (_, i) => words[(g + c * 5 + i) % words.length]).join(' ');
        reqs.push({ ...encodePair(tokenizer as never, ctx, cont), group: g });
      }
    }
    what = '100 synthetic 4-choice groups';
  }
  const tokens = reqs.reduce((s, r) => s + r.ids.length, 0);
  const L = Math.max(...reqs.map((r) => r.ids.length));
  const padded = new Int32Array(reqs.length * L);
  reqs.forEach((r, i) => padded.set(r.ids, i * L));
  const rowsPerRun = Math.max(1, Math.floor(512 / L));
  const notes = `${path.basename(dir)}, ${what}: ${reqs.length} choices, ${tokens} tokens`;
  const m = model as unknown as CausalLMLike;
  const plain = await bench('model() forward, padded choices', () => plainForward(model, padded, reqs.length, L, rowsPerRun), { repeat: 3, notes: `${notes}, ${rowsPerRun} rows/run` });
  const kv = await bench('scoreSequences, KV prefix reuse', () => scoreSequences(m, reqs), { repeat: 3, notes });
  const packed = await bench('scoreSequences, packed (no KV)', () => scoreSequences(m, reqs, { noKvReuse: true }), { repeat: 3, notes });
  ratio('zero-shot KV / model() forward', kv, plain);
  ratio('zero-shot packed / model() forward', packed, plain);
  value('zero-shot tokens/s (KV)', tokens / kv.seconds, 'tokens/s');
  value('zero-shot tokens/s (packed)', tokens / packed.seconds, 'tokens/s');
  await model.dispose();
}
