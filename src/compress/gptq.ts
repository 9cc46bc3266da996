/**
 * Joint prune + quantize: GPTQ (Frantar et al. 2023) error feedback for the surviving weights of a pruned model, on the
 * exact 4-bit grid the q4 writer stores (MatMulNBits, see quantize.ts), so the saved `model_q4.onnx` holds the GPTQ codes.
 *
 * Per linear W [rows × k] (row = output channel) with input Gram matrix XᵀX from the calibration engine:
 * Hinv = upper Cholesky factor of H⁻¹ (H = 2/n·XᵀX + 0.1·mean(diag H)·I by default — GPTQ_PERCDAMP — through the
 * SparseGPT pass's own sparseGptHinv, with its damping retry; dead inputs get H_jj = 1 and a zero weight column, as in the reference). Columns are swept left to
 * right (lazy updates in blocks of 128, as IST-DASLab/sparsegpt `fasterprune` with `wbits`); at the first column of each
 * quantization group (`blockSize` columns along K = the writer's block) every row picks its scale and integer zero point
 * from the *current, error-updated* weights of the group's surviving entries (rounded to float32) (range widened to contain 0, the writer's
 * range search); each weight is then rounded on that grid — a pruned weight (the mask: exactly 0 before GPTQ) becomes
 * exactly 0 (code = zero point) — and its error (w − q)/Hinv_ii is propagated to the later columns.
 * `actOrder`: columns swept by decreasing diag(H) with static groups (every group's grid from the weights before any
 * update, as the reference's `act_order` + `static_groups`), so the file's per-block layout stays valid.
 */
import { DsaPruneError } from '../errors.js';
import { subtractProduct } from '../kernels/gemm.js';
import { sparseGptHinv } from '../methods/sparsegpt.js';
import { float32ToFp16, fp16ToFloat32 } from '../model/onnx.js';
import { checkQ4BlockSize, halfPrecision, q4HeadBlockSize, q4HeadWeights, type Q4Packed } from './quantize.js';
import { runCalibration } from '../calibration/index.js';
import { attachModel, discoverLinears, transpose } from '../model/index.js';
import type { LinearInfo, ProgressCallback } from '../types.js';

/** Column block of the lazy-update sweep (the reference's default). */
export const GPTQ_SWEEP_BLOCK = 128;
/**
 * Default Hessian damping of GPTQ as a fraction of mean(diag H): 0.1, not the reference's 0.01 — measured better on
 * both bench-12l and stories260k (docs/compression.md, "GPTQ q4"); the SparseGPT retry (×10) still applies.
 */
export const GPTQ_PERCDAMP = 0.1;

export interface GptqLayerOptions {
  /** Quantization group along K = the q4 writer's block size (power of two ≥ 16). Default 32. */
  blockSize?: number;
  /** Shrunken ranges tried per group (the writer's `rangeSearch`; 0 = plain min/max). Default 6. */
  rangeSearch?: number;
  /** Storage type of the scales: fp16 weights get fp16 scales in the writer, so the grid uses fp16-rounded scales. */
  scaleDtype?: 'float32' | 'float16';
  /** Hessian damping as a fraction of mean(diag H) (gptqFromGram / gptqModel). Default GPTQ_PERCDAMP = 0.1. */
  percdamp?: number;
  /**
   * gptqFromGram / gptqModel: sweep the columns in order of decreasing diag(H) (the reference's `act_order`), with
   * static groups so the file's per-block scales stay valid. Default false.
   */
  actOrder?: boolean;
}

/** GPTQ result of one [rows × k] weight: codes, per-group scale and zero point, and the weight they decode to. */
export interface GptqLayerResult {
  rows: number;
  k: number;
  blockSize: number;
  nBlocks: number;
  /** [rows × k] 4-bit codes (0..15), one per byte. */
  codes: Uint8Array;
  /** [rows × nBlocks] */
  scales: Float32Array;
  /** [rows × nBlocks] integer zero points 0..15. */
  zeroPoints: Uint8Array;
  /** [rows × k] dequantized weight, float32((code − zp)·scale): what MatMulNBits computes. Pruned entries are +0. */
  weight: Float32Array;
}

