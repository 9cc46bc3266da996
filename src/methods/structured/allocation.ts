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
