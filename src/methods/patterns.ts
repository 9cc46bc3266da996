/** Sparsity patterns: request validation and the N:M group rule shared by the methods. */
import { DsaPruneError } from '../errors.js';
import { smallestInGroup, type NumericArray } from '../kernels/select.js';
import type { Pattern } from '../types.js';

/** Throw a DsaPruneError unless `sparsity` is a number in [0, 1) and `pattern` is unstructured or a valid N:M. */
export function validateSparsityAndPattern(sparsity: number, pattern: Pattern, where = ''): void {
  const at = where ? ` (${where})` : '';
  if (typeof sparsity !== 'number' || !Number.isFinite(sparsity) || sparsity < 0 || sparsity >= 1) {
    throw new DsaPruneError(`sparsity ${String(sparsity)}${at} is outside [0, 1)`, {
      hint: 'pass a fraction such as 0.5 for 50 % (1 would remove every weight)',
    });
  }
  if (pattern.kind === 'unstructured') return;
  if (pattern.kind !== 'nm') {
    throw new DsaPruneError(`unknown sparsity pattern ${JSON.stringify(pattern)}${at}`, {
      hint: "use { kind: 'unstructured' } or { kind: 'nm', n, m } (CLI: --pattern 2:4)",
    });
  }
  const { n, m } = pattern;
  if (!Number.isInteger(n) || !Number.isInteger(m) || n < 1 || m < 2 || n >= m) {
    throw new DsaPruneError(`invalid N:M pattern ${n}:${m}${at}: need integers 1 ≤ N < M`, {
      hint: 'e.g. 2:4 or 4:8 (N weights pruned out of every M consecutive inputs)',
    });
  }
}

/** Notes for the report about an N:M pattern on a layer of width `dIn` (the narrower last group). */
export function nmNotes(dIn: number, pattern: Pattern): string[] {
  if (pattern.kind !== 'nm') return [];
  const rest = dIn % pattern.m;
  if (rest === 0) return [];
  const pruned = Math.min(pattern.n, rest);
  return [
    `last N:M group narrower (${dIn} % ${pattern.m} = ${rest}): prunes min(${pattern.n}, ${rest}) = ${pruned} of it`,
  ];
}

/**
 * N:M on one row: in every group of `m` consecutive columns (the last one possibly narrower) zero the weights of
 * the min(n, width) lowest metric values, ties lowest index first. `metric[metricStart + j]` scores
 * `weight[weightStart + j]`; `picked` is scratch of length ≥ m. Returns the number of weights zeroed.
 */
export function pruneRowNm(
  metric: NumericArray,
  metricStart: number,
  weight: Float32Array,
  weightStart: number,
  dIn: number,
  n: number,
  m: number,
  picked: Int32Array,
): number {
  let total = 0;
  for (let g = 0; g < dIn; g += m) {
    const width = Math.min(m, dIn - g);
    const c = smallestInGroup(metric, metricStart + g, width, n, picked);
    for (let t = 0; t < c; t++) weight[weightStart + g + picked[t]] = 0;
    total += c;
  }
  return total;
}