const f16 = new Float32Array(1);
/** The writer's rule (quantizeQ4): scales are fp16-representable (halfPrecision), so the sparse q4 file stores them as fp16. */
function roundScale(s: number, dtype: 'float32' | 'float16'): number {
  f16[0] = halfPrecision(s);
  if (dtype === 'float16') return fp16ToFloat32(float32ToFp16(f16))[0]!;
  return f16[0];
}

/**
 * Scale and zero point of one group (the q4 writer's rule, quantize.ts `quantizeQ4`): range [min(0, lo), max(0, hi)]
 * over the surviving values, `rangeSearch` shrinks by 4 % steps, keep the least squared round-to-nearest error.
 * All surviving values 0 (or none survive): scale 0, zp 0.
 */
export function q4GroupParams(
  vals: ArrayLike<number>,
  keep: ArrayLike<number> | undefined,
  rangeSearch = 6,
  scaleDtype: 'float32' | 'float16' = 'float32',
): { scale: number; zp: number } {
  let lo = 0;
  let hi = 0;
  for (let j = 0; j < vals.length; j++) {
    if (keep && !keep[j]) continue;
    const v = vals[j]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  let bestErr = Infinity;
  let best = { scale: 0, zp: 0 };
  if (hi - lo > 0) {
    const tries = Math.max(1, rangeSearch);
    for (let t = 0; t < tries; t++) {
      const shrink = 1 - t * 0.04;
      const scale = roundScale((hi * shrink - lo * shrink) / 15, scaleDtype);
      if (!(scale > 0)) continue;
      let zp = Math.round(-(lo * shrink) / scale);
      if (zp < 0) zp = 0;
      else if (zp > 15) zp = 15;
      let err = 0;
      for (let j = 0; j < vals.length; j++) {
        if (keep && !keep[j]) continue;
        const v = vals[j]!;
        const d = (q4Code(v, scale, zp) - zp) * scale - v;
        err += d * d;
      }
      if (err < bestErr) {
        bestErr = err;
        best = { scale, zp };
      }
    }
  }
  return best;
}

/** Round v to the 4-bit grid (scale, zp): clamp(round(v/scale) + zp, 0, 15); 0 (and scale 0) → zp. */
export function q4Code(v: number, scale: number, zp: number): number {
  if (v === 0 || !(scale > 0)) return zp;
  let q = Math.round(v / scale) + zp;
  if (q < 0) q = 0;
  else if (q > 15) q = 15;
  return q;
}

/**
 * GPTQ of one layer on the q4 grid. `w` [rows × k] row-major (row = output channel) is not modified; `hinv` is the
 * upper Cholesky factor of H⁻¹ ([k × k] float64, sparseGptHinv); `pruned[r·k + j] = 1` marks weights that must stay
 * exactly 0 (default: the entries of `w` that are 0, i.e. the pruning mask).
 */
export function gptqQuantizeLayer(
  w: Float32Array | Float64Array,
  rows: number,
  k: number,
  hinv: Float64Array,
  opts: GptqLayerOptions & {
    pruned?: Uint8Array;
    /**
     * Column order of the sweep (act_order): `perm[c]` is the original column swept c-th, and `hinv` is the factor of
     * the *permuted* H (H[perm][:, perm]). Implies static groups: each original group's grid is chosen once from the
     * weights before any update (the reference's `static_groups`), so codes, scales and zero points stay in the
     * file's original block layout.
     */
    perm?: Int32Array;
    /** Choose every group's grid from the weights before any update (the reference's `static_groups`). */
    staticGroups?: boolean;
  } = {},
): GptqLayerResult {
  const bs = opts.blockSize ?? 32;
  if (bs < 16 || (bs & (bs - 1)) !== 0) {
    throw new DsaPruneError(`GPTQ: block size ${bs} is not a power of two ≥ 16`, { hint: 'Use 16, 32, 64 or 128 (default 32), the q4 block size.' });
  }
  if (w.length !== rows * k) throw new DsaPruneError(`GPTQ: expected ${rows}×${k} weights, got ${w.length}`);
  if (hinv.length < k * k) throw new DsaPruneError(`GPTQ: Hinv has ${hinv.length} entries, need ${k}×${k}`);
  const rangeSearch = opts.rangeSearch ?? 6;
  const scaleDtype = opts.scaleDtype ?? 'float32';
  const pruned = opts.pruned ?? Uint8Array.from(w as ArrayLike<number>, (v) => (v === 0 ? 1 : 0));
  const nBlocks = Math.ceil(k / bs);
  const codes = new Uint8Array(rows * k);
  const scales = new Float32Array(rows * nBlocks);
  const zeroPoints = new Uint8Array(rows * nBlocks);
  const out = new Float32Array(rows * k);
  const perm = opts.perm;
  if (perm && perm.length !== k) throw new DsaPruneError(`GPTQ: perm has ${perm.length} entries, need ${k}`);
  const staticGroups = !!perm || !!opts.staticGroups;
  // W and the mask in sweep order (column c = original column perm[c])
  const W = perm ? new Float64Array(rows * k) : Float64Array.from(w);
  const prunedS = perm ? new Uint8Array(rows * k) : pruned;
  if (perm) {
    for (let r = 0; r < rows; r++) {
      const ro = r * k;
      for (let c = 0; c < k; c++) {
        W[ro + c] = w[ro + perm[c]!]!;
        prunedS[ro + c] = pruned[ro + perm[c]!]!;
      }
    }
  }
  const U = hinv;
  const sb = GPTQ_SWEEP_BLOCK;
  const err = new Float64Array(rows * sb);
  const vals = new Float32Array(bs); // the group's current weights as float32: the writer's rule on float32 weights
  const keep = new Uint8Array(bs);
  const curScale = new Float64Array(rows);
  const curZp = new Int32Array(rows);
  const gemmScratch = { acc: new Float64Array(256), idx: new Int32Array(rows * sb), cnt: new Int32Array(rows) };

  const groupParams = (src: ArrayLike<number>, g: number) => {
    const c0 = g * bs;
    const g1 = Math.min(k, c0 + bs);
    for (let r = 0; r < rows; r++) {
      const ro = r * k;
      for (let j = c0; j < g1; j++) {
        vals[j - c0] = src[ro + j]!;
        keep[j - c0] = pruned[ro + j] ? 0 : 1;
      }
      const p = q4GroupParams(vals.subarray(0, g1 - c0), keep.subarray(0, g1 - c0), rangeSearch, scaleDtype);
      scales[r * nBlocks + g] = p.scale;
      zeroPoints[r * nBlocks + g] = p.zp;
    }
  };
  if (staticGroups) for (let g = 0; g < nBlocks; g++) groupParams(w, g);

  for (let i1 = 0; i1 < k; i1 += sb) {
    const i2 = Math.min(i1 + sb, k);
    const count = i2 - i1;
    for (let col = i1; col < i2; col++) {
      const orig = perm ? perm[col]! : col;
      if (staticGroups) {
        const g = Math.floor(orig / bs);
        for (let r = 0; r < rows; r++) {
          curScale[r] = scales[r * nBlocks + g]!;
          curZp[r] = zeroPoints[r * nBlocks + g]!;
        }
      } else if (col % bs === 0) {
        // group start: scale / zero point per row from the current (error-updated) surviving weights
        const g = col / bs;
        groupParams(W, g);
        for (let r = 0; r < rows; r++) {
          curScale[r] = scales[r * nBlocks + g]!;
          curZp[r] = zeroPoints[r * nBlocks + g]!;
        }
      }
      const hr = col * k;
      const d = U[hr + col];
      for (let r = 0; r < rows; r++) {
        const ro = r * k;
        const v = W[ro + col];
        const zp = curZp[r];
        const s = curScale[r];
        let q: number;
        let deq: number;
        if (prunedS[ro + col]) {
          q = zp;
          deq = 0;
        } else {
          q = q4Code(v, s, zp);
          deq = Math.fround((q - zp) * s);
        }
        codes[ro + orig] = q;
        out[ro + orig] = deq === 0 ? 0 : deq; // +0, never −0
        const e = (v - deq) / d;
        err[r * sb + (col - i1)] = e;
        if (e === 0) continue;
        for (let j = col + 1; j < i2; j++) W[ro + j] -= e * U[hr + j];
      }
    }
    if (i2 < k) {
      subtractProduct(
        { data: W, offset: i2, ld: k },
        { data: err, offset: 0, ld: sb },
        { data: U, offset: i1 * k + i2, ld: k },
        rows,
        count,
        k - i2,
        gemmScratch,
      );
    }
    err.fill(0);
  }
  return { rows, k, blockSize: bs, nBlocks, codes, scales, zeroPoints, weight: out };
}

/**
 * GPTQ of one layer from its Gram matrix XᵀX (float64 [k × k], as InputStats.gram) over `nsamples` sequences: the
 * SparseGPT Hinv (same damping and retry), dead inputs (H_jj = 0) forced to 0, then gptqQuantizeLayer.
 */
export function gptqFromGram(
  w: Float32Array,
  rows: number,
  k: number,
  gram: Float64Array,
  nsamples: number,
  opts: GptqLayerOptions & {
    name?: string;
    /**
     * Asymmetric calibration (GPTAQ): C = Σ_t x̃_tᵀ x_t ([k × k], entry i·k + j = Σ x̃_ti·x_tj; InputStats.cross) with
     * x̃ the layer's input in the unquantized model and x its input here. GPTQ then fits Q·x to W·x̃ instead of W·x:
     * it sweeps the least-squares target W* = asymmetricTarget(…) on the same Hessian; pruned weights stay 0.
     */
    cross?: Float64Array;
  } = {},
): GptqLayerResult & { deadInputs: number; percdamp: number } {
  let perm: Int32Array | undefined;
  let g = gram;
  let c = opts.cross;
  if (c && c.length !== k * k) throw new DsaPruneError(`GPTQ: cross Gram of ${opts.name ?? 'a layer'} has ${c.length} entries, need ${k}×${k}`);
  if (opts.actOrder) {
    // the reference's argsort(diag(H), descending); ties by column index, so the order is deterministic
    perm = Int32Array.from({ length: k }, (_, i) => i).sort((a, b) => gram[b * k + b]! - gram[a * k + a]! || a - b);
    g = permuted(gram, k, perm);
    if (c) c = permuted(c, k, perm);
  }
  const { hinv, dead, deadCount, percdamp } = sparseGptHinv(g, nsamples, k, opts.name, opts.percdamp ?? GPTQ_PERCDAMP);
  const pruned = Uint8Array.from(w, (v) => (v === 0 ? 1 : 0));
  if (deadCount) for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) if (dead[j]) pruned[r * k + (perm ? perm[j]! : j)] = 1;
  let target: Float32Array | Float64Array = w;
  if (c) {
    // W* in sweep order (columns permuted like H), back to the original column order for gptqQuantizeLayer
    const wp = perm ? new Float64Array(rows * k) : w;
    if (perm) for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) wp[r * k + j] = w[r * k + perm[j]!]!;
    const ws = asymmetricTarget(wp, rows, k, g, c, nsamples, hinv);
    if (perm) {
      target = new Float64Array(rows * k);
      for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) target[r * k + perm[j]!] = ws[r * k + j]!;
    } else target = ws;
  }
  return { ...gptqQuantizeLayer(target, rows, k, hinv, { ...opts, pruned, perm }), deadInputs: deadCount, percdamp };
}

