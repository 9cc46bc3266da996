/**
 * Prune the embedded stories260k model with Wanda at 50 %, generate text before and after, save the pruned model and
 * load it again with plain transformers.js.
 *
 *   npx tsx examples/prune-and-generate.ts [outDir]
 *
 * In your own project write `from 'dsa-prune'` instead of `from '../src/index.js'`.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
import { pruneModel, savePruned } from '../src/index.js'; // users: from 'dsa-prune' (import it before from_pretrained)

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// transformers.js resolves a relative model path against env.localModelPath: always pass an absolute folder.
const modelDir = path.join(root, 'models/stories260k');
const calibrationFile = path.join(root, 'data/tinystories/tinystories_calibration.txt');
const outDir = path.resolve(process.argv[2] ?? path.join(root, 'out/examples/generate-wanda50'));
env.allowRemoteModels = false; // everything is local; never download

export async function main(): Promise<{ before: string; after: string; reloaded: string; realizedSparsity: number }> {
  const tokenizer = await AutoTokenizer.from_pretrained(modelDir);
  const model = await AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' });
  const prompt = 'Once upon a time, there was a little girl named Lily.';
  const generate = async (m: typeof model): Promise<string> => {
    const inputs = tokenizer(prompt);
    const out = (await m.generate({ ...inputs, max_new_tokens: 40, do_sample: false })) as unknown as Parameters<typeof tokenizer.batch_decode>[0];
    return tokenizer.batch_decode(out, { skip_special_tokens: true })[0];
  };

  const before = await generate(model);
  const report = await pruneModel(model, {
    method: 'wanda',
    sparsity: 0.5,
    calibration: { files: [calibrationFile] },
    nsamples: 16, // papers: 128 × 2048 tokens; small settings keep the example fast
    seqlen: 256,
  });
  const after = await generate(model); // the model was pruned in place and still generates
  await savePruned(model, outDir, { overwrite: true });

  const reloadedModel = await AutoModelForCausalLM.from_pretrained(outDir, { dtype: 'fp32' });
  const reloaded = await generate(reloadedModel);
  await reloadedModel.dispose();
  await model.dispose();

  console.log(`realised sparsity ${(report.realizedSparsity * 100).toFixed(2)} %, per block ${report.blockSparsity.map((s) => s.toFixed(3)).join(' ')}`);
  console.log(`dense:    ${before}`);
  console.log(`pruned:   ${after}`);
  console.log(`reloaded: ${reloaded}   (from ${path.relative(process.cwd(), outDir)})`);
  return { before, after, reloaded, realizedSparsity: report.realizedSparsity };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
