import type { Allocator, AllocationInput, BlockAllocationStats } from './types.js';
import { allocationFromScores, scoreBased } from './scores.js';
import { DsaPruneError } from '../errors.js';

/** Options of OWL (Outlier-Weighted Layerwise sparsity). */
export interface OwlOptions {
  /** Outlier threshold: an entry is an outlier when it exceeds M · mean(z). Default 5. */
  M?: number;
  /** Spread: block sparsities lie in S ± λ. Default 0.08. */
  lambda?: number;
}

/** D = 100 · #{e ∈ z : e > M · mean(z)} / |z| (float64 mean). NaN for an empty z. */
export function outlierRatio(z: Float32Array, M: number): number {
  const n = z.length;
  let s = 0;
  for (let i = 0; i < n; i++) s += z[i];
  const thr = (M * s) / n;
  let c = 0;
  for (let i = 0; i < n; i++) if (z[i] > thr) c++;
  return (100 * c) / n;
}

/**
 * OWL: `D_ℓ` = outlier ratio of the block vector; `q = minmax(D)`; `s_ℓ = S − 2λ(q_ℓ − mean q)`. More outliers → less
 * pruning. Blocks with equal D everywhere get the uniform allocation.
 */
export function owl(o: OwlOptions = {}): Allocator {
  const M = o.M ?? 5;
  const lambda = o.lambda ?? 0.08;
  if (!(M > 0) || !Number.isFinite(M)) throw new DsaPruneError(`OWL M must be a number > 0, got ${M}`, { hint: 'The published runs use --owl-m 5.' });
  if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new DsaPruneError(`OWL lambda must be a number ≥ 0, got ${lambda}`, { hint: 'The published runs use --lambda 0.08.' });
  const scores = (input: AllocationInput) => input.blocks.map((b: BlockAllocationStats) => (b.params > 0 || input.budget === 'reference' ? outlierRatio(b.z, M) : NaN));
  const fromScores = (D: number[], input: AllocationInput) => ({
    blockSparsity: allocationFromScores(D, input.blocks.map((b) => b.params), input.sparsity, lambda, input.budget, {
      sign: -1, onConstant: 'uniform', label: 'OWL outlier ratio',
    }),
    scores: D,
  });
  return scoreBased(
    {
      name: 'owl',
      describe: () => `owl: outlier-weighted, M=${M}, lambda=${lambda}`,
      properties: { permutationEquivariant: true, affineInvariantImportance: true },
    },
    scores,
    fromScores,
  );
}
