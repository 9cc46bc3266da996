import type { Allocator } from './types.js';
import { validateInput } from './scores.js';
import { DsaPruneError } from '../errors.js';
import { EXACT_MAX } from '../budget/global.js';

/** s_ℓ = S for every block. Needs no statistics (the pipeline skips the dense pass for it). */
export function uniform(): Allocator {
  return {
    name: 'uniform',
    describe: () => 'uniform: every block gets the target sparsity',
    properties: { permutationEquivariant: true },
    needsStatistics: false,
    allocate(input) {
      validateInput(input);
      if (input.budget === 'exact' && input.sparsity > EXACT_MAX) {
        throw new DsaPruneError(`sparsity ${input.sparsity} is above ${EXACT_MAX}, the most the exact budget allows`);
      }
      return { blockSparsity: input.blocks.map(() => input.sparsity) };
    },
  };
}
