/**
 * Granularity `linear` (src/allocators/granularity.ts) and the exact budget counted in parameters
 * (src/budget/counts.ts): unit tests on synthetic blocks, and pruneModel on the embedded stories260k with the zeros
 * counted from the saved weights.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  apportionCounts, atGranularity, atp, dsa, exactBudget, explicit, linearUnits, owl, outlierRatio, parseAllocatorSpec, uniform,
  type AllocationInput, type BlockAllocationStats,
} from '../../src/allocators/index.js';
import { mulberry32 } from '../../src/data/text.js';
import { DsaPruneError } from '../../src/errors.js';

/** Blocks of different widths; each linear's slice of z has its own outlier rate so per-linear scores differ. */
function blocks(L: number, seed: number): BlockAllocationStats[] {
  const r = mulberry32(seed);
  return Array.from({ length: L }, (_, index) => {
    const d = 4 + 2 * (index % 3);
    const shapes: [string, 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down', number][] = [
      ['self_attn.q_proj', 'q', d * d], ['self_attn.k_proj', 'k', d * d], ['self_attn.v_proj', 'v', d * d], ['self_attn.o_proj', 'o', d * d],
      ['mlp.gate_proj', 'gate', 3 * d * d], ['mlp.up_proj', 'up', 3 * d * d], ['mlp.down_proj', 'down', 3 * d * d],
    ];
    const linears = shapes.map(([n, role, params]) => ({ name: `model.layers.${index}.${n}`, role, params }));
    const params = linears.reduce((a, l) => a + l.params, 0);
    const z = new Float32Array(params);
    let off = 0;
    for (const l of linears) {
      const spike = 0.002 + 0.05 * r();
      for (let i = 0; i < l.params; i++) z[off + i] = (r() < spike ? 40 : 1) * (0.5 + r());
      off += l.params;
    }
    return { index, params, linears, z };
  });
}
const input = (bs: BlockAllocationStats[], sparsity: number, budget: 'exact' | 'reference' = 'exact'): AllocationInput => ({ blocks: bs, sparsity, budget });
const allLinears = (bs: BlockAllocationStats[]) => bs.flatMap((b) => b.linears);

describe('apportionCounts: the exact budget in parameters', () => {
  it('sums to round(S·W), stays within bounds and within one weight of s_i·n_i (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ n: fc.integer({ min: 1, max: 5000 }), raw: fc.double({ min: -0.5, max: 1.5, noNaN: true }) }), { minLength: 1, maxLength: 60 }),
        fc.double({ min: 0.01, max: 0.95, noNaN: true }),
        (units, S) => {
          const n = units.map((u) => u.n);
          const W = n.reduce((a, b) => a + b, 0);
          // Feasible instances only (one 1-weight unit at S = 0.5 asks for 1 pruned weight where 0.99 allows 0): the
          // refusal of the others is the next test.
          fc.pre(Math.round(S * W) <= n.reduce((a, x) => a + Math.floor(0.99 * x + 1e-9), 0));
          const s = exactBudget(units.map((u) => u.raw), n, S);
          const c = apportionCounts(s, n, S);
          // "Within one weight of s_i·n_i" holds when the integer bounds leave every unit room for ceil(s_i·n_i); a
          // unit whose bound is below it (n = 1: floor(0.99) = 0) pushes its share onto the others.
          const roomy = s.every((si, i) => Math.floor(0.99 * n[i] + 1e-9) >= Math.ceil(si * n[i] - 1e-9));
          expect(c.reduce((a, b) => a + b, 0)).toBe(Math.round(S * W));
          c.forEach((ci, i) => {
            expect(Number.isInteger(ci)).toBe(true);
            expect(ci).toBeGreaterThanOrEqual(0);
            expect(ci).toBeLessThanOrEqual(Math.floor(0.99 * n[i] + 1e-9));
            if (roomy) expect(Math.abs(ci - s[i] * n[i])).toBeLessThanOrEqual(1 + 1e-9);
          });
        },
      ),
    );
  });
  it('refuses a total the bounds cannot hold', () => {
    expect(() => apportionCounts([0.99, 0.99], [1, 1], 0.99)).toThrow(DsaPruneError);
  });
});

