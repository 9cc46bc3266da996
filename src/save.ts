import { savePruned as saveModel } from './model/index.js';
import { lastPruneReport } from './prune.js';

/**
 * Save a pruned model as a folder `from_pretrained` loads again, with `pruning.json` describing what was done
 * (method, target and realised sparsity, allocator, per-linear sparsity, calibration hash).
 * Refuses to write into the folder the model was loaded from; atomic (temp folder + rename).
 */
export async function savePruned(
  model: unknown,
  outDir: string,
  opts: { overwrite?: boolean; manifest?: Record<string, unknown> } = {},
): Promise<void> {
  const report = lastPruneReport(model as object);
  const manifest = {
    ...(report
      ? {
          method: report.method, pattern: report.pattern, budget: report.budget, sparsity: report.sparsity,
          realizedSparsity: report.realizedSparsity, blockSparsity: report.blockSparsity,
          targetBlockSparsity: report.targetBlockSparsity, allocator: report.allocator, calibration: report.calibration,
          seconds: report.seconds, notes: report.notes,
        }
      : {}),
    ...opts.manifest,
  };
  await saveModel(model, outDir, { ...opts, manifest });
}
