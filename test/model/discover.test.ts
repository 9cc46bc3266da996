/**
 * Discovery of prunable linears on every exporter layout in ../shared/models/layouts (asserted against layouts.json,
 * the exporter's own list), the two Llama fixtures, and builder fixtures (genai naming, fused, subgraphs, anonymous
 * graphs, quantized ops).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { discoverLinears, fusedParts } from '../../src/model/discover.js';
import { blockOfNode, planGraph } from '../../src/calibration/graph.js';
import { cloneGraph, readModelFile } from '../../src/model/onnx.js';
import { DsaPruneError } from '../../src/errors.js';
import { buildToyDecoder } from '../fixtures/graphs.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const shared = path.resolve(repoRoot, '../shared');
const layoutsDir = path.join(shared, 'models/layouts');
const haveShared = existsSync(path.join(layoutsDir, 'layouts.json'));
if (!haveShared) console.warn(`skipping layout tests: ${layoutsDir}/layouts.json not found (../shared is absent)`);

/** Role of a node from its torch module name, written out per architecture (the test's own table). */
const EXPECTED_ROLE: Record<string, string> = {
  q_proj: 'q', k_proj: 'k', v_proj: 'v', o_proj: 'o', out_proj: 'o', qkv_proj: 'qkv',
  gate_proj: 'gate', up_proj: 'up', down_proj: 'down', gate_up_proj: 'gate_up',
  'attn/c_attn': 'qkv', 'attn/c_proj': 'o', 'mlp/c_fc': 'up', 'mlp/c_proj': 'down', fc1: 'up', fc2: 'down',
};
function expectedRole(node: string): string {
  const segs = node.split('/').filter(Boolean);
  const proj = segs[segs.length - 2];
  const parent = segs[segs.length - 3];
  return EXPECTED_ROLE[`${parent}/${proj}`] ?? EXPECTED_ROLE[proj];
}

type Entry = [op: string, node: string, weight: string, shape: [number, number]];
const layouts: Record<string, { weight_matmuls: Entry[] }> = haveShared
  ? JSON.parse(readFileSync(path.join(layoutsDir, 'layouts.json'), 'utf8'))
  : {};