function permuted(m: Float64Array, k: number, perm: Int32Array): Float64Array {
  const out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) out[i * k + j] = m[perm[i]! * k + perm[j]!]!;
  return out;
}

/**
 * The least-squares target of asymmetric calibration (GPTAQ, Li et al., ICML 2025): the minimiser over Q of
 * Σ_t ‖Q·x_t − W·x̃_t‖² + λ‖Q − W‖² (λ = GPTQ's damping) is
 *   W* = W + (2/n)·W·(C − G)·H⁻¹,   H = (2/n)·G + λ·I (sparseGptHinv's damped Hessian, `hinv` its factor U: H⁻¹ = UᵀU),
 * with G = Σ x_tᵀx_t and C = Σ x̃_tᵀx_t. For x̃ = x it is W. Since Σ‖Q·x − W·x̃‖² + λ‖Q − W‖² = tr((Q − W*)·H·(Q − W*)ᵀ)·n/2
 * + const, GPTQ on W* with H is GPTQ on the asymmetric objective. `w` [rows × k], returns W* [rows × k] (float64).
 */
export function asymmetricTarget(
  w: ArrayLike<number>, rows: number, k: number, gram: Float64Array, cross: Float64Array, nsamples: number, hinv: Float64Array,
): Float64Array {
  const scale = 2 / nsamples;
  const m = new Float64Array(k * k);
  for (let i = 0; i < k * k; i++) m[i] = scale * (cross[i]! - gram[i]!);
  const out = new Float64Array(rows * k);
  const a = new Float64Array(k);
  const b = new Float64Array(k);
  for (let r = 0; r < rows; r++) {
    const ro = r * k;
    // a = w_r · M
    a.fill(0);
    for (let i = 0; i < k; i++) {
      const wi = w[ro + i]!;
      if (wi === 0) continue;
      const mi = i * k;
      for (let j = 0; j < k; j++) a[j] += wi * m[mi + j]!;
    }
    // b = a · Uᵀ: b_j = Σ_{i ≥ j} a_i U_ji
    for (let j = 0; j < k; j++) {
      let acc = 0;
      const uj = j * k;
      for (let i = j; i < k; i++) acc += a[i]! * hinv[uj + i]!;
      b[j] = acc;
    }
    // out = w + b · U: (b·U)_j = Σ_{i ≤ j} b_i U_ij
    for (let j = 0; j < k; j++) out[ro + j] = w[ro + j]!;
    for (let i = 0; i < k; i++) {
      const bi = b[i]!;
      if (bi === 0) continue;
      const ui = i * k;
      for (let j = i; j < k; j++) out[ro + j] += bi * hinv[ui + j]!;
    }
  }
  return out;
}

