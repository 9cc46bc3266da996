/**
 * The allocator contract: plain statistics of a dense pass in, a sparsity per block (optionally per linear) out.
 * Allocators never see ONNX or onnxruntime objects.
 */
import type { BudgetMode, LinearRole } from '../types.js';

/** Dense statistics of one decoder block, as the allocators see it. */
export interface BlockAllocationStats {
  /** Block position in the model (0-based). */
  index: number;
  /** Prunable parameters in the block (sum of its linears' params). */
  params: number;
  /** The block's prunable linears. */
  linears: { name: string; role: LinearRole; params: number }[];
  /**
   * Block vector: concatenation of the Wanda metrics A of its linears (src/methods/metrics.ts wandaMetric), from a
   * DENSE pass. May be empty for allocators that need no statistics (uniform, ATP, explicit).
   */
  z: Float32Array;
}

/** What an allocator is asked. */
export interface AllocationInput {
  blocks: BlockAllocationStats[];
  /** Global target sparsity S (parameter-weighted in `exact` mode). */
  sparsity: number;
  /** `exact` (default of the pipeline): weighted mean = S, bounds [0, 0.99]; `reference`: the reference code's rules. */
  budget: BudgetMode;
}

/** What an allocator answers. */
export interface Allocation {
  /** Sparsity of each block, in block order. */
  blockSparsity: number[];
  /** Optional per-linear override (finer granularity than blocks), by linear name. */
  linearSparsity?: Record<string, number>;
  /** Per-block scores for reports: OWL's outlier ratio D, DSA's importance I (raw, before any mapping). */
  scores?: number[];
  /** Per-linear scores at linear granularity (atGranularity(a, 'linear')), by linear name. */
  linearScores?: Record<string, number>;
  /** The DSA expression in its three spellings, and λ. */
  expression?: { reference: string; mathjs: string; simplified: string; lambda: number };
}

/** Properties an allocator declares; `checkAllocator` (dsa-prune/testing) verifies them. */
export interface AllocatorProperties {
  /** Permuting the blocks permutes the allocation (statistics-only allocators; not ATP, not position lists). */
  permutationEquivariant?: boolean;
  /** The allocation depends on its scores only through minmax: scores → a·scores + b (a > 0) changes nothing. */
  affineInvariantImportance?: boolean;
}

export interface Allocator {
  /** Short name (`owl`, `dsa`, …); `uniform` is special-cased by the pipeline (no dense pass). */
  name: string;
  /** `linear` when the allocator already allocates per linear (atGranularity(a, 'linear')); absent: per block. */
  granularity?: 'block' | 'linear';
  /** One line for reports and `--help`, with the parameters. */
  describe(): string;
  allocate(input: AllocationInput): Allocation;
  properties?: AllocatorProperties;
  /**
   * False when the allocator ignores the block vectors z (uniform, ATP, explicit): the pipeline can skip the dense
   * pass and pass empty z. Absent means true.
   */
  needsStatistics?: boolean;
  /** Score-based allocators: the per-block scores alone (e.g. raw DSA importance). */
  scores?(input: AllocationInput): number[];
  /** Score-based allocators: the allocation for given scores (allocate(input) = fromScores(scores(input), input)). */
  fromScores?(scores: number[], input: AllocationInput): Allocation;
}
