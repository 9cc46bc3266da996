/**
 * Discovery of the prunable linear layers of a causal-LM ONNX graph: MatMul / Gemm nodes whose weight operand is a
 * 2-D float initializer, grouped by decoder block and named by role from the node scopes, with a fallback on the graph
 * topology when the names carry no scope.
 */
import { DsaPruneError } from '../errors.js';
import type { LinearInfo, LinearPart, LinearRole } from '../types.js';
import { DataType, attrInt, tensorDims, toNumber, type GraphProto, type NodeProto, type TensorProto } from './onnx.js';

/** How a weight is stored: MatMul B and Gemm without transB are [in, out]; Gemm with transB=1 is [out, in]. */
export type WeightLayout = 'in_out' | 'out_in';

export interface DiscoverOptions {
  /** Also return lm_head (block -1, role 'lm_head'); excluded by default because it is often tied to the embeddings. */
  includeLmHead?: boolean;
  /** config.json, for the q/k/v sizes of fused projections (num_attention_heads, num_key_value_heads, head_dim). */
  config?: Record<string, unknown>;
}

export interface Discovery {
  linears: LinearInfo[];
  /** Number of decoder blocks (max block index + 1). */
  blocks: number;
  /** Storage layout of each linear's initializer, by linear name. */
  layout: Map<string, WeightLayout>;
  /** True when blocks and roles came from the graph topology because the node names carry no scope. */
  topologyFallback: boolean;
}

/** Ops that mean the weights are quantized: pruning them in place is not supported. */
const QUANTIZED_OPS = new Set([
  'MatMulNBits', 'MatMulInteger', 'QLinearMatMul', 'DynamicQuantizeMatMul', 'MatMulIntegerToFloat',
  'GatherBlockQuantized', 'QGemm', 'MatMulBnb4', 'MatMulFpQ4', 'QMoE',
]);

const ROLE_TOKENS: Record<string, LinearRole> = {
  q_proj: 'q', query: 'q', q: 'q', wq: 'q',
  k_proj: 'k', key: 'k', k: 'k', wk: 'k',
  v_proj: 'v', value: 'v', v: 'v', wv: 'v',
  o_proj: 'o', out_proj: 'o', wo: 'o', o: 'o',
  qkv_proj: 'qkv', c_attn: 'qkv', query_key_value: 'qkv', wqkv: 'qkv', qkv: 'qkv',
  gate_proj: 'gate', w1: 'gate',
  up_proj: 'up', c_fc: 'up', fc1: 'up', fc_in: 'up', dense_h_to_4h: 'up', w3: 'up',
  down_proj: 'down', fc2: 'down', fc_out: 'down', dense_4h_to_h: 'down', w2: 'down',
  gate_up_proj: 'gate_up',
  lm_head: 'lm_head',
};
const ATTN_SCOPES = new Set(['attn', 'self_attn', 'attention', 'self_attention', 'selfattention']);
const MLP_SCOPES = new Set(['mlp', 'feed_forward', 'ffn', 'feedforward']);
const BLOCK_RE = /(?:^|[/.])(?:layers|layer|h|blocks|block|decoder_layers)[._](\d+)(?=[/.]|$)/;

interface Candidate {
  node: NodeProto;
  weight: TensorProto;
  layout: WeightLayout;
  dIn: number;
  dOut: number;
  order: number;
  /** Activation input (to group projections that read the same tensor in the topology fallback). */
  input: string;
}

/** Map from tensor name to the node producing it, across a graph and its subgraphs. */
function walkGraphs(g: GraphProto, visit: (g: GraphProto, depth: number) => void, depth = 0): void {
  visit(g, depth);
  for (const n of g.node) {
    for (const a of n.attribute ?? []) {
      if (a.g) walkGraphs(a.g, visit, depth + 1);
      for (const sg of a.graphs ?? []) walkGraphs(sg, visit, depth + 1);
    }
  }
}

function tokens(s: string): string[] {
  return s.split(/[/.]/).filter(Boolean);
}

/** Stable linear name from the node scope (`/model/layers.3/mlp/down_proj/MatMul` → `model.layers.3.mlp.down_proj`). */
export function linearNameFromNode(nodeName: string): string {
  const segs = nodeName.split('/').filter(Boolean);
  if (segs.length > 1) segs.pop(); // the op itself (MatMul, Gemm, MatMul_1)
  return segs.join('.');
}

