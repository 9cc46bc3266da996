/**
 * Structured head pruning on plain arrays: one score per KV group (a KV head and its nRep query heads), the groups
 * removed per block (the same count in every block: transformers.js sizes the KV cache from one config value), and
 * FLAP's bias compensation on o.
 *
 * Group g owns o's input columns c ∈ [g·nRep·d, (g+1)·nRep·d) (its query heads' outputs), q's rows with the same
 * indices, and k/v rows [g·d, (g+1)·d).
 * - `wanda-sp`, `flap`: the channel score of the o projection's input columns (`channelScores` with o as the "down"
 *   projection: Σ_o |W_o[o, c]| · ‖x_c‖, resp. Var(x_c) · ‖W_o[:, c]‖²) summed over the group's columns — what FLAP's
 *   and Wanda-sp's reference code do for heads (`W_metric.reshape(-1, head_dim).sum(1)` over o_proj's columns).
 * - `magnitude`: Σ |W| over every weight of the group (its q/k/v rows and its o columns).
 */
import { DsaPruneError } from '../../errors.js';
import { channelScores, type ChannelScore } from './scores.js';

export interface HeadGroupInput {
  kvHeads: number;
  nRep: number;
  headDim: number;
  /** o's weight [dOut × H·d] row-major. */
  o: Float32Array;
  oOut: number;
  /** q/k/v weights [rows × dIn] (magnitude); a fused qkv is passed as q = the q section rows, etc. */
  q?: Float32Array;
  k?: Float32Array;
  v?: Float32Array;
  dIn?: number;
  /** Σx², Σx of o's input (length H·d) and the token count. */
  sq?: Float64Array;
  sum?: Float64Array;
  tokens?: number;
}

/** Scores of every KV group (float64, length G); low = removed first. */
export function groupScores(score: ChannelScore, x: HeadGroupInput): Float64Array {
  const G = x.kvHeads;
  const per = x.nRep * x.headDim;
  const width = G * per;
  if (x.o.length !== x.oOut * width) throw new DsaPruneError(`groupScores: o has ${x.o.length} values, expected ${x.oOut}×${width}`);
  const out = new Float64Array(G);
  if (score === 'magnitude') {
    const rowsAbs = (w: Float32Array | undefined, r0: number, n: number): number => {
      if (!w) throw new DsaPruneError('magnitude head scores need the q, k and v weights');
      let s = 0;
      for (let i = r0 * x.dIn!; i < (r0 + n) * x.dIn!; i++) s += Math.abs(w[i]!);
      return s;
    };
    for (let g = 0; g < G; g++) {
      let s = rowsAbs(x.q, g * per, per) + rowsAbs(x.k, g * x.headDim, x.headDim) + rowsAbs(x.v, g * x.headDim, x.headDim);
      for (let r = 0; r < x.oOut; r++) for (let c = g * per; c < (g + 1) * per; c++) s += Math.abs(x.o[r * width + c]!);
      out[g] = s;
    }
    return out;
  }
  const ch = channelScores(score, {
    width, down: x.o, downOut: x.oOut, up: [],
    ...(x.sq ? { sq: x.sq } : {}), ...(x.sum ? { sum: x.sum } : {}), ...(x.tokens !== undefined ? { tokens: x.tokens } : {}),
  });
  for (let g = 0; g < G; g++) for (let c = g * per; c < (g + 1) * per; c++) out[g] += ch[c]!;
  return out;
}

/** The o input columns of the given groups (ascending), for the FLAP compensation and the zeroing. */
export function groupColumns(groups: ArrayLike<number>, nRep: number, headDim: number): Int32Array {
  const per = nRep * headDim;
  const out = new Int32Array(groups.length * per);
  let k = 0;
  for (const g of Array.from(groups).sort((a, b) => a - b)) for (let c = g * per; c < (g + 1) * per; c++) out[k++] = c;
  return out;
}

export interface HeadBudgetBlock {
  index: number;
  /** All the block's linear parameters. */
  params: number;
  kvHeads: number;
  /** Linear parameters of one KV group in this block. */
  paramsPerGroup: number;
}