describe.skipIf(!haveShared)('layouts in ../shared/models/layouts', () => {
  for (const name of Object.keys(layouts)) {
    it(`${name}: the calibration's graph split reads block numbers as discovery does`, () => {
      const dir = path.join(layoutsDir, name);
      const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, number>;
      const proto = readModelFile(path.join(dir, 'onnx/model.onnx'));
      const found = discoverLinears(proto.graph, { config, includeLmHead: true });
      // Every linear's node lands in the block discovery gave it (lm_head: -1), and the plan has that many blocks.
      for (const l of found.linears) expect(blockOfNode(l.node), l.node).toBe(l.block);
      const plan = planGraph(proto, found.linears);
      expect(plan.nBlocks).toBe(found.blocks);
    });

    it(`${name}: every weight MatMul/Gemm of layouts.json is found with block, role, shape and parts`, () => {
      const dir = path.join(layoutsDir, name);
      const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, number>;
      const graph = readModelFile(path.join(dir, 'onnx/model.onnx')).graph;
      const found = discoverLinears(graph, { config, includeLmHead: true });
      const entries = layouts[name].weight_matmuls;
      expect(found.linears.length).toBe(entries.length);
      const nLayers = config.num_hidden_layers ?? config.n_layer;
      expect(found.blocks).toBe(nLayers);

      for (const [op, node, weight, shape] of entries) {
        const l = found.linears.find((x) => x.node === node);
        expect(l, node).toBeDefined();
        expect(l!.weight).toBe(weight);
        // README: OPT's Gemm weights are stored [out, in] (transB=1); MatMul and GPT-2's Conv1D Gemm are [in, out].
        const outIn = op === 'Gemm' && name === 'opt';
        expect([l!.dIn, l!.dOut]).toEqual(outIn ? [shape[1], shape[0]] : shape);
        if (node.startsWith('/lm_head')) {
          expect(l!.block).toBe(-1);
          expect(l!.role).toBe('lm_head');
          continue;
        }
        const m = /(?:layers|h)\.(\d+)\//.exec(node);
        expect(l!.block).toBe(Number(m![1]));
        expect(l!.role).toBe(expectedRole(node));
      }

      // Fused projections: q/k/v sizes from the heads in config.json, gate/up halves.
      const hidden = config.hidden_size ?? config.n_embd;
      const heads = config.num_attention_heads ?? config.n_head;
      const hd = config.head_dim ?? hidden / heads;
      const kvHeads = config.num_key_value_heads ?? heads;
      for (const l of found.linears) {
        if (l.role === 'qkv') {
          const q = heads * hd;
          const kv = kvHeads * hd;
          expect(l.parts).toEqual([
            { role: 'q', start: 0, end: q }, { role: 'k', start: q, end: q + kv }, { role: 'v', start: q + kv, end: q + 2 * kv },
          ]);
        } else if (l.role === 'gate_up') {
          expect(l.parts).toEqual([{ role: 'gate', start: 0, end: config.intermediate_size }, { role: 'up', start: config.intermediate_size, end: 2 * config.intermediate_size }]);
        } else expect(l.parts).toBeUndefined();
      }

      // lm_head (tied or not) is excluded by default.
      const dflt = discoverLinears(graph, { config });
      expect(dflt.linears.length).toBe(entries.length - entries.filter((e) => e[1].startsWith('/lm_head')).length);
      expect(dflt.linears.every((l) => l.block >= 0)).toBe(true);
    });
  }

  it('qwen2: the q/k/v biases (Add after the MatMul) are not linears and stay untouched', () => {
    const graph = readModelFile(path.join(layoutsDir, 'qwen2/onnx/model.onnx')).graph;
    const found = discoverLinears(graph);
    const biasAdds = graph.node.filter((n) => n.op_type === 'Add' && /[qkv]_proj\/Add$/.test(n.name ?? ''));
    expect(biasAdds.length).toBeGreaterThan(0);
    const weights = new Set(found.linears.map((l) => l.weight));
    for (const a of biasAdds) for (const i of a.input) expect(weights.has(i)).toBe(false);
  });

  it('llama-hf with node names and weight names stripped: the topology fallback gives the same blocks and roles', () => {
    const graph = cloneGraph(readModelFile(path.join(layoutsDir, 'llama-hf/onnx/model.onnx')).graph);
    const named = discoverLinears(graph);
    for (const n of graph.node) n.name = '';
    const anon = discoverLinears(graph, { config: { vocab_size: 512, hidden_size: 64 } });
    expect(anon.topologyFallback).toBe(true);
    expect(anon.blocks).toBe(2);
    const expected = layouts['llama-hf'].weight_matmuls.filter((e) => !e[1].startsWith('/lm_head'));
    expect(anon.linears.map((l) => [l.weight, l.block, l.role])).toEqual(
      expected.map(([, node, weight]) => [weight, Number(/layers\.(\d+)/.exec(node)![1]), expectedRole(node)]),
    );
    expect(anon.linears.map((l) => l.weight)).toEqual(named.linears.map((l) => l.weight));
  });
});

describe.skipIf(!haveShared)('Llama fixtures', () => {
  for (const [dir, count, blocks] of [
    [path.join(repoRoot, 'models/stories260k'), 35, 5],
    [path.join(shared, 'models/bench-12l'), 84, 12],
  ] as const) {
    it(`${path.basename(dir)}: ${count} linears in ${blocks} blocks with the shapes of config.json`, () => {
      const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, number>;
      const found = discoverLinears(readModelFile(path.join(dir, 'onnx/model.onnx')).graph, { config });
      expect(found.linears.length).toBe(count);
      expect(found.blocks).toBe(blocks);
      const h = config.hidden_size;
      const hd = config.head_dim ?? h / config.num_attention_heads;
      const shapes: Record<string, [number, number]> = {
        q: [h, config.num_attention_heads * hd], k: [h, config.num_key_value_heads * hd], v: [h, config.num_key_value_heads * hd],
        o: [config.num_attention_heads * hd, h], gate: [h, config.intermediate_size], up: [h, config.intermediate_size], down: [config.intermediate_size, h],
      };
      for (let b = 0; b < blocks; b++) {
        const ls = found.linears.filter((l) => l.block === b);
        expect(ls.map((l) => l.role)).toEqual(['q', 'k', 'v', 'o', 'gate', 'up', 'down']);
        for (const l of ls) {
          expect([l.dIn, l.dOut]).toEqual(shapes[l.role]);
          expect(l.dtype).toBe('float32');
          expect(l.node).toMatch(new RegExp(`^/model/layers\\.${b}/(self_attn|mlp)/${l.role}_proj/MatMul$`));
        }
      }
    });
  }
});

