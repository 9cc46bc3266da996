/**
 * Write your own layer-wise sparsity allocator, property-test it with checkAllocator (the kit in dsa-prune/testing),
 * then prune the embedded stories260k model with it.
 *
 *   npx tsx examples/custom-allocator.ts
 *
 * In your own project write `from 'dsa-prune'` / `from 'dsa-prune/testing'` instead of the '../src/…' paths.
 * docs/allocator-authoring.md explains the rules in detail.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AutoModelForCausalLM, env } from '@huggingface/transformers';
import { custom, pruneModel, type AllocationInput } from '../src/index.js'; // users: from 'dsa-prune'
import { checkAllocator } from '../src/testing/index.js'; // users: from 'dsa-prune/testing'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modelDir = path.join(root, 'models/stories260k'); // absolute: transformers.js resolves relative paths elsewhere
env.allowRemoteModels = false;

/**
 * Importance of a block = the coefficient of variation (std / mean) of its Wanda metrics z. A block whose important
 * weights stand out (high CV) holds more outliers; we want to prune it LESS, so the importance is −CV (with
 * `output: 'importance'` a larger importance prunes more). The scale of the score does not matter: custom() maps it
 * through minmax to S ± λ, like DSA and OWL.
 */
export function cvImportance(input: AllocationInput): number[] {
  return input.blocks.map((b) => {
    const z = b.z;
    if (z.length === 0) return 0;
    let sum = 0;
    let sumSq = 0;
    for (let i = 0; i < z.length; i++) {
      sum += z[i];
      sumSq += z[i] * z[i];
    }
    const mean = sum / z.length;
    const variance = Math.max(0, sumSq / z.length - mean * mean);
    return mean > 0 ? -Math.sqrt(variance) / mean : 0;
  });
}

export const cvAllocator = custom('cv', cvImportance, {
  output: 'importance',
  lambda: 0.08,
  // Claims checkAllocator verifies: the allocation follows each block's statistics, not its position, and only the
  // ranking/spacing of the importances matters.
  properties: { permutationEquivariant: true, affineInvariantImportance: true },
  description: 'custom: −CV of the Wanda metric, λ 0.08',
});

export async function main(): Promise<{ checked: string[]; runs: number; blockSparsity: number[]; realizedSparsity: number }> {
  // 1. Property test on random inputs (fast-check): budget, bounds, determinism, clean refusals + the declared claims.
  const check = checkAllocator(cvAllocator, { numRuns: 50, budget: 'both', seed: 1 });
  console.log(`checkAllocator: ${check.runs} runs, ${check.accepted} accepted, ${check.refused} refused; checked ${check.checked.join(', ')}`);

  // 2. Use it like any built-in allocator.
  const model = await AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' });
  const report = await pruneModel(model, {
    method: 'wanda',
    sparsity: 0.5,
    allocator: cvAllocator,
    calibration: { files: [path.join(root, 'data/tinystories/tinystories_calibration.txt')] },
    nsamples: 16,
    seqlen: 128,
  });
  await model.dispose();
  console.log(`${report.allocator.description}: blocks ${report.blockSparsity.map((s) => s.toFixed(3)).join(' ')}, realised ${report.realizedSparsity.toFixed(4)}`);
  return { checked: check.checked, runs: check.runs, blockSparsity: report.blockSparsity, realizedSparsity: report.realizedSparsity };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
