/** The one resolver of per-linear sparsity (src/allocators/resolve.ts) and its users. */
import { describe, expect, it } from 'vitest';
import { explicit, nonUniform, resolveLinearSparsity, resolveLinearSparsities, uniform } from '../../src/allocators/index.js';
import { DsaPruneError } from '../../src/errors.js';

function thrown(f: () => unknown): DsaPruneError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DsaPruneError);
    return e as DsaPruneError;
  }
  throw new Error('expected a DsaPruneError');
}

describe('resolveLinearSparsity', () => {
  const alloc = { blockSparsity: [0.4, 0.6], linearSparsity: { 'model.layers.1.mlp.down_proj': 0.8, lm_head: 0.3 } };
  it('per-linear entry, else the block, else (outside the blocks) the given global target', () => {
    expect(resolveLinearSparsity(alloc, { name: 'model.layers.1.mlp.down_proj', block: 1 })).toBe(0.8);
    expect(resolveLinearSparsity(alloc, { name: 'model.layers.1.mlp.up_proj', block: 1 })).toBe(0.6);
    expect(resolveLinearSparsity(alloc, { name: 'model.layers.0.mlp.up_proj', block: 0 })).toBe(0.4);
    expect(resolveLinearSparsity(alloc, { name: 'lm_head', block: -1 })).toBe(0.3);
    expect(resolveLinearSparsity({ blockSparsity: [0.4] }, { name: 'lm_head', block: -1 }, { outside: 0.5 })).toBe(0.5);
    expect(resolveLinearSparsities(alloc, [{ name: 'a', block: 0 }, { name: 'b', block: 1 }])).toEqual([0.4, 0.6]);
  });
  it('never falls back silently: a missing block, a linear outside the blocks without a target, a bad value', () => {
    const e = thrown(() => resolveLinearSparsity({ blockSparsity: [0.5] }, { name: 'model.layers.3.mlp.up_proj', block: 3 }, { outside: 0.5, allocator: 'owl' }));
    expect(e.message).toMatch(/owl allocated 1 blocks; model\.layers\.3\.mlp\.up_proj is in block 3/);
    expect(thrown(() => resolveLinearSparsity({ blockSparsity: [0.5] }, { name: 'lm_head', block: -1 })).message).toMatch(/outside the decoder blocks/);
    expect(thrown(() => resolveLinearSparsity({ blockSparsity: [Number.NaN] }, { name: 'x', block: 0 })).message).toMatch(/outside \[0, 1\]/);
    expect(thrown(() => resolveLinearSparsity({ blockSparsity: [0.5], linearSparsity: { x: 1.5 } }, { name: 'x', block: 0 })).message).toMatch(/1\.5/);
  });
  it('nonUniform.sparsityFor is the resolver', () => {
    const nu = nonUniform({ name: 'wanda', needs: { sq: true, gram: false } }, explicit({ '*.down_proj': 0.3 }));
    const input = {
      sparsity: 0.5, budget: 'reference' as const,
      blocks: [0, 1].map((index) => ({ index, params: 2, z: new Float32Array(0), linears: ['up_proj', 'down_proj'].map((n) => ({ name: `model.layers.${index}.mlp.${n}`, role: 'up' as const, params: 1 })) })),
    };
    const a = nu.allocate(input);
    for (const l of [{ name: 'model.layers.1.mlp.down_proj', block: 1 }, { name: 'model.layers.0.mlp.up_proj', block: 0 }]) {
      expect(nu.sparsityFor(a, l)).toBe(resolveLinearSparsity(a, l));
    }
    const u = nonUniform({ name: 'wanda', needs: { sq: true, gram: false } }, uniform()).allocate(input);
    expect(nonUniform({ name: 'wanda', needs: { sq: true, gram: false } }, uniform()).sparsityFor(u, { name: 'lm_head', block: -1 }, 0.5)).toBe(0.5);
  });
});
