/**
 * From per-block sparsities (any allocator's answer, weighted by each block's linear parameters) to whole channels
 * removed per block, exact to one channel: the total removed is the one closest to the global target, handed out by
 * largest remainder. Refuses a share that would empty a block's MLP.
 */
import { DsaPruneError } from '../../errors.js';

export interface ChannelBlock {
  index: number;
  /** All the block's linear parameters (what `sparsity` is a fraction of). */
  params: number;
  /** FFN intermediate width F. */
  width: number;
  /** Linear parameters per channel (Σ dIn of gate/up rows + dOut of down). */
  paramsPerChannel: number;
}

/**
 * Channels to remove per block. Block b's ideal is s_b · P_b / c_b; the total is round(S · ΣP / c) when every block
 * has the same c (the usual case; otherwise the rounded sum of the ideals); floors first, then the largest fractional
 * parts get one more. Throws when a block would keep no channel.
 */
export function channelCounts(blocks: ChannelBlock[], blockSparsity: number[], sparsity: number): number[] {
  if (blockSparsity.length !== blocks.length) throw new DsaPruneError(`the allocator returned ${blockSparsity.length} block sparsities for ${blocks.length} blocks`);
  const ideal = blocks.map((b, i) => (blockSparsity[i]! * b.params) / b.paramsPerChannel);
  const c0 = blocks[0]!.paramsPerChannel;
  const sameC = blocks.every((b) => b.paramsPerChannel === c0);
  const P = blocks.reduce((a, b) => a + b.params, 0);
  const total = sameC ? Math.round((sparsity * P) / c0) : Math.round(ideal.reduce((a, x) => a + x, 0));
  const counts = ideal.map((x) => Math.floor(x + 1e-9));
  let left = total - counts.reduce((a, x) => a + x, 0);
  const order = ideal.map((x, i) => ({ i, f: x - counts[i]! })).sort((a, b) => b.f - a.f || a.i - b.i);
  for (let k = 0; left > 0 && k < order.length; k++, left--) counts[order[k]!.i]!++;
  for (let k = order.length - 1; left < 0 && k >= 0; k--) {
    const i = order[k]!.i;
    if (counts[i]! > 0) {
      counts[i]!--;
      left++;
    }
  }
  blocks.forEach((b, i) => {
    if (counts[i]! >= b.width) {
      const ffnShare = (b.width * b.paramsPerChannel) / b.params;
      throw new DsaPruneError(
        `block ${b.index}'s share ${(blockSparsity[i]! * 100).toFixed(2)}% would remove ${counts[i]} of its ${b.width} FFN channels (its FFN is ${(ffnShare * 100).toFixed(1)}% of the block's linear parameters), emptying it`,
        { hint: `Lower --sparsity, or use an allocator with a smaller spread (--lambda) so no block's share exceeds ${(ffnShare * 100).toFixed(1)}%.` },
      );
    }
  });
  return counts;
}

/** Sample standard deviation (n − 1, as torch.std) and mean of a block's scores, float64. */
function meanStd(s: Float64Array): { mean: number; std: number } {
  let m = 0;
  for (const x of s) m += x;
  m /= s.length;
  let v = 0;
  for (const x of s) v += (x - m) * (x - m);
  return { mean: m, std: Math.sqrt(v / Math.max(1, s.length - 1)) };
}

/**
 * FLAP's global standardized ranking (`prune_flap`, structure AL-AM, MLP part): channel scores z-scored within each
 * block ((s − mean) / std, std with n − 1 as torch.std), all channels of all blocks sorted ascending (ties: block, then
 * channel), the lowest `total` removed. A block is never emptied: once it is down to one channel its remaining ones are
 * skipped and the next lowest channel elsewhere is taken (`capped` lists those blocks). Throws when `total` cannot be
 * met with one channel left per block.
 */
export function flapGlobalCounts(scores: Float64Array[], total: number): { counts: number[]; capped: number[] } {
  const capacity = scores.reduce((a, s) => a + s.length - 1, 0);
  if (!Number.isInteger(total) || total < 0 || total > capacity) {
    throw new DsaPruneError(`flap-global: cannot remove ${total} FFN channels keeping one per block (at most ${capacity})`, { hint: 'Lower --sparsity.' });
  }
  const entries: { z: number; b: number; j: number }[] = [];
  scores.forEach((s, b) => {
    const { mean, std } = meanStd(s);
    for (let j = 0; j < s.length; j++) entries.push({ z: std > 0 ? (s[j]! - mean) / std : 0, b, j });
  });
  entries.sort((x, y) => x.z - y.z || x.b - y.b || x.j - y.j);
  const counts = scores.map(() => 0);
  const capped = new Set<number>();
  let left = total;
  for (const e of entries) {
    if (left === 0) break;
    if (counts[e.b]! >= scores[e.b]!.length - 1) {
      capped.add(e.b);
      continue;
    }
    counts[e.b]!++;
    left--;
  }
  return { counts, capped: [...capped].sort((a, b) => a - b) };
}
