/** Shared helpers of the eval tests: model loading (cached per file), the ../shared location, naive references. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoModelForCausalLM, AutoTokenizer, Tensor, env } from '@huggingface/transformers';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const sharedDir = path.resolve(repoRoot, '../shared');
export const hasShared = existsSync(path.join(sharedDir, 'reference/reference.json'));
export const SKIP_SHARED = 'needs ../shared (fixtures, data and reference numbers) next to the repo';
/** The embedded default model (always present in the repo). */
export const storiesDir = path.join(repoRoot, 'models/stories260k');

env.allowRemoteModels = false;
env.allowLocalModels = true;

const cache = new Map<string, Promise<{ model: any; tokenizer: any }>>(); // eslint-disable-line @typescript-eslint/no-explicit-any
export function load(dir: string): Promise<{ model: any; tokenizer: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  let p = cache.get(dir);
  if (!p) {
    p = (async () => ({
      model: await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'fp32' }),
      tokenizer: await AutoTokenizer.from_pretrained(dir),
    }))();
    cache.set(dir, p);
  }
  return p;
}

/**
 * Independent reference: logits of one sequence through transformers.js's own `model()` call (it builds its own
 * feeds), then a naive float64 log-softmax. Returns logp[t] = log p(ids[t] | ids[<t]) for t ≥ 1 (logp[0] = 0).
 */
export async function naiveLogProbs(model: any, ids: number[]): Promise<Float64Array> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const n = ids.length;
  const out = await model({
    input_ids: new Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, n]),
    attention_mask: new Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
  });
  const logits = out.logits.data as Float32Array;
  const V = out.logits.dims[2] as number;
  const lp = new Float64Array(n);
  for (let t = 1; t < n; t++) {
    const row = Array.from(logits.subarray((t - 1) * V, t * V), Number);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
    lp[t] = row[ids[t]!]! - lse;
  }
  return lp;
}