describe('atGranularity(…, "linear")', () => {
  const bs = blocks(6, 7);
  it('splits each block vector into its linears, in the block order', () => {
    const { units, block } = linearUnits(bs);
    expect(units.length).toBe(42);
    let k = 0;
    for (let b = 0; b < bs.length; b++) {
      let off = 0;
      for (const l of bs[b].linears) {
        expect(units[k].linears[0].name).toBe(l.name);
        expect(block[k]).toBe(b);
        expect(Array.from(units[k].z)).toEqual(Array.from(bs[b].z.slice(off, off + l.params)));
        off += l.params;
        k++;
      }
    }
  });

  for (const [label, a] of [['owl', owl({ M: 5, lambda: 0.1 })], ['dsa', dsa('W:(ABSLOG)-(VAR)-(ATAN)', { lambda: 0.1 })]] as const) {
    it(`${label}: scores each linear, budget exact in integers over linears of different sizes`, () => {
      const S = 0.7;
      const res = atGranularity(a, 'linear').allocate(input(bs, S));
      const ls = allLinears(bs);
      const W = ls.reduce((x, l) => x + l.params, 0);
      const counts = ls.map((l) => Math.round(res.linearSparsity![l.name] * l.params));
      expect(counts.reduce((x, y) => x + y, 0)).toBe(Math.round(S * W));
      // Same as the allocator run directly on one-linear "blocks" built here, up to the integer step (≤ 1 weight).
      const single: BlockAllocationStats[] = [];
      for (const b of bs) {
        let off = 0;
        for (const l of b.linears) {
          single.push({ index: single.length, params: l.params, linears: [l], z: b.z.slice(off, off + l.params) });
          off += l.params;
        }
      }
      const direct = a.allocate(input(single, S)).blockSparsity;
      ls.forEach((l, i) => expect(Math.abs(res.linearSparsity![l.name] - direct[i])).toBeLessThanOrEqual(1 / l.params + 1e-12));
      // Linears of one block differ (the point of the granularity).
      const b0 = bs[0].linears.map((l) => res.linearSparsity![l.name]);
      expect(new Set(b0.map((x) => x.toFixed(6))).size).toBeGreaterThan(1);
      // Block sparsity = parameter-weighted mean of its linears.
      bs.forEach((b, bi) => {
        const m = b.linears.reduce((x, l) => x + res.linearSparsity![l.name] * l.params, 0) / b.params;
        expect(res.blockSparsity[bi]).toBeCloseTo(m, 12);
      });
      expect(Object.keys(res.linearScores!).length).toBe(ls.length);
    });
  }

  it('OWL per linear: more outliers (naive float64 ratio) → not more sparsity', () => {
    const res = atGranularity(owl({ M: 5, lambda: 0.05 }), 'linear').allocate(input(bs, 0.5));
    const ls = bs.flatMap((b) => {
      let off = 0;
      return b.linears.map((l) => {
        const z = b.z.subarray(off, off + l.params);
        off += l.params;
        let mean = 0;
        for (const x of z) mean += x;
        mean /= z.length;
        let c = 0;
        for (const x of z) if (x > 5 * mean) c++;
        return { name: l.name, n: l.params, D: (100 * c) / z.length };
      });
    });
    for (const x of ls) expect(res.linearScores![x.name]).toBeCloseTo(x.D, 12);
    expect(outlierRatio(bs[0].z.subarray(0, ls[0].n), 5)).toBeCloseTo(ls[0].D, 12);
    for (const x of ls) for (const y of ls) if (x.D > y.D) expect(res.linearSparsity![x.name]).toBeLessThanOrEqual(res.linearSparsity![y.name] + 2 / Math.min(x.n, y.n));
  });

  it('uniform and ATP have no per-linear information: every linear gets its block value', () => {
    for (const a of [uniform(), atp({ beta: 0.02 })]) {
      const blockRes = a.allocate(input(bs, 0.6));
      const res = atGranularity(a, 'linear').allocate(input(bs, 0.6));
      bs.forEach((b, bi) => b.linears.forEach((l) => expect(Math.abs(res.linearSparsity![l.name] - blockRes.blockSparsity[bi])).toBeLessThanOrEqual(1 / l.params + 1e-12)));
    }
  });

  it('explicit per-linear map by glob (API and CLI spelling): the map shape, shifted to the exact budget', () => {
    const map = { 'model.layers.*.self_attn.k_proj': 0.4, 'model.layers.*.mlp.*': 0.75 };
    const fromCli = parseAllocatorSpec('explicit:model.layers.*.self_attn.k_proj=0.4, model.layers.*.mlp.*=0.75');
    const S = 0.6;
    for (const a of [explicit(map), fromCli]) {
      const res = atGranularity(a, 'linear').allocate(input(bs, S));
      const ls = allLinears(bs);
      // Independent: raw value per linear from the globs, one common shift c solves Σ n_i (raw_i + c) = S·W (no clamp here).
      const raw = ls.map((l) => (l.name.includes('.mlp.') ? 0.75 : l.name.endsWith('k_proj') ? 0.4 : S));
      const W = ls.reduce((x, l) => x + l.params, 0);
      const c = (S * W - ls.reduce((x, l, i) => x + l.params * raw[i], 0)) / W;
      ls.forEach((l, i) => expect(Math.abs(res.linearSparsity![l.name] - (raw[i] + c))).toBeLessThanOrEqual(1 / l.params + 1e-12));
      expect(ls.reduce((x, l) => x + Math.round(res.linearSparsity![l.name] * l.params), 0)).toBe(Math.round(S * W));
    }
    expect(() => parseAllocatorSpec('explicit:*.k_proj=abc')).toThrow(/not <name or glob>=<sparsity>/);
  });

  it('block granularity leaves the allocator unchanged; a bad granularity is refused', () => {
    const a = owl();
    expect(atGranularity(a, 'block')).toBe(a);
    expect(() => atGranularity(a, 'row' as never)).toThrow(/granularity must be 'block' or 'linear'/);
  });
});

