/**
 * `flap-global`: FLAP's own allocation (An et al., AAAI 2024; repo CASIA-IVA-Lab/FLAP, `prune_flap` with structure
 * `AL-AM`): every FFN channel of every block is scored on the dense model, the scores are standardized per block
 * ((s − mean) / std within the block), ranked globally, and the lowest ones are removed until the budget. It needs the
 * channel scores themselves, not the block vectors the allocator contract carries, so only the structured pipeline
 * (`--method structured --target ffn`) can run it (src/structured.ts, counts in src/methods/structured/allocation.ts);
 * `allocate` refuses everywhere else.
 */
import { DsaPruneError } from '../errors.js';
import type { Allocator } from './types.js';

export const FLAP_GLOBAL = 'flap-global';

export function flapGlobal(): Allocator {
  return {
    name: FLAP_GLOBAL,
    needsStatistics: false,
    describe: () => 'flap-global: FLAP AL-AM, channel scores standardized per block and ranked globally (structured ffn only)',
    allocate(): never {
      throw new DsaPruneError('--allocator flap-global ranks FFN channels across blocks; it applies to --method structured --target ffn only', {
        hint: 'Use --method structured --target ffn, or another allocator (uniform, owl, atp, dsa).',
      });
    },
  };
}
