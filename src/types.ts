/**
 * Shared vocabulary of the project: plain data that crosses folder boundaries.
 * Methods, allocators and the search work on these typed arrays only, never on onnxruntime or ONNX objects,
 * so they can be tested without a model (see docs/architecture.md).
 */

/** Role of a linear inside a decoder block, from the node scope (`q_proj` → `q`, GPT-2 `c_fc` → `up`, …). */
export type LinearRole =
  | 'q' | 'k' | 'v' | 'o' | 'qkv'
  | 'gate' | 'up' | 'down' | 'gate_up'
  | 'lm_head' | 'other';

/** Every LinearRole, for the readers of stored formats (stats-cache.ts, dense-codec.ts). */
export const LINEAR_ROLES = ['q', 'k', 'v', 'o', 'qkv', 'gate', 'up', 'down', 'gate_up', 'lm_head', 'other'] as const satisfies readonly LinearRole[];
// Compile-time check that the list has every role.
const everyRole: Record<LinearRole, true> = Object.fromEntries(LINEAR_ROLES.map((r) => [r, true])) as Record<(typeof LINEAR_ROLES)[number], true>;
void everyRole;

/** A logical slice of a fused projection (Phi-3 `qkv_proj`, GPT-2 `c_attn`): rows [start, end) of W [dOut × dIn]. */
export interface LinearPart {
  role: LinearRole;
  start: number;
  end: number;
}

/** A prunable linear layer as the rest of the project sees it. W is always presented as [dOut × dIn], row-major. */
export interface LinearInfo {
  /** Stable name, e.g. `model.layers.3.mlp.down_proj`. */
  name: string;
  /** Decoder block index, or -1 outside the blocks (lm_head). */
  block: number;
  role: LinearRole;
  dIn: number;
  dOut: number;
  dtype: 'float32' | 'float16';
  /** ONNX node name (`/model/layers.3/mlp/down_proj/MatMul`). */
  node: string;
  /** ONNX initializer name holding the weight. */
  weight: string;
  /** Logical parts of a fused projection (absent when the linear is one projection). */
  parts?: LinearPart[];
}

/** The unstructured or N:M sparsity pattern. */
export type Pattern = { kind: 'unstructured' } | { kind: 'nm'; n: number; m: number };

/**
 * `reference`: the rounding of the reference code (per-row floor of d_in·s, reference allocator clamps);
 * `exact`: each linear prunes round(s·numel) weights and the global parameter-weighted sparsity equals the target.
 */
export type BudgetMode = 'exact' | 'reference';

/** Statistics of one linear's input X [tokens × dIn], accumulated over the calibration set. */
export interface InputStats {
  /** Σ_t x_tj² per input feature (Wanda), length dIn. */
  sq: Float64Array;
  /** Σ_t x_tᵀ x_t, [dIn × dIn] row-major (SparseGPT); present only when requested. */
  gram?: Float64Array;
  /** Σ_t x_tj per input feature, length dIn (FLAP's mean / variance); present only when requested. */
  sum?: Float64Array;
  /**
   * Σ_t x̃_tᵀ x_t, [dIn × dIn] row-major (entry i·dIn + j = Σ_t x̃_ti·x_tj), x̃ the input in the reference stream (the
   * model before the run's callbacks changed it), x the current one; only with `needs.cross` (asymmetric GPTQ).
   */
  cross?: Float64Array;
  /** Number of calibration sequences (the reference divides by it). */
  nsamples: number;
  /** Number of calibration tokens summed over. */
  tokens: number;
}

/** Per-phase progress reported by long operations. */
export interface Progress {
  phase: string;
  /** Block index when the phase walks the blocks. */
  block?: number;
  /** 0..1 of the phase. */
  fraction: number;
  message?: string;
}
export type ProgressCallback = (p: Progress) => void;
