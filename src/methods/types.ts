/** The contract between the pipeline and a uniform pruning method: plain arrays in, pruned weight out. */
import type { BudgetMode, InputStats, Pattern } from '../types.js';

/** One linear to prune, as the method sees it. */
export interface MethodContext {
  /** W [dOut × dIn] row-major, float32. Pruned IN PLACE: zeroed, and for SparseGPT also updated. */
  weight: Float32Array;
  /** Rows of W (output features). */
  dOut: number;
  /** Columns of W (input features). */
  dIn: number;
  /**
   * Statistics of the linear's input over the calibration set: `sq` (Σx², length dIn) for Wanda, `gram`
   * (Σ xᵀx, dIn×dIn) for SparseGPT. Never modified (q/k/v and gate/up share one object).
   */
  stats?: InputStats;
  /** Target sparsity of this linear, in [0, 1). Ignored for N:M patterns (they prune N of every M). */
  sparsity: number;
  /** `{ kind: 'unstructured' }` or `{ kind: 'nm', n, m }` (prune n of every m consecutive inputs of each row). */
  pattern: Pattern;
  /** `reference`: per-row / per-block floor like the reference code; `exact`: round(sparsity · numel) zeros. */
  budget: BudgetMode;
  /** Checked between row chunks / column blocks; SparseGPT yields to the event loop so an abort can land. */
  signal?: AbortSignal;
  /** Layer name, used in error messages and notes (`model.layers.3.mlp.down_proj`). */
  name?: string;
}

/** What a method did to one linear. */
export interface MethodResult {
  /** Zero entries of the weight after pruning (zeros already present before count too). */
  zeros: number;
  /** Human-readable remarks for the report, e.g. `last N:M group narrower (172 % 8 = 4)`. */
  notes: string[];
}

/** A uniform pruning method. Register user methods with `registerMethod`. */
export interface PruningMethod {
  /** Registry key (`magnitude`, `wanda`, `sparsegpt`, or a user name). */
  name: string;
  /** Which input statistics the calibration engine must collect for this method. */
  needs: { sq: boolean; gram: boolean };
  /**
   * Optional extra validation of a request (called by `validateMethodRequest` before any work starts);
   * throw a DsaPruneError to refuse it.
   */
  validate?(req: { sparsity: number; pattern: Pattern; budget: BudgetMode }): void;
  /** Prune one linear in place. */
  prune(ctx: MethodContext): MethodResult | Promise<MethodResult>;
  /**
   * Optional fast path for the search (`dsa-prune search`, fast fitness): called once per linear with the DENSE weight
   * and statistics, it returns something that writes the linear pruned at any sparsity — e.g. a cached per-row order
   * that a candidate only re-masks. It must give the same weights as `prune()` on a copy of the dense weight with the
   * unstructured pattern (test it so). A method without it is still searchable: the search then copies the dense
   * weight and calls `prune()` for every candidate (slower, same numbers).
   */
  prepare?(ctx: FastPathContext): PreparedLinear | Promise<PreparedLinear>;
}

/** Stored layout of a weight: `out_in` = W [dOut × dIn] row-major; `in_out` = Wᵀ [dIn × dOut] (ONNX MatMul B). */
export type StoredLayout = 'out_in' | 'in_out';

/** One linear as a method's fast path sees it: dense, unstructured, prepared once for many sparsities. */
export interface FastPathContext {
  /** Dense W [dOut × dIn] row-major, float32: a copy the prepared linear may keep (nobody else writes it). */
  weight: Float32Array;
  dOut: number;
  dIn: number;
  /** Dense input statistics of the linear (what `needs` asks for); never modified. */
  stats?: InputStats;
  /** Budget mode of every later `apply` (the search fixes it). */
  budget: BudgetMode;
  /**
   * The layout the caller stores the weight in. A prepared linear MAY write that layout directly (and say so in
   * `PreparedLinear.layout`) to save the caller a transpose per candidate; ignoring it is always correct.
   */
  layout?: StoredLayout;
  /** Layer name, for error messages. */
  name?: string;
}

/** A linear prepared by `PruningMethod.prepare`: writes the pruned weight for a sparsity, as often as asked. */
export interface PreparedLinear {
  /** Layout `apply` writes (default `out_in`: W [dOut × dIn] row-major). */
  layout?: StoredLayout;
  /**
   * Write into `out` (dOut·dIn floats, in `layout`) the linear pruned at `sparsity` ∈ [0, 1) — every entry, not only
   * the zeros: `out` holds the previous candidate's weights. Must not modify the dense weight it keeps.
   */
  apply(sparsity: number, out: Float32Array, signal?: AbortSignal): void | Promise<void>;
}