/** Linear name from a weight initializer name (`model.layers.0.attn.qkv_proj.MatMul.weight` → `model.layers.0.attn.qkv_proj`). */
function linearNameFromWeight(w: string): string {
  return w.replace(/\.weight$/, '').replace(/\.(MatMul|Gemm)$/, '');
}

/**
 * Decoder block of a scope string (node name or weight name), or −1: the one place block numbers are read from names
 * (discovery and the calibration's graph split both use it).
 */
export function blockOfScope(scope: string | undefined): number {
  const m = BLOCK_RE.exec(scope ?? '');
  return m ? Number(m[1]) : -1;
}

/** Block index and role from a scope string (node name or weight name). */
export function parseScope(scope: string): { block?: number; role?: LinearRole } {
  const m = BLOCK_RE.exec(scope);
  const block = m ? Number(m[1]) : undefined;
  const toks = tokens(scope).map((t) => t.toLowerCase());
  let role: LinearRole | undefined;
  // Scan from the end for the first token naming a projection; its parent scope disambiguates c_proj / dense.
  for (let i = toks.length - 1; i >= 0; i--) {
    const t = toks[i];
    const parent = toks.slice(0, i);
    const inAttn = parent.some((p) => ATTN_SCOPES.has(p));
    const inMlp = parent.some((p) => MLP_SCOPES.has(p));
    if (t === 'c_proj' || t === 'dense' || t === 'proj') {
      if (inAttn) role = 'o';
      else if (inMlp) role = 'down';
      else continue;
      break;
    }
    const r = ROLE_TOKENS[t];
    if (r && (t.length > 1 || inAttn)) {
      role = r;
      break;
    }
  }
  return { block, role };
}

/** Resolve a tensor name through Identity / Cast nodes to an initializer; also accept Transpose(perm=[1,0]) of one. */
function resolveWeight(
  name: string,
  inits: Map<string, TensorProto>,
  producers: Map<string, NodeProto>,
): { t: TensorProto; transposed: boolean } | undefined {
  let cur = name;
  let transposed = false;
  for (let hop = 0; hop < 4; hop++) {
    const t = inits.get(cur);
    if (t) return { t, transposed };
    const p = producers.get(cur);
    if (!p) return undefined;
    if (p.op_type === 'Identity' || p.op_type === 'Cast') cur = p.input[0]; // Cast: fp16 weights upcast for an fp32 MatMul
    else if (p.op_type === 'Transpose' && !transposed) {
      const perm = p.attribute.find((a) => a.name === 'perm')?.ints?.map(toNumber);
      if (perm && !(perm.length === 2 && perm[0] === 1 && perm[1] === 0)) return undefined;
      transposed = true;
      cur = p.input[0];
    } else return undefined;
  }
  return undefined;
}

function numberOf(config: Record<string, unknown> | undefined, ...keys: string[]): number | undefined {
  if (!config) return undefined;
  for (const k of keys) {
    const v = config[k];
    if (typeof v === 'number' && Number.isFinite(v) && v > 0) return v;
  }
  return undefined;
}

/** Logical parts of a fused projection, as row ranges of W [dOut × dIn]. */
export function fusedParts(role: LinearRole, dOut: number, config?: Record<string, unknown>): LinearPart[] | undefined {
  if (role === 'gate_up') {
    if (dOut % 2 !== 0) return undefined;
    return [{ role: 'gate', start: 0, end: dOut / 2 }, { role: 'up', start: dOut / 2, end: dOut }];
  }
  if (role !== 'qkv') return undefined;
  const hidden = numberOf(config, 'hidden_size', 'n_embd', 'd_model');
  const heads = numberOf(config, 'num_attention_heads', 'n_head', 'num_heads');
  let q: number | undefined;
  let kv: number | undefined;
  if (heads) {
    const kvHeads = config?.multi_query === true ? 1 : numberOf(config, 'num_key_value_heads', 'n_head_kv', 'num_kv_heads') ?? heads;
    const hd = numberOf(config, 'head_dim') ?? (hidden ? hidden / heads : undefined);
    if (hd && Number.isInteger(hd)) {
      q = heads * hd;
      kv = kvHeads * hd;
    }
  }
  if (q === undefined || kv === undefined || q + 2 * kv !== dOut) {
    if (dOut % 3 !== 0) return undefined;
    q = kv = dOut / 3;
  }
  return [
    { role: 'q', start: 0, end: q },
    { role: 'k', start: q, end: q + kv },
    { role: 'v', start: q + kv, end: q + 2 * kv },
  ];
}

