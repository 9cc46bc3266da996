/**
 * Depth pruning on plain arrays: which units (attention / MLP sub-layers, or whole blocks) to remove, from one score
 * per unit (low = removed first) and the budget.
 *
 * Budget: `sparsity` is the fraction of all the decoder blocks' linear parameters P removed. Units are ranked by
 * ascending score (ties by position), and the removed set is the prefix of that ranking whose parameter total is the
 * closest to S · P (a tie goes to the smaller prefix): exact to half of one unit, rounding to nearest. A prefix that
 * would remove every unit is refused.
 */
import { DsaPruneError } from '../../errors.js';

export type DepthScore = 'bi' | 'loss';
export const DEPTH_SCORES: readonly DepthScore[] = ['bi', 'loss'];
export type DepthUnit = 'sublayer' | 'block';
export const DEPTH_UNITS: readonly DepthUnit[] = ['sublayer', 'block'];

export function parseDepthScore(s: string | undefined): DepthScore {
  const v = s ?? 'bi';
  if ((DEPTH_SCORES as readonly string[]).includes(v)) return v as DepthScore;
  throw new DsaPruneError(`unknown depth score "${v}" (known: ${DEPTH_SCORES.join(', ')})`, { hint: 'Pass --depth-score bi (block influence) or loss (calibration loss increase).' });
}

export function parseDepthUnit(s: string | undefined): DepthUnit {
  const v = s ?? 'sublayer';
  if ((DEPTH_UNITS as readonly string[]).includes(v)) return v as DepthUnit;
  throw new DsaPruneError(`unknown depth unit "${v}" (known: ${DEPTH_UNITS.join(', ')})`, { hint: 'Pass --depth-unit sublayer (attention or MLP) or block (both).' });
}

/**
 * Refuse before any work a budget that removes every unit whatever the ranking: S·P above P minus half the smallest
 * unit (the last unit of any ranking would then be rounded in).
 */
export function checkDepthBudget(params: number[], sparsity: number, unitName: string): void {
  const P = params.reduce((a, b) => a + b, 0);
  const min = Math.min(...params);
  if (params.length === 0) throw new DsaPruneError('depth pruning: the model has no removable sub-layer');
  if (sparsity * P > P - min / 2) {
    throw new DsaPruneError(`sparsity ${sparsity} would remove every ${unitName} (${params.length} of them, ${P} parameters)`, {
      hint: `Use a sparsity below ${((P - min / 2) / P).toFixed(4)}.`,
    });
  }
}

/**
 * Indices of the removed units (ascending), by the rule in the file comment. `scores` low = least important.
 */
export function selectDepthUnits(scores: ArrayLike<number>, params: number[], sparsity: number, unitName = 'sub-layer'): number[] {
  if (scores.length !== params.length) throw new DsaPruneError(`selectDepthUnits: ${scores.length} scores for ${params.length} units`);
  if (!(sparsity >= 0 && sparsity < 1)) throw new DsaPruneError(`sparsity must be in [0, 1), got ${sparsity}`);
  for (let i = 0; i < scores.length; i++) {
    if (!Number.isFinite(scores[i]!)) throw new DsaPruneError(`depth score of unit ${i} is ${scores[i]} (not finite)`, { hint: 'Check the calibration data (empty or constant windows?).' });
  }
  const P = params.reduce((a, b) => a + b, 0);
  const target = sparsity * P;
  const order = Array.from({ length: params.length }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]! || a - b);
  let sum = 0;
  let k = 0;
  for (; k < order.length; k++) {
    const next = sum + params[order[k]!]!;
    if (Math.abs(next - target) < Math.abs(sum - target)) sum = next;
    else break;
  }
  if (k === order.length) {
    throw new DsaPruneError(`sparsity ${sparsity} would remove every ${unitName} of the model`, { hint: 'Lower --sparsity.' });
  }
  return order.slice(0, k).sort((a, b) => a - b);
}