/**
 * Pack a GPTQ result into the q4 writer's MatMulNBits layout (quantize.ts Q4Packed: `B` [N, nBlocks, blockSize/2], low
 * nibble first, K padded with the zero point; zero points two per byte, low nibble first).
 */
export function packGptqQ4(res: GptqLayerResult): Q4Packed {
  const { rows: n, k, blockSize, nBlocks, codes, scales, zeroPoints } = res;
  const blob = blockSize / 2;
  const zpRow = Math.ceil(nBlocks / 2);
  const packed = new Uint8Array(n * nBlocks * blob);
  const zps = new Uint8Array(n * zpRow);
  const q = new Uint8Array(blockSize);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < nBlocks; b++) {
      const zp = zeroPoints[r * nBlocks + b]!;
      const k0 = b * blockSize;
      const k1 = Math.min(k, k0 + blockSize);
      q.fill(zp);
      q.set(codes.subarray(r * k + k0, r * k + k1));
      const base = (r * nBlocks + b) * blob;
      for (let j = 0; j < blob; j++) packed[base + j] = q[2 * j]! | (q[2 * j + 1]! << 4);
      zps[r * zpRow + (b >> 1)] |= b & 1 ? zp << 4 : zp;
    }
  }
  return { n, k, blockSize, nBlocks, packed, scales: Float32Array.from(scales), zeroPoints: zps };
}