function quantizedError(n: NodeProto): DsaPruneError {
  const where = n.name ? `layer ${n.name}` : `a ${n.op_type} node`;
  return new DsaPruneError(`${where} uses quantized weights (${n.op_type}); dsa-prune cannot prune a quantized model`, {
    hint: 'Prune the float32 or float16 export (onnx/model.onnx or model_fp16.onnx), then quantize the pruned model (prune-then-quantize).',
  });
}

/**
 * Find the prunable linears of a causal-LM graph (and of its If/Loop subgraphs).
 * Throws DsaPruneError for quantized graphs and for float weights of an unsupported type.
 */
export function discoverLinears(graph: GraphProto, opts: DiscoverOptions = {}): Discovery {
  const inits = new Map<string, TensorProto>();
  const producers = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  const ordered: NodeProto[] = [];
  walkGraphs(graph, (g) => {
    for (const t of g.initializer ?? []) if (t.name) inits.set(t.name, t);
    for (const n of g.node) {
      ordered.push(n);
      for (const o of n.output) producers.set(o, n);
      for (const i of n.input) {
        const list = consumers.get(i);
        if (list) list.push(n);
        else consumers.set(i, [n]);
      }
    }
  });

  const candidates: Candidate[] = [];
  const seenWeights = new Set<string>();
  for (let order = 0; order < ordered.length; order++) {
    const n = ordered[order];
    const op = n.op_type ?? '';
    if (QUANTIZED_OPS.has(op)) throw quantizedError(n);
    if (op === 'DequantizeLinear' && inits.has(n.input[0])) {
      const feedsLinear = (consumers.get(n.output[0]) ?? []).some((c) => c.op_type === 'MatMul' || c.op_type === 'Gemm');
      if (feedsLinear) throw quantizedError(n);
    }
    if (op !== 'MatMul' && op !== 'Gemm') continue;
    if (n.input.length < 2) continue;
    const r = resolveWeight(n.input[1], inits, producers);
    if (!r) continue;
    const dims = tensorDims(r.t);
    if (dims.length !== 2) continue;
    const dt = r.t.data_type ?? 0;
    if (dt !== DataType.FLOAT && dt !== DataType.FLOAT16) {
      if (dt === DataType.INT8 || dt === DataType.UINT8) throw quantizedError(n);
      throw new DsaPruneError(`layer ${n.name || r.t.name}: weight ${r.t.name} has ONNX data type ${dt}; only float32 and float16 weights can be pruned`, {
        hint: 'Export the model in float32 or float16.',
      });
    }
    if (op === 'Gemm' && attrInt(n, 'transA', 0) !== 0) continue;
    let outIn = op === 'Gemm' && attrInt(n, 'transB', 0) === 1;
    if (r.transposed) outIn = !outIn;
    const [a, b] = dims;
    const layout: WeightLayout = outIn ? 'out_in' : 'in_out';
    const dIn = outIn ? b : a;
    const dOut = outIn ? a : b;
    if (seenWeights.has(r.t.name!)) continue; // the same weight in both branches of a merged decoder
    seenWeights.add(r.t.name!);
    candidates.push({ node: n, weight: r.t, layout, dIn, dOut, order, input: n.input[0] });
  }

  const vocab = numberOf(opts.config, 'vocab_size');
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name));
  const lastOrder = candidates.reduce((m, x) => Math.max(m, x.order), -1);
  const isLmHead = (c: Candidate): boolean => {
    const s = `${c.node.name ?? ''} ${c.weight.name ?? ''}`.toLowerCase();
    if (s.includes('lm_head') || s.includes('embed_out')) return true;
    if (c.order === lastOrder) {
      if (vocab !== undefined && c.dOut === vocab) return true;
      if (c.node.output.some((o) => graphOutputs.has(o))) return true;
    }
    return false;
  };

  const parsed = candidates.map((c) => {
    const byNode = parseScope(c.node.name ?? '');
    const byWeight = parseScope(c.weight.name ?? '');
    return {
      c,
      block: byNode.block ?? byWeight.block,
      role: byNode.role ?? byWeight.role,
      lm: isLmHead(c),
    };
  });
  const named = parsed.some((p) => p.block !== undefined && !p.lm);

  const linears: LinearInfo[] = [];
  const layout = new Map<string, WeightLayout>();
  const add = (c: Candidate, name: string, block: number, role: LinearRole): void => {
    const dtype = c.weight.data_type === DataType.FLOAT16 ? 'float16' : 'float32';
    const parts = fusedParts(role, c.dOut, opts.config);
    let unique = name;
    for (let k = 2; layout.has(unique); k++) unique = `${name}#${k}`;
    linears.push({
      name: unique, block, role, dIn: c.dIn, dOut: c.dOut, dtype, node: c.node.name ?? '', weight: c.weight.name!,
      ...(parts ? { parts } : {}),
    });
    layout.set(unique, c.layout);
  };
  const nameOf = (c: Candidate): string =>
    c.node.name && c.node.name.includes('/') ? linearNameFromNode(c.node.name) : linearNameFromWeight(c.weight.name ?? '');

  let topologyFallback = false;
  if (named) {
    for (const p of parsed) {
      if (p.lm) {
        if (opts.includeLmHead) add(p.c, 'lm_head', -1, 'lm_head');
        continue;
      }
      if (p.block === undefined) continue; // outside the blocks (projections of the embeddings, …)
      add(p.c, nameOf(p.c), p.block, p.role ?? 'other');
    }
  } else {
    topologyFallback = true;
    const body = parsed.filter((p) => !p.lm).map((p) => p.c);
    for (const t of assignByTopology(body, opts.config)) add(t.c, `layers.${t.block}.${t.role}`, t.block, t.role);
    if (opts.includeLmHead) for (const p of parsed) if (p.lm) add(p.c, 'lm_head', -1, 'lm_head');
  }

  const key = (b: number): number => (b < 0 ? Number.MAX_SAFE_INTEGER : b);
  linears.sort((x, y) => key(x.block) - key(y.block)); // stable: graph order within a block
  const blocks = linears.reduce((m, l) => Math.max(m, l.block + 1), 0);
  return { linears, blocks, layout, topologyFallback };
}

