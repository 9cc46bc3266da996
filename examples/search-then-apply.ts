/**
 * Search for a DSA allocation function on the embedded stories260k model with a tiny budget, then prune with the
 * best function found and compare its perplexity with the uniform allocation at the same sparsity.
 *
 *   npx tsx examples/search-then-apply.ts [evaluations]
 *
 * The paper-scale search uses hundreds of evaluations (docs/search.md); this one uses 8 so it finishes in seconds
 * of CPU time, which is enough to show the flow, not to find a good function.
 * In your own project write `from 'dsa-prune'` / `'dsa-prune/search'` instead of the '../src/…' paths.
 */
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dsa, loadModelDir, perplexity, pruneModel, uniform, type Allocator } from '../src/index.js'; // users: from 'dsa-prune'
import { searchModel } from '../src/search/index.js'; // users: from 'dsa-prune/search'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modelDir = path.join(root, 'models/stories260k');
const text = (f: string) => readFileSync(path.join(root, 'data/tinystories', f), 'utf8');

export async function main(evaluations = Number(process.argv[2] ?? 8)): Promise<{ expression: string; lambda: number; fitness: number; dsaPpl: number; uniformPpl: number }> {
  const sparsity = 0.7;
  const nsamples = 16;
  const seqlen = 128;
  // loadModelDir: transformers.js model + tokenizer + the prunable view the search works on (no network).
  const { model, tokenizer, prunable } = await loadModelDir(modelDir, { threads: 1 });
  const calibrationIds = Int32Array.from(tokenizer.encode(text('tinystories_calibration.txt')));
  const evalIds = Int32Array.from(tokenizer.encode(text('tinystories_eval.txt')));
  await model.dispose();

  // 1. Search. The fitness is the perplexity of the one-shot pruned model on a search split of the calibration text
  //    (never the eval text), here 4 windows of 128 tokens after the calibration windows.
  const result = await searchModel(prunable, {
    modelDir, method: 'wanda', sparsity, nsamples, seqlen,
    calibrationIds: calibrationIds.subarray(0, nsamples * seqlen),
    searchIds: calibrationIds.subarray(nsamples * seqlen),
    searchWindows: 4, searchSeqlen: 128,
    evaluations, population: 4, workers: 1, threads: 1, seed: 1, final: false,
  });
  const { expression, lambda, fitness } = result.best;
  console.log(`search: ${result.evaluations} evaluations, best ${expression} (λ ${lambda.toFixed(3)}), search-split ppl ${fitness.toFixed(3)}`);

  // 2. Apply: the best function is an ordinary allocator.
  const evaluate = async (allocator: Allocator) => {
    const { model: m } = await loadModelDir(modelDir);
    const report = await pruneModel(m, { method: 'wanda', sparsity, allocator, calibration: { ids: calibrationIds }, nsamples, seqlen });
    const { ppl } = await perplexity(m, evalIds, { seqlen: 128, limitWindows: 16 });
    await m.dispose();
    return { ppl, blocks: report.blockSparsity };
  };
  const found = await evaluate(dsa(expression, { lambda }));
  const base = await evaluate(uniform());
  console.log(`eval ppl at ${sparsity * 100}%: DSA ${found.ppl.toFixed(3)} (blocks ${found.blocks.map((s) => s.toFixed(3)).join(' ')}), uniform ${base.ppl.toFixed(3)}`);
  return { expression, lambda, fitness, dsaPpl: found.ppl, uniformPpl: base.ppl };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
