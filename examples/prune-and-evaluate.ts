/**
 * Perplexity of the embedded stories260k model before and after pruning: Wanda at 50 % with the uniform allocation
 * and with OWL's non-uniform one (same global budget), on the shipped TinyStories eval text.
 *
 *   npx tsx examples/prune-and-evaluate.ts
 *
 * In your own project write `from 'dsa-prune'` instead of `from '../src/index.js'`.
 */
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import { owl, perplexity, pruneModel, uniform, type Allocator } from '../src/index.js'; // users: from 'dsa-prune'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modelDir = path.join(root, 'models/stories260k'); // absolute: transformers.js resolves relative paths elsewhere
const calibration = readFileSync(path.join(root, 'data/tinystories/tinystories_calibration.txt'), 'utf8');
// 40k characters ≈ 10k tokens, enough for the 16 windows of 256 evaluated below (tokenizing the whole file is slow)
const evalText = readFileSync(path.join(root, 'data/tinystories/tinystories_eval.txt'), 'utf8').slice(0, 40_000);
env.allowRemoteModels = false;

export async function main(): Promise<{ dense: number; uniform: number; owl: number; owlBlocks: number[] }> {
  const tokenizer = await AutoTokenizer.from_pretrained(modelDir);
  const evalIds = Int32Array.from(tokenizer.encode(evalText)); // tokenize once, evaluate three times
  const ppl = async (model: unknown) => (await perplexity(model as Parameters<typeof perplexity>[0], evalIds, { seqlen: 256, limitWindows: 16 })).ppl;

  const dense = await AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' });
  const densePpl = await ppl(dense);
  await dense.dispose();

  const pruned = async (allocator: Allocator) => {
    const model = await AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' }); // a fresh copy each time
    const report = await pruneModel(model, { method: 'wanda', sparsity: 0.5, allocator, calibration, nsamples: 16, seqlen: 256 });
    const p = await ppl(model);
    await model.dispose();
    return { ppl: p, blocks: report.blockSparsity };
  };
  const u = await pruned(uniform());
  const o = await pruned(owl()); // M = 5, λ = 0.08 as in the OWL paper

  console.log(`perplexity (first 16 windows of 256 tokens): dense ${densePpl.toFixed(3)}`);
  console.log(`  wanda 50% uniform ${u.ppl.toFixed(3)}   blocks ${u.blocks.map((s) => s.toFixed(3)).join(' ')}`);
  console.log(`  wanda 50% OWL     ${o.ppl.toFixed(3)}   blocks ${o.blocks.map((s) => s.toFixed(3)).join(' ')}`);
  return { dense: densePpl, uniform: u.ppl, owl: o.ppl, owlBlocks: o.blocks };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