/**
 * Roles and blocks from the graph alone: consecutive linears reading the same tensor form a group; a decoder block is
 * [attention input group (q,k,v or fused qkv)] → o → [mlp input group (gate,up / up / fused gate_up)] → down.
 */
function assignByTopology(cands: Candidate[], config?: Record<string, unknown>): { c: Candidate; block: number; role: LinearRole }[] {
  const groups: Candidate[][] = [];
  for (const c of cands) {
    const last = groups[groups.length - 1];
    if (last && last[0].input === c.input) last.push(c);
    else groups.push([c]);
  }
  const hidden = numberOf(config, 'hidden_size', 'n_embd', 'd_model');
  const out: { c: Candidate; block: number; role: LinearRole }[] = [];
  let block = 0;
  let state: 'attn_in' | 'o' | 'mlp_in' | 'down' = 'attn_in';
  for (const g of groups) {
    switch (state) {
      case 'attn_in': {
        if (g.length >= 3) {
          const roles: LinearRole[] = ['q', 'k', 'v'];
          g.forEach((c, i) => out.push({ c, block, role: roles[i] ?? 'other' }));
        } else {
          g.forEach((c) => out.push({ c, block, role: g.length === 1 ? 'qkv' : 'other' }));
        }
        state = 'o';
        break;
      }
      case 'o':
        g.forEach((c) => out.push({ c, block, role: 'o' }));
        state = 'mlp_in';
        break;
      case 'mlp_in': {
        if (g.length === 2) {
          out.push({ c: g[0], block, role: 'gate' }, { c: g[1], block, role: 'up' });
        } else if (g.length === 1) {
          const c = g[0];
          const fused = hidden !== undefined && c.dOut % 2 === 0 && c.dOut / 2 !== hidden && config?.model_type === 'phi3';
          out.push({ c, block, role: fused ? 'gate_up' : 'up' });
        } else g.forEach((c) => out.push({ c, block, role: 'other' }));
        state = 'down';
        break;
      }
      case 'down':
        g.forEach((c) => out.push({ c, block, role: 'down' }));
        state = 'attn_in';
        block++;
        break;
    }
  }
  return out;
}