describe('builder fixtures', () => {
  const cases = [
    { label: 'optimum names', opts: {} },
    { label: 'onnxruntime-genai names, fused qkv / gate_up, contrib ops', opts: { naming: 'genai' as const, fused: true, contribOps: true } },
    { label: 'fp16 weights', opts: { dtype: 'float16' as const } },
    { label: 'linears inside If subgraphs (decoder_model_merged)', opts: { subgraph: true } },
    { label: 'no names at all (topology fallback)', opts: { naming: 'none' as const } },
    { label: 'no names, fused', opts: { naming: 'none' as const, fused: true } },
  ];
  for (const { label, opts } of cases) {
    it(label, () => {
      const toy = buildToyDecoder({ blocks: 3, ...opts });
      const found = discoverLinears(toy.model.graph, { config: toy.config });
      expect(found.blocks).toBe(3);
      expect(found.linears.map((l) => [l.block, l.role, l.weight, l.dIn, l.dOut, l.node])).toEqual(
        toy.linears.map((t) => [t.block, t.role, t.weight, t.dIn, t.dOut, t.node]),
      );
      for (const l of found.linears) expect(l.dtype).toBe(opts.dtype ?? 'float32');
      if (opts.fused) {
        const h = toy.config.hidden_size as number;
        const inter = toy.config.intermediate_size as number;
        expect(found.linears.find((l) => l.role === 'qkv')!.parts).toEqual([
          { role: 'q', start: 0, end: h }, { role: 'k', start: h, end: 2 * h }, { role: 'v', start: 2 * h, end: 3 * h },
        ]);
        expect(found.linears.find((l) => l.role === 'gate_up')!.parts).toEqual([
          { role: 'gate', start: 0, end: inter }, { role: 'up', start: inter, end: 2 * inter },
        ]);
      }
      if (opts.naming === 'genai') expect(found.linears[0].name).toBe('model.layers.0.attn.qkv_proj');
    });
  }

  for (const q of ['MatMulNBits', 'DequantizeLinear', 'MatMulInteger', 'QLinearMatMul'] as const) {
    it(`quantized graph (${q}): a clear error naming the layer and pointing to prune-then-quantize`, () => {
      const toy = buildToyDecoder({ quantized: q });
      let err: unknown;
      try {
        discoverLinears(toy.model.graph, { config: toy.config });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DsaPruneError);
      const e = err as DsaPruneError;
      expect(e.message).toContain('/model/layers.0/self_attn/q_proj/MatMul');
      expect(e.message).toMatch(/quantized/);
      expect(e.hint).toMatch(/prune-then-quantize/);
    });
  }
});

describe('fused parts from config', () => {
  it('grouped-query qkv: q = heads·head_dim, k = v = kv_heads·head_dim; equal thirds when config is silent', () => {
    // Qwen2-style GQA: 8 heads of 8, 2 KV heads → 64 + 16 + 16 rows.
    expect(fusedParts('qkv', 96, { hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 2 })).toEqual([
      { role: 'q', start: 0, end: 64 }, { role: 'k', start: 64, end: 80 }, { role: 'v', start: 80, end: 96 },
    ]);
    // Falcon-style multi-query: one KV head.
    expect(fusedParts('qkv', 80, { hidden_size: 64, num_attention_heads: 8, multi_query: true })).toEqual([
      { role: 'q', start: 0, end: 64 }, { role: 'k', start: 64, end: 72 }, { role: 'v', start: 72, end: 80 },
    ]);
    expect(fusedParts('qkv', 192, undefined)).toEqual([
      { role: 'q', start: 0, end: 64 }, { role: 'k', start: 64, end: 128 }, { role: 'v', start: 128, end: 192 },
    ]);
    expect(fusedParts('qkv', 100, { hidden_size: 64, num_attention_heads: 8 })).toBeUndefined();
    expect(fusedParts('gate_up', 10, {})).toEqual([{ role: 'gate', start: 0, end: 5 }, { role: 'up', start: 5, end: 10 }]);
    expect(fusedParts('down', 10, {})).toBeUndefined();
  });
});
