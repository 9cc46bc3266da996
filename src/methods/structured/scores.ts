/**
 * Channel scores of structured FFN pruning, on plain arrays (no ONNX): one score per intermediate channel j of an MLP,
 * low = removed first.
 *
 * - `magnitude`: Σ |W| over every weight of the channel (its gate/up rows and its down column).
 * - `wanda-sp`: the structured Wanda of the FLAP paper's baseline (FLAP repo `prune_wanda_sp`): Σ_o |W_down[o, j]| · ‖h_j‖,
 *   ‖h_j‖ = sqrt(Σ_t h_tj²) of the down projection's input h over the calibration tokens (the paper takes the mean
 *   over o; the ranking is the same).
 * - `flap`: FLAP's fluctuation metric (An et al., AAAI 2024, WIFV): Var_t(h_j) · ‖W_down[:, j]‖², with the variance over
 *   the calibration tokens (Σh²/N − (Σh/N)², population form as FLAP's running estimate). Its bias compensation adds
 *   Σ_{j removed} mean_t(h_j) · W_down[:, j] to the down projection's output bias (`compensationBias`).
 */
import { DsaPruneError } from '../../errors.js';

export type ChannelScore = 'magnitude' | 'wanda-sp' | 'flap';
export const CHANNEL_SCORES: readonly ChannelScore[] = ['wanda-sp', 'flap', 'magnitude'];

/** One MLP as the scores see it. Matrices are [dOut × dIn] row-major. */
export interface FfnChannelInput {
  /** Intermediate width F. */
  width: number;
  /** Up-side projections: channel j is row offsets[k] + j of w ([dOut × dIn]). */
  up: { w: Float32Array; dIn: number; offsets: number[] }[];
  /** Down projection W [dOut × F]. */
  down: Float32Array;
  downOut: number;
  /** Σ_t h_tj² of the down projection's input (wanda-sp, flap). */
  sq?: Float64Array;
  /** Σ_t h_tj of the down projection's input (flap). */
  sum?: Float64Array;
  /** Calibration tokens summed over (flap). */
  tokens?: number;
}

export function parseChannelScore(s: string): ChannelScore {
  if ((CHANNEL_SCORES as readonly string[]).includes(s)) return s as ChannelScore;
  throw new DsaPruneError(`unknown structured score "${s}" (known: ${CHANNEL_SCORES.join(', ')})`, { hint: 'Pass --score wanda-sp, flap or magnitude.' });
}

/** Per-channel mean of the down projection's input, Σh / N. */
export function channelMeans(sum: Float64Array, tokens: number): Float64Array {
  const m = new Float64Array(sum.length);
  for (let j = 0; j < sum.length; j++) m[j] = sum[j]! / tokens;
  return m;
}

/** Scores of every channel (float64, length F). */
export function channelScores(score: ChannelScore, x: FfnChannelInput): Float64Array {
  const F = x.width;
  const out = new Float64Array(F);
  const D = x.downOut;
  if (x.down.length !== D * F) throw new DsaPruneError(`channelScores: down has ${x.down.length} values, expected ${D}×${F}`);
  if (score === 'magnitude') {
    for (const u of x.up) {
      for (const off of u.offsets) {
        for (let j = 0; j < F; j++) {
          let s = 0;
          const r = (off + j) * u.dIn;
          for (let i = 0; i < u.dIn; i++) s += Math.abs(u.w[r + i]!);
          out[j] += s;
        }
      }
    }
    for (let o = 0; o < D; o++) for (let j = 0; j < F; j++) out[j] += Math.abs(x.down[o * F + j]!);
    return out;
  }
  if (!x.sq || x.sq.length !== F) throw new DsaPruneError(`${score} needs Σh² of the down projection's input (${F} values)`);
  if (score === 'wanda-sp') {
    for (let o = 0; o < D; o++) for (let j = 0; j < F; j++) out[j] += Math.abs(x.down[o * F + j]!);
    for (let j = 0; j < F; j++) out[j] *= Math.sqrt(x.sq[j]!);
    return out;
  }
  if (!x.sum || x.sum.length !== F || !(x.tokens! > 0)) throw new DsaPruneError(`flap needs Σh and the token count of the down projection's input`);
  const N = x.tokens!;
  for (let o = 0; o < D; o++) for (let j = 0; j < F; j++) out[j] += x.down[o * F + j]! * x.down[o * F + j]!;
  for (let j = 0; j < F; j++) {
    const mean = x.sum[j]! / N;
    const v = Math.max(0, x.sq[j]! / N - mean * mean);
    out[j] *= v;
  }
  return out;
}

/**
 * The `remove` lowest-scoring channels (ties broken by index), and the kept ones, both ascending.
 */
export function selectChannels(scores: Float64Array, remove: number): { keep: Int32Array; removed: Int32Array } {
  const F = scores.length;
  if (!Number.isInteger(remove) || remove < 0 || remove >= F) throw new DsaPruneError(`cannot remove ${remove} of ${F} channels (at least one must stay)`);
  const order = Array.from({ length: F }, (_, j) => j).sort((a, b) => scores[a]! - scores[b]! || a - b);
  const removed = Int32Array.from(order.slice(0, remove)).sort();
  const gone = new Uint8Array(F);
  for (const j of removed) gone[j] = 1;
  const keep = new Int32Array(F - remove);
  for (let j = 0, k = 0; j < F; j++) if (!gone[j]) keep[k++] = j;
  return { keep, removed };
}

/** FLAP bias compensation: Σ_{j ∈ removed} mean_j · W_down[:, j] (float64), length dOut. */
export function compensationBias(down: Float32Array, downOut: number, width: number, removed: ArrayLike<number>, means: Float64Array): Float64Array {
  const b = new Float64Array(downOut);
  for (let o = 0; o < downOut; o++) {
    let s = 0;
    for (let k = 0; k < removed.length; k++) {
      const j = removed[k]!;
      s += means[j]! * down[o * width + j]!;
    }
    b[o] = s;
  }
  return b;
}
