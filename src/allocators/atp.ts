import type { Allocator } from './types.js';
import { budgetRaw, validateInput } from './scores.js';
import { DsaPruneError } from '../errors.js';

/** Options of ATP (arithmetic-progression allocation). */
export interface AtpOptions {
  /** Step between consecutive blocks (≥ 0): later blocks are pruned more. Default 0.02. */
  beta?: number;
}

/**
 * ATP: `s_ℓ = S − β(L−1)/2 + ℓβ` for the ℓ-th block (in the order given). Depends on position only, so it is not
 * permutation-equivariant.
 */
export function atp(o: AtpOptions = {}): Allocator {
  const beta = o.beta ?? 0.02;
  if (!(beta >= 0) || !Number.isFinite(beta)) throw new DsaPruneError(`ATP beta must be a number ≥ 0, got ${beta}`, { hint: 'Try --beta 0.02.' });
  return {
    name: 'atp',
    describe: () => `atp: arithmetic progression, beta=${beta}`,
    properties: { permutationEquivariant: false },
    needsStatistics: false,
    allocate(input) {
      validateInput(input);
      const L = input.blocks.length;
      const S = input.sparsity;
      const raw = input.blocks.map((_, l) => S - (beta * (L - 1)) / 2 + l * beta);
      return { blockSparsity: budgetRaw(raw, input.blocks.map((b) => b.params), S, input.budget) };
    },
  };
}