export interface GptqModelOptions extends GptqLayerOptions {
  /** Calibration windows: nsamples × seqlen token ids, row-major (what pruneModel used, see lastPruneCalibration). */
  windows: Int32Array;
  nsamples: number;
  seqlen: number;
  /**
   * `sequential` (default, as GPTQ): block b's Hessians come from the outputs of blocks 0..b-1 *after* they were
   * quantized; `oneshot`: every Hessian from the (pruned) float model.
   */
  mode?: 'sequential' | 'oneshot';
  /**
   * Also GPTQ the lm_head (a MatMul weight outside the blocks read by the final norm's output), on the Gram matrix of
   * the final norm's output (the calibration engine's `head` statistics, after the last block). Default false: the
   * lm_head is round-to-nearest.
   */
  lmHead?: boolean;
  /**
   * Asymmetric calibration (GPTAQ): fit each quantized linear's output on its quantized-prefix inputs to the
   * *unquantized* (pruned) model's output on its own inputs (least-squares target W* = W + (2/n)·W·(C − G)·H⁻¹, see
   * asymmetricTarget). Needs `mode: 'sequential'`; the calibration engine carries a second hidden-state stream (the
   * unquantized model) and the cross Gram Σ x̃ᵀx. Default: true in sequential mode (measured better than plain GPTQ on
   * both SOTU and WikiText-2 for bench-12l Wanda 50 %, docs/compression.md), false in one-shot mode.
   */
  asymmetric?: boolean;
  /**
   * Group size of the lm_head / embedding pair (the q4 writer's `headBlockSize`; default: the writer's default for
   * this graph, `q4HeadBlockSize`, i.e. 16 when it divides every embedding table): a linear the
   * writer treats as the lm_head (q4HeadWeights) is grouped by it, every other by `blockSize`, so the codes match the
   * file's block for every linear.
   */
  headBlockSize?: number;
  threads?: number;
  batchSize?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export interface GptqLinearReport {
  name: string;
  /** Initializer holding the weight (the key of `codes`). */
  weight: string;
  rows: number;
  k: number;
  deadInputs: number;
  percdamp: number;
}

export interface GptqModelResult {
  /** Initializer name → MatMulNBits codes, for quantizeModel's `q4Codes` (QuantizeOptions). */
  codes: Map<string, Q4Packed>;
  linears: GptqLinearReport[];
  blockSize: number;
  seconds: number;
}

/**
 * GPTQ q4 codes for every block linear of a (pruned) transformers.js model that the q4 writer turns into MatMulNBits
 * (MatMul weights stored [K × N]), with Hessians from the calibration engine. The model is left exactly as it was:
 * the quantized weights are written into the graph only while calibrating (so later blocks see the quantized
 * earlier ones) and restored afterwards, also on failure. Pass `codes` to `quantizeModel(…, 'q4', { q4Codes })`
 * (savePruned does this with `gptq: true`).
 */
export async function gptqModel(model: unknown, opts: GptqModelOptions): Promise<GptqModelResult> {
  const t0 = performance.now();
  const blockSize = opts.blockSize ?? 32;
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) {
    throw new DsaPruneError(`GPTQ: block size ${blockSize} is not a power of two ≥ 16`, { hint: 'Use 16, 32, 64 or 128 (default 32), the q4 block size.' });
  }
  const pm = await attachModel(model);
  // the writer's rule for the lm_head's group (its default writer options unless the caller resolved it)
  const headBlockSize = opts.headBlockSize ?? q4HeadBlockSize(pm.proto.graph, { blockSize });
  if (headBlockSize !== blockSize) checkQ4BlockSize(headBlockSize, 'GPTQ: lm_head block size');
  // the writer's lm_head rule (read before the pass writes quantized weights into the graph)
  const heads = headBlockSize !== blockSize ? q4HeadWeights(pm.proto.graph, (t) => pm.readInitializer(t.name!)) : new Set<string>();
  const targets = pm.linears.filter((l) => l.block >= 0 && pm.layout.get(l.name) === 'in_out');
  if (targets.length === 0) {
    throw new DsaPruneError('GPTQ: the model has no block linear stored as a MatMul weight [K × N], nothing the q4 writer quantizes', {
      hint: 'Save without gptq (round-to-nearest q4) for this layout.',
    });
  }
  const byBlock = new Map<number, LinearInfo[]>();
  for (const l of targets) byBlock.set(l.block, [...(byBlock.get(l.block) ?? []), l]);
  const mode = opts.mode ?? 'sequential';
  const asymmetric = opts.asymmetric ?? mode === 'sequential';
  if (asymmetric && mode !== 'sequential') {
    throw new DsaPruneError("GPTQ: asymmetric calibration needs mode 'sequential' (in one-shot mode every input is the unquantized model's)", {
      hint: "Leave mode out (sequential is the default) or drop asymmetric.",
    });
  }
  let head: LinearInfo | undefined;
  if (opts.lmHead) {
    const found = discoverLinears(pm.proto.graph, { includeLmHead: true, config: pm.config }).linears.filter((l) => l.role === 'lm_head');
    head = found[0];
    const isMatMul = head && pm.proto.graph.node.some((n) => n.name === head!.node && n.op_type === 'MatMul' && (n.domain ?? '') === '' && n.input[1] === head!.weight);
    if (!head || found.length > 1 || !isMatMul) {
      throw new DsaPruneError(`GPTQ: lmHead asked for, but ${!head ? 'the model has no lm_head' : found.length > 1 ? 'the model has several lm_head candidates' : `the lm_head ${head.node} is not a MatMul on a [K × N] weight initializer`}`, {
        hint: 'Leave lmHead out (round-to-nearest lm_head) for this layout.',
      });
    }
    byBlock.set(Math.max(...targets.map((l) => l.block)) + 1, [head]);
  }
  const codes = new Map<string, Q4Packed>();
  const linears: GptqLinearReport[] = [];
  const undo: ((() => void) & { release?: () => void })[] = [];
  try {
    await runCalibration(pm, opts.windows, {
      nsamples: opts.nsamples, seqlen: opts.seqlen, needs: { sq: false, gram: true, cross: asymmetric }, mode,
      head, threads: opts.threads, batchSize: opts.batchSize, onProgress: opts.onProgress, signal: opts.signal,
    }, async (block, stats) => {
      for (const l of byBlock.get(block) ?? []) {
        const s = stats.get(l.name);
        if (!s?.gram) throw new DsaPruneError(`GPTQ: no calibration Hessian for ${l.name}`, { hint: 'This layout is not supported by the calibration engine; save without gptq.' });
        if (asymmetric && !s.cross) throw new DsaPruneError(`GPTQ: no cross Gram matrix for ${l.name}`, { hint: 'Save without asymmetric.' });
        // the lm_head is not a PrunableModel linear: its initializer is [K × N], GPTQ wants [N × K]
        const w = l === head ? transpose(pm.readInitializer(l.weight), l.dIn, l.dOut) : pm.readWeight(l);
        const isHead = heads.has(l.weight);
        const res = gptqFromGram(w, l.dOut, l.dIn, s.gram, s.nsamples, {
          blockSize: isHead ? headBlockSize : blockSize, rangeSearch: opts.rangeSearch, percdamp: opts.percdamp, actOrder: opts.actOrder, scaleDtype: l.dtype === 'float16' ? 'float16' : 'float32', name: l.name,
          cross: asymmetric ? s.cross : undefined,
        });
        codes.set(l.weight, packGptqQ4(res));
        linears.push({ name: l.name, weight: l.weight, rows: l.dOut, k: l.dIn, deadInputs: res.deadInputs, percdamp: res.percdamp });
        if (l === head) continue; // nothing runs after the lm_head: its weight is not written into the graph
        undo.push(pm.snapshotWeight(l));
        pm.writeWeight(l, res.weight);
        opts.signal?.throwIfAborted();
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    });
  } finally {
    for (let i = undo.length - 1; i >= 0; i--) undo[i]!();
    for (const u of undo) u.release?.();
  }
  return { codes, linears, blockSize, seconds: (performance.now() - t0) / 1000 };
}