const repo = path.resolve(import.meta.dirname, '../..');
const modelDir = path.join(repo, 'models/stories260k');

describe('pruneModel at linear granularity (embedded stories260k)', () => {
  it('OWL per linear and an explicit glob map prune exactly round(S·W) weights, counted from the saved weights', async () => {
    const { AutoModelForCausalLM, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    await import('../../src/index.js');
    const { pruneModel, savePruned } = await import('../../src/index.js');
    const { readModelFile, tensorToFloat32 } = await import('../../src/model/onnx.js');
    const { discoverLinears } = await import('../../src/model/index.js');
    const calibration = readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8');
    const out = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-gran-'));
    try {
      for (const [name, allocator] of [['owl', owl({ M: 5, lambda: 0.1 })], ['map', explicit({ 'model.layers.*.self_attn.k_proj': 0.4, 'model.layers.*.mlp.down_proj': 0.8 })]] as const) {
        const S = 0.7;
        const model = await AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' });
        const report = await pruneModel(model, { method: 'wanda', sparsity: S, allocator, granularity: 'linear', calibration, nsamples: 8, seqlen: 128 });
        await savePruned(model, path.join(out, name));
        const proto = readModelFile(path.join(out, name, 'onnx/model.onnx'));
        const { linears } = discoverLinears(proto.graph);
        const inits = new Map(proto.graph.initializer.map((t) => [t.name, t]));
        let zeros = 0;
        let params = 0;
        const perLinear = new Map<string, number>();
        for (const l of linears) {
          if (l.role === 'lm_head') continue;
          const w = tensorToFloat32(inits.get(l.weight)!);
          let z = 0;
          for (let i = 0; i < w.length; i++) if (w[i] === 0) z++;
          perLinear.set(l.name, z / w.length);
          zeros += z;
          params += w.length;
        }
        expect(zeros).toBe(Math.round(S * params));
        // Targets per linear differ inside a block and are realised linear by linear.
        for (const r of report.linears) expect(Math.abs(perLinear.get(r.name)! - r.target)).toBeLessThan(1e-9);
        const b0 = report.linears.filter((r) => r.block === 0).map((r) => r.target.toFixed(4));
        expect(new Set(b0).size).toBeGreaterThan(1);
        if (name === 'map') {
          const k = report.linears.find((r) => r.name.endsWith('layers.0.self_attn.k_proj'))!;
          const d = report.linears.find((r) => r.name.endsWith('layers.0.mlp.down_proj'))!;
          const q = report.linears.find((r) => r.name.endsWith('layers.0.self_attn.q_proj'))!;
          // Common shift: down − k = 0.4 and q − k = S − 0.4 (within one weight of rounding each).
          expect(d.target - k.target).toBeCloseTo(0.4, 2);
          expect(q.target - k.target).toBeCloseTo(S - 0.4, 2);
        }
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 600_000);
});
