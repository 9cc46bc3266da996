/**
 * Granularity of an allocation: one sparsity per decoder block (`block`, the default) or one per linear (`linear`:
 * q, k, v, o, gate, up, down of every block each get their own).
 *
 * `atGranularity(allocator, 'linear')` runs any allocator on allocation units that are single linears instead of
 * blocks: unit i is one linear, its `z` the linear's own slice of the block vector (the block vector is the
 * concatenation of its linears' Wanda metrics, in the block's linear order), its `params` the linear's size. So:
 * - OWL scores each linear by its own outlier ratio, DSA evaluates its expression on each linear's statistics, and
 *   the usual score → sparsity mapping and exact budget run over the linears (weighted by their sizes);
 * - allocators defined by block position or needing no statistics (uniform, ATP, an explicit list per block) have no
 *   per-linear information: every linear gets its block's sparsity (the same allocation as `block`);
 * - explicit per-linear maps (`explicit({ 'model.layers.*.mlp.down_proj': 0.8 })`) are per-linear at any granularity.
 * In the exact budget the per-linear result is then made exact in integers (src/budget/counts.ts): the linears prune
 * exactly round(S · W) weights in total, W the prunable parameters, whatever their sizes.
 */
import { DsaPruneError } from '../errors.js';
import { exactCountSparsities } from '../budget/counts.js';
import type { Allocation, AllocationInput, Allocator, BlockAllocationStats } from './types.js';

export type Granularity = 'block' | 'linear';

export const GRANULARITIES: readonly Granularity[] = ['block', 'linear'];

/** Check a granularity value (API and CLI). */
export function checkGranularity(g: unknown): Granularity {
  if (g === undefined) return 'block';
  if (g === 'block' || g === 'linear') return g;
  throw new DsaPruneError(`granularity must be 'block' or 'linear', got ${String(g)}`, { hint: 'use --granularity block (one sparsity per decoder block) or linear (one per projection)' });
}

/** One allocation unit per linear: z = the linear's slice of its block vector (empty when the blocks have none). */
export function linearUnits(blocks: readonly BlockAllocationStats[]): { units: BlockAllocationStats[]; block: number[] } {
  const units: BlockAllocationStats[] = [];
  const block: number[] = [];
  for (let b = 0; b < blocks.length; b++) {
    const B = blocks[b];
    const withZ = B.z.length > 0;
    if (withZ && B.z.length !== B.params) {
      throw new DsaPruneError(`block ${B.index}: its vector has ${B.z.length} entries for ${B.params} parameters; it cannot be split per linear`);
    }
    let off = 0;
    for (const l of B.linears) {
      units.push({ index: units.length, params: l.params, linears: [l], z: withZ ? B.z.subarray(off, off + l.params) : new Float32Array(0) });
      block.push(b);
      off += l.params;
    }
  }
  return { units, block };
}

/** Parameter-weighted block sparsities from per-linear ones (a block without parameters gets `fallback`). */
export function blockMeans(blocks: readonly BlockAllocationStats[], linearSparsity: Record<string, number>, fallback: number): number[] {
  return blocks.map((b) => {
    let num = 0;
    let den = 0;
    for (const l of b.linears) {
      num += (linearSparsity[l.name] ?? fallback) * l.params;
      den += l.params;
    }
    return den > 0 ? num / den : fallback;
  });
}

/**
 * Make an allocation exact in parameters over the linears (exact budget only): every linear of the blocks gets a
 * sparsity c_i / n_i with Σ c_i = round(S · W). Its block sparsity is then the weighted mean of its linears.
 */
export function exactInParameters(a: Allocation, input: AllocationInput): Allocation {
  if (input.budget !== 'exact') return a;
  const ls = input.blocks.flatMap((b, bi) => b.linears.map((l) => ({ l, bi })));
  if (ls.length === 0) return a;
  const s = ls.map(({ l, bi }) => a.linearSparsity?.[l.name] ?? a.blockSparsity[bi] ?? input.sparsity);
  const exact = exactCountSparsities(s, ls.map(({ l }) => l.params), input.sparsity);
  const linearSparsity: Record<string, number> = { ...(a.linearSparsity ?? {}) };
  ls.forEach(({ l }, i) => (linearSparsity[l.name] = exact[i]));
  return { ...a, linearSparsity, blockSparsity: blockMeans(input.blocks, linearSparsity, input.sparsity) };
}

/** The allocator at `granularity` (`block`: unchanged). */
export function atGranularity(allocator: Allocator, granularity: Granularity = 'block'): Allocator {
  checkGranularity(granularity);
  if (granularity === 'block') return allocator;
  if ((allocator as { granularity?: Granularity }).granularity === 'linear') return allocator;
  // Position-based or statistics-free allocators carry no per-linear information: their block value for every linear.
  const perUnit = allocator.needsStatistics !== false && allocator.properties?.permutationEquivariant !== false;
  const allocate = (input: AllocationInput): Allocation => {
    if (!perUnit) {
      const a = allocator.allocate(input);
      const linearSparsity: Record<string, number> = {};
      input.blocks.forEach((b, bi) => b.linears.forEach((l) => (linearSparsity[l.name] = a.linearSparsity?.[l.name] ?? a.blockSparsity[bi])));
      return exactInParameters({ ...a, linearSparsity }, input);
    }
    const { units } = linearUnits(input.blocks);
    const a = allocator.allocate({ ...input, blocks: units });
    const linearSparsity: Record<string, number> = {};
    const linearScores: Record<string, number> = {};
    units.forEach((u, i) => {
      const name = u.linears[0].name;
      linearSparsity[name] = a.linearSparsity?.[name] ?? a.blockSparsity[i];
      if (a.scores) linearScores[name] = a.scores[i];
    });
    return exactInParameters({
      ...a,
      blockSparsity: blockMeans(input.blocks, linearSparsity, input.sparsity),
      linearSparsity,
      scores: undefined,
      ...(a.scores ? { linearScores } : {}),
    }, input);
  };
  return {
    ...allocator,
    name: allocator.name,
    describe: () => `${allocator.describe()}, per linear`,
    allocate,
    // Per-block scores have no meaning at linear granularity.
    scores: undefined,
    fromScores: undefined,
    granularity: 'linear',
  };
}