/**
 * KV groups removed per block (the same in every block) for `--target heads` alone: r = round(S · ΣP / (B · c)), c the
 * parameters of one group per block — exact to one group per block (the realised sparsity is within B·c / 2 of
 * S·ΣP). Refused: per-block shares that differ (a per-block head count cannot be saved), a budget below half a group
 * per block, a count that would empty the attention, blocks with different head counts.
 */
export function headGroupCount(blocks: HeadBudgetBlock[], blockSparsity: number[], sparsity: number): number {
  const G = blocks[0]!.kvHeads;
  const c = blocks[0]!.paramsPerGroup;
  if (blocks.some((b) => b.kvHeads !== G || b.paramsPerGroup !== c)) {
    throw new DsaPruneError('the heads target needs the same attention shape in every block (KV heads and widths differ)', { code: 'unsupported', hint: 'Prune --target ffn only.' });
  }
  const s0 = blockSparsity[0]!;
  if (blockSparsity.some((s) => Math.abs(s - s0) > 1e-9)) {
    throw new DsaPruneError(
      `--target heads alone keeps the same head count in every block (transformers.js sizes the KV cache from num_key_value_heads), but the allocator gave different shares per block (${Math.min(...blockSparsity).toFixed(4)}–${Math.max(...blockSparsity).toFixed(4)})`,
      { code: 'invalid-input', hint: 'Use the uniform allocator with --target heads, or --target ffn,heads so the FFN takes the per-block differences.' },
    );
  }
  const P = blocks.reduce((a, b) => a + b.params, 0);
  const r = Math.round((sparsity * P) / (blocks.length * c));
  if (sparsity > 0 && r === 0) {
    throw new DsaPruneError(
      `sparsity ${sparsity} is below half a KV group per block: one group in each of the ${blocks.length} blocks is ${((blocks.length * c) / P * 100).toFixed(2)}% of the block parameters`,
      { code: 'invalid-input', hint: `Use --sparsity ${((blocks.length * c) / P).toFixed(4)} (one group per block) or more.` },
    );
  }
  if (r >= G) {
    throw new DsaPruneError(`sparsity ${sparsity} would remove ${r} of the ${G} KV groups of every block, emptying the attention (${(G * c / blocks[0]!.params * 100).toFixed(1)}% of a block's parameters)`, {
      code: 'invalid-input', hint: `Lower --sparsity below ${(((G - 0.5) * blocks.length * c) / P).toFixed(4)}, or add ffn to the targets.`,
    });
  }
  return r;
}

/**
 * `--target ffn,heads`: KV groups removed per block r = round(S · G) (the heads lose the global fraction S, rounded
 * to whole groups, at most G − 1), and the per-block shares the FFN must still remove so the total is S · ΣP:
 * s'_b = (s_b · P_b − r · c) / P_b, global S' = (S · ΣP − B · r · c) / ΣP. Refuses a block whose share is below
 * its heads part.
 */
export function splitHeadsBudget(blocks: HeadBudgetBlock[], blockSparsity: number[], sparsity: number): { groups: number; ffnShares: number[]; ffnSparsity: number } {
  const G = blocks[0]!.kvHeads;
  const c = blocks[0]!.paramsPerGroup;
  if (blocks.some((b) => b.kvHeads !== G || b.paramsPerGroup !== c)) {
    throw new DsaPruneError('the heads target needs the same attention shape in every block (KV heads and widths differ)', { code: 'unsupported', hint: 'Prune --target ffn only.' });
  }
  const r = Math.min(G - 1, Math.round(sparsity * G));
  const P = blocks.reduce((a, b) => a + b.params, 0);
  const ffnShares = blocks.map((b, i) => (blockSparsity[i]! * b.params - r * c) / b.params);
  ffnShares.forEach((s, i) => {
    if (s < -1e-12) {
      throw new DsaPruneError(
        `block ${blocks[i]!.index}'s share ${(blockSparsity[i]! * 100).toFixed(2)}% is smaller than its heads part (${r} KV group${r === 1 ? '' : 's'} = ${((r * c) / blocks[i]!.params * 100).toFixed(2)}% of the block)`,
        { code: 'invalid-input', hint: 'Raise --sparsity, or use an allocator with a smaller spread (--lambda), or prune --target ffn only.' },
      );
    }
  });
  return { groups: r, ffnShares: ffnShares.map((s) => Math.max(0, s)), ffnSparsity: (sparsity * P - blocks.length * r * c) / P };
}
