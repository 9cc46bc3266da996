/**
 * Graph surgery for depth pruning (structured `--target depth`): whole attention or MLP sub-layers of the decoder
 * blocks become the identity on the residual stream.
 *
 * A sub-layer is the residual branch `a = r + f(norm(r))`: its linears (attention q/k/v/o or fused qkv + o; MLP
 * gate/up/down, fused gate_up, or fc1/fc2) and the residual `Add` its output projection flows into (through bias
 * `Add`s / `Reshape`s). Removal turns that `Add` into `Identity(r)` and drops every node and initializer no graph
 * output needs any more. A removed attention keeps its KV-cache I/O, so transformers.js feeds and reads the same
 * tensors as before: `present.N.key|value` becomes `Concat(past_key_values.N.key|value, zeros)` along the sequence
 * axis, the zeros of shape [batch, kv_heads, seq, head_dim] built from the shapes of the past input and `input_ids`
 * with standard ops (Shape, Gather, Concat, ConstantOfShape). `config.json` is unchanged.
 *
 * Also builds the scoring graph: the same model with a scalar gate input multiplying each sub-layer's branch (1 keeps
 * it, 0 removes it: exactly the removal), the per-token cosine between a unit's residual input and output (Block
 * Influence), and the calibration cross-entropy summed over tokens.
 */
import { DsaPruneError } from '../errors.js';
import type { LinearInfo, LinearRole } from '../types.js';
import { blockOfScope } from './discover.js';
import { hasExternalData, inlinedModel } from './external.js';
import {
  DataType, attrInt, createNode, createTensor, toNumber, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto,
} from './onnx.js';
import type { PrunableModel } from './prunable.js';
import type { SurgeryLog } from './surgery.js';

export type SubLayerKind = 'attention' | 'mlp';

const ATTENTION_ROLES: readonly LinearRole[] = ['q', 'k', 'v', 'o', 'qkv'];
const MLP_ROLES: readonly LinearRole[] = ['gate', 'up', 'down', 'gate_up'];

/** KV-cache I/O of an attention sub-layer: a present output and the past input it extends. */
export interface KvPair {
  present: string;
  past: string;
  /** Element type of the past input (FLOAT / FLOAT16). */
  elemType: number;
}

/** One removable sub-layer as the graph holds it. */
export interface SubLayer {
  block: number;
  kind: SubLayerKind;
  /** Its linears (q, k, v, o / qkv, o; gate, up, down / gate_up, down / up, down). */
  linears: LinearInfo[];
  /** Σ dIn·dOut of its linears: what removing it takes off the budget. */
  params: number;
  /** The residual Add node: output = residual + branch. */
  add: string;
  /** The residual stream entering the sub-layer (the Add's other input). */
  residual: string;
  /** The residual stream leaving it (the Add's output). */
  output: string;
  /** The branch tensor (the Add's input coming from the output projection). */
  branch: string;
  /** Attention only: the KV-cache outputs of this block and the past inputs they extend. */
  kv: KvPair[];
  /** Residual stream dtype (FLOAT / FLOAT16). */
  elemType: number;
}

function hasSubgraphs(g: GraphProto): boolean {
  return g.node.some((n) => n.attribute.some((a) => a.g || (a.graphs?.length ?? 0) > 0));
}

function activationInput(g: GraphProto, node: NodeProto, weight: string): string | undefined {
  const inits = new Set(g.initializer.map((t) => t.name));
  return node.input.find((i) => i && i !== weight && !inits.has(i));
}

/** Whether `target` is an ancestor of `from` (or equal), walking back through at most `limit` producer nodes. */
function isAncestor(producer: Map<string, NodeProto>, from: string, target: string, limit = 200): boolean {
  const seen = new Set<string>();
  const stack = [from];
  let visited = 0;
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (t === target) return true;
    if (seen.has(t)) continue;
    seen.add(t);
    const p = producer.get(t);
    if (!p || ++visited > limit) continue;
    for (const i of p.input) if (i) stack.push(i);
  }
  return false;
}

function elemTypeOf(vi: ValueInfoProto | undefined): number | undefined {
  return vi?.type?.tensor_type?.elem_type;
}

/**
 * Every removable sub-layer (attention and MLP of every block, in block order), or a DsaPruneError saying why the
 * depth target cannot take this layout. Analysis only.
 */
export function subLayers(pm: PrunableModel): SubLayer[] {
  const g = pm.proto.graph;
  const file = pm.source.onnxPath || 'the model';
  const hint = 'The depth target needs per block an attention (q/k/v/o or qkv + o) and an MLP (gate/up/down, gate_up + down or fc1 + fc2), each ending in a residual Add (see `dsa-prune inspect`).';
  if (hasSubgraphs(g)) {
    throw new DsaPruneError(`depth pruning cannot edit ${file}: its decoder lives in If branches (a merged decoder)`, {
      hint: 'Export or load the single-graph onnx/model.onnx instead of decoder_model_merged.onnx.',
    });
  }
  const producer = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  for (const n of g.node) {
    for (const o of n.output) if (o) producer.set(o, n);
    for (const i of n.input) if (i) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  }
  const graphOutputs = new Set(g.output.map((o) => o.name ?? ''));
  const graphInputs = new Map(g.input.map((i) => [i.name ?? '', i]));
  const nodeByName = new Map(g.node.map((n) => [n.name ?? '', n]));
  const out: SubLayer[] = [];
  for (let b = 0; b < pm.blocks; b++) {
    const ls = pm.linears.filter((l) => l.block === b);
    const other = ls.filter((l) => !ATTENTION_ROLES.includes(l.role) && !MLP_ROLES.includes(l.role));
    if (other.length) throw new DsaPruneError(`the depth target cannot take block ${b} of ${file}: linear ${other[0]!.name} has no attention or MLP role`, { hint });
    for (const kind of ['attention', 'mlp'] as const) {
      const where = `the ${kind} of block ${b} of ${file}`;
      const mine = ls.filter((l) => (kind === 'attention' ? ATTENTION_ROLES : MLP_ROLES).includes(l.role));
      const outRole: LinearRole = kind === 'attention' ? 'o' : 'down';
      const outs = mine.filter((l) => l.role === outRole);
      const ins = mine.filter((l) => l.role !== outRole);
      if (outs.length !== 1 || ins.length === 0) {
        throw new DsaPruneError(`the depth target cannot take ${where}: found ${outs.length} ${outRole} projection(s) and ${ins.length} input projection(s)`, { hint });
      }
      for (const l of mine) {
        if (pm.linears.filter((x) => x.weight === l.weight).length > 1) {
          throw new DsaPruneError(`the depth target cannot take ${where}: weight ${l.weight} of ${l.name} is shared by several linears`, { hint });
        }
      }
      const outNode = nodeByName.get(outs[0]!.node);
      const inNode = nodeByName.get(ins[0]!.node);
      const x = inNode ? activationInput(g, inNode, ins[0]!.weight) : undefined;
      if (!outNode || !inNode || !x) throw new DsaPruneError(`the depth target cannot take ${where}: its projection nodes are not in the main graph`, { hint });
      // Follow the output projection's single-consumer chain to the residual Add: the Add whose other input is an
      // ancestor of the sub-layer's input (the residual stream that was normalized to feed it).
      let t = outNode.output[0]!;
      let found: { add: NodeProto; residual: string; branch: string } | undefined;
      for (let k = 0; k < 8 && !found; k++) {
        if (graphOutputs.has(t)) break;
        const cs = consumers.get(t) ?? [];
        if (cs.length !== 1) break;
        const c = cs[0]!;
        if (c.op_type === 'Add' && c.input.length === 2) {
          const r = c.input[0] === t ? c.input[1]! : c.input[0]!;
          if (r !== t && isAncestor(producer, x, r)) {
            found = { add: c, residual: r, branch: t };
            break;
          }
        }
        if (!['Add', 'Reshape', 'Cast', 'Identity', 'Mul', 'Squeeze', 'Unsqueeze'].includes(c.op_type ?? '') || c.output.length !== 1) break;
        t = c.output[0]!;
      }
      if (!found) throw new DsaPruneError(`the depth target cannot take ${where}: no residual Add after ${outs[0]!.name} whose other input feeds the sub-layer`, { hint });
      const kv: KvPair[] = [];
      if (kind === 'attention') {
        for (const o of g.output) {
          const name = o.name ?? '';
          const p = producer.get(name);
          if (!/^present/.test(name) || !p || blockOfScope(p.name) !== b) continue;
          const past = p.input.find((i) => graphInputs.has(i));
          const pastInfo = past ? graphInputs.get(past) : undefined;
          const rank = pastInfo?.type?.tensor_type?.shape?.dim?.length;
          const ax = p.op_type === 'Concat' ? attrInt(p, 'axis', 0) : undefined;
          if (p.op_type !== 'Concat' || !past || (ax !== 2 && ax !== -2) || (rank !== undefined && rank !== 4)) {
            throw new DsaPruneError(`the depth target cannot take ${where}: KV-cache output ${name} is not Concat(past, new) along axis 2 of a [batch, heads, seq, head_dim] tensor`, {
              hint: 'Removing this attention would break the KV cache transformers.js feeds; use --target ffn, or an export with past_key_values.N.* / present.N.* inputs and outputs.',
            });
          }
          kv.push({ present: name, past, elemType: elemTypeOf(pastInfo) ?? DataType.FLOAT });
        }
        if (kv.length > 0 && !graphInputs.has('input_ids')) {
          throw new DsaPruneError(`the depth target cannot take ${where}: the graph has KV-cache outputs but no input_ids input to size the pass-through`, { hint });
        }
      }
      out.push({
        block: b, kind, linears: mine, params: mine.reduce((a, l) => a + l.dIn * l.dOut, 0),
        add: found.add.name ?? '', residual: found.residual, output: found.add.output[0]!, branch: found.branch, kv,
        elemType: mine[0]!.dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT,
      });
    }
  }
  return out;
}

function constInt64(name: string, out: string, values: number[]): NodeProto {
  const t = createTensor({ dims: [values.length], data_type: DataType.INT64, raw_data: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
  return createNode({ op_type: 'Constant', name, output: [out], attribute: [{ name: 'value', type: 4, t }] });
}

/** Nodes computing `Concat(past, zeros[b, heads, seq, head_dim])` into `present` (standard ops, any opset ≥ 11). */
function passThroughNodes(kv: KvPair, scope: string): NodeProto[] {
  const p = `${scope}/dsa_kv_passthrough/${kv.present}`;
  const zeroBytes = kv.elemType === DataType.FLOAT16 ? new Uint8Array(2) : new Uint8Array(4);
  const zero = createTensor({ dims: [1], data_type: kv.elemType, raw_data: zeroBytes });
  return [
    createNode({ op_type: 'Shape', name: `${p}/ShapePast`, input: [kv.past], output: [`${p}/past_shape`] }),
    createNode({ op_type: 'Shape', name: `${p}/ShapeIds`, input: ['input_ids'], output: [`${p}/ids_shape`] }),
    constInt64(`${p}/Idx01`, `${p}/idx01`, [0, 1]),
    constInt64(`${p}/Idx1`, `${p}/idx1`, [1]),
    constInt64(`${p}/Idx3`, `${p}/idx3`, [3]),
    createNode({ op_type: 'Gather', name: `${p}/BatchHeads`, input: [`${p}/past_shape`, `${p}/idx01`], output: [`${p}/bh`], attribute: [{ name: 'axis', type: 2, i: 0 }] }),
    createNode({ op_type: 'Gather', name: `${p}/Seq`, input: [`${p}/ids_shape`, `${p}/idx1`], output: [`${p}/seq`], attribute: [{ name: 'axis', type: 2, i: 0 }] }),
    createNode({ op_type: 'Gather', name: `${p}/HeadDim`, input: [`${p}/past_shape`, `${p}/idx3`], output: [`${p}/hd`], attribute: [{ name: 'axis', type: 2, i: 0 }] }),
    createNode({ op_type: 'Concat', name: `${p}/ZerosShape`, input: [`${p}/bh`, `${p}/seq`, `${p}/hd`], output: [`${p}/zeros_shape`], attribute: [{ name: 'axis', type: 2, i: 0 }] }),
    createNode({ op_type: 'ConstantOfShape', name: `${p}/Zeros`, input: [`${p}/zeros_shape`], output: [`${p}/zeros`], attribute: [{ name: 'value', type: 4, t: zero }] }),
    createNode({ op_type: 'Concat', name: `${p}/Concat`, input: [kv.past, `${p}/zeros`], output: [kv.present], attribute: [{ name: 'axis', type: 2, i: 2 }] }),
  ];
}

/** Drop every node no graph output needs, the initializers no remaining node reads and the stale value_info. */
function eliminateDeadNodes(g: GraphProto): void {
  const producer = new Map<string, NodeProto>();
  for (const n of g.node) for (const o of n.output) if (o) producer.set(o, n);
  const live = new Set<NodeProto>();
  const stack = g.output.map((o) => o.name ?? '');
  const seen = new Set<string>();
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (!t || seen.has(t)) continue;
    seen.add(t);
    const p = producer.get(t);
    if (p && !live.has(p)) {
      live.add(p);
      for (const i of p.input) stack.push(i);
    }
  }
  g.node = g.node.filter((n) => live.has(n));
  const used = new Set<string>();
  for (const n of g.node) for (const i of n.input) if (i) used.add(i);
  for (const o of g.output) used.add(o.name ?? '');
  g.initializer = g.initializer.filter((t) => used.has(t.name ?? ''));
  const tensors = new Set<string>([...used, ...g.node.flatMap((n) => n.output)]);
  g.value_info = g.value_info.filter((v) => tensors.has(v.name ?? ''));
}

/** ModelProto metadata key listing the removed sub-layers (`["3.attention", "7.mlp"]`), read by inspect. */
export const DEPTH_METADATA_KEY = 'dsa_prune.removed_sublayers';

interface MetadataEntry {
  key?: string;
  value?: string;
}

/** The sub-layers removed from a graph by depth pruning (from its metadata), as `block.kind` strings. */
export function removedSubLayersOf(proto: ModelProto): string[] {
  const md = (proto.metadata_props as MetadataEntry[] | undefined) ?? [];
  const e = md.find((x) => x.key === DEPTH_METADATA_KEY);
  if (!e?.value) return [];
  try {
    const v = JSON.parse(e.value) as unknown;
    return Array.isArray(v) ? v.map(String) : [];
  } catch {
    return [];
  }
}

/**
 * Remove `remove` (a subset of `subLayers(pm)`): each residual Add becomes Identity(residual); a removed attention's
 * present outputs become the past concatenated with zeros; dead nodes and initializers go; the linears of the removed
 * sub-layers leave `pm.linears`; the graph's metadata lists the removed sub-layers. Undo through `log` (graph) and the
 * returned function (linears, metadata).
 */
export function removeSubLayers(pm: PrunableModel, remove: SubLayer[], log?: SurgeryLog): () => void {
  const g = pm.proto.graph;
  const linearsBefore = [...pm.linears];
  const mdBefore = pm.proto.metadata_props as MetadataEntry[] | undefined;
  const undo = (): void => {
    pm.linears.splice(0, pm.linears.length, ...linearsBefore);
    if (mdBefore === undefined) delete pm.proto.metadata_props;
    else pm.proto.metadata_props = mdBefore;
  };
  if (remove.length === 0) return undo;
  log?.graph(g);
  for (const s of remove) {
    const i = g.node.findIndex((n) => n.name === s.add && n.output[0] === s.output);
    if (i < 0) throw new DsaPruneError(`removeSubLayers: residual Add ${s.add} of block ${s.block}'s ${s.kind} is not in the graph`);
    g.node[i] = createNode({ op_type: 'Identity', name: `${s.add}/dsa_removed_${s.kind}`, input: [s.residual], output: [s.output] });
    for (const kv of s.kv) {
      const p = g.node.findIndex((n) => n.output.includes(kv.present));
      const dead = `${kv.present}/dsa_dead`;
      // Only the old producer loses the name: a node still reading present.N (a Shape, say) reads the pass-through,
      // which has the same shape; the removed attention's readers are dead anyway.
      for (const n of g.node) n.output = n.output.map((o) => (o === kv.present ? dead : o));
      const scope = s.add.slice(0, s.add.lastIndexOf('/'));
      g.node.splice(Math.max(0, p), 0, ...passThroughNodes(kv, scope));
    }
  }
  eliminateDeadNodes(g);
  const gone = new Set(remove.flatMap((s) => s.linears));
  const kept = pm.linears.filter((l) => !gone.has(l));
  pm.linears.splice(0, pm.linears.length, ...kept);
  const names = [...new Set([...removedSubLayersOf(pm.proto), ...remove.map((s) => `${s.block}.${s.kind}`)])];
  const md = (mdBefore ?? []).filter((x) => x.key !== DEPTH_METADATA_KEY);
  pm.proto.metadata_props = [...md, { key: DEPTH_METADATA_KEY, value: JSON.stringify(names) }];
  return undo;
}

/** A unit the scoring graph scores: one sub-layer, or a whole block (its attention and MLP together). */
export interface ScoringUnit {
  /** Indices into the sub-layer list whose gates this unit closes. */
  members: number[];
  /** Residual stream entering the unit / leaving it (Block Influence = 1 − cos of the two, per token). */
  input: string;
  output: string;
}

/** Names of the scoring graph's extra inputs and outputs. */
export interface ScoringGraph {
  model: ModelProto;
  /** Gate input per sub-layer (float [1]; 1 = keep). */
  gates: string[];
  gateElemType: number;
  /** Per-token cosine output per unit ([batch, seq] or [tokens]), when BI was asked. */
  cos: string[];
  /** Scalar Σ over tokens of log p(next token) (the negative NLL), and the label input [batch, seq − 1] int64, when loss was asked. */
  logprob?: string;
  labels?: string;
}

/**
 * The model with a gate on every sub-layer's branch (Add(r, y) → Add(r, y · gate)), per-unit cosine outputs and the
 * summed log-likelihood of the next token. Shares the initializers with `pm.proto` (no copy of the weights, except the
 * inlining of external data).
 */
export function depthScoringGraph(pm: PrunableModel, subs: SubLayer[], units: ScoringUnit[], what: { bi: boolean; loss: boolean }): ScoringGraph {
  const src = pm.proto;
  const baseDir = pm.source.onnxPath ? pm.source.onnxPath.replace(/[/\\][^/\\]*$/, '') : undefined;
  const inlined = hasExternalData(src) && baseDir ? inlinedModel(src, baseDir) : src;
  const opset = toNumber(src.opset_import.find((o) => !o.domain || o.domain === 'ai.onnx')?.version) || 17;
  const g0 = inlined.graph;
  const nodes: NodeProto[] = g0.node.map((n) => ({ ...n, input: [...n.input], output: [...n.output] }));
  const inputs: ValueInfoProto[] = [...g0.input];
  const outputs: ValueInfoProto[] = [...g0.output];
  const inits: TensorProto[] = [...g0.initializer];
  const elemType = subs[0]?.elemType ?? DataType.FLOAT;
  const gates = subs.map((_, i) => `dsa_gate_${i}`);
  subs.forEach((s, i) => {
    const add = nodes.find((n) => n.name === s.add && n.output[0] === s.output)!;
    const gated = `${s.branch}/dsa_gated_${i}`;
    add.input = add.input.map((x) => (x === s.branch ? gated : x));
    nodes.splice(nodes.indexOf(add), 0, createNode({ op_type: 'Mul', name: `${s.add}/dsa_gate`, input: [s.branch, gates[i]!], output: [gated] }));
    inputs.push({ name: gates[i]!, type: { tensor_type: { elem_type: elemType, shape: { dim: [{ dim_value: 1 }] } } } });
  });
  const extra: NodeProto[] = [];
  const axesLast = (p: string, op: string, x: string, out: string): void => {
    const withInput = op === 'ReduceSum' ? opset >= 13 : opset >= 18;
    if (withInput) {
      extra.push(constInt64(`${p}/${op}Axes`, `${p}/${op}_axes`, [-1]));
      extra.push(createNode({ op_type: op, name: `${p}/${op}`, input: [x, `${p}/${op}_axes`], output: [out], attribute: [{ name: 'keepdims', type: 2, i: 0 }] }));
    } else {
      extra.push(createNode({ op_type: op, name: `${p}/${op}`, input: [x], output: [out], attribute: [{ name: 'axes', type: 7, ints: [-1] }, { name: 'keepdims', type: 2, i: 0 }] }));
    }
  };
  const f32 = (p: string, x: string): string => {
    if (elemType === DataType.FLOAT) return x;
    extra.push(createNode({ op_type: 'Cast', name: `${p}/Cast`, input: [x], output: [`${p}/x32`], attribute: [{ name: 'to', type: 2, i: DataType.FLOAT }] }));
    return `${p}/x32`;
  };
  const cos: string[] = [];
  if (what.bi) {
    units.forEach((u, k) => {
      const p = `dsa_bi_${k}`;
      const a = f32(`${p}/in`, u.input);
      const b = f32(`${p}/out`, u.output);
      extra.push(createNode({ op_type: 'Mul', name: `${p}/Mul`, input: [a, b], output: [`${p}/ab`] }));
      axesLast(`${p}/dot`, 'ReduceSum', `${p}/ab`, `${p}/dot`);
      axesLast(`${p}/na`, 'ReduceSumSquare', a, `${p}/na`);
      axesLast(`${p}/nb`, 'ReduceSumSquare', b, `${p}/nb`);
      extra.push(createNode({ op_type: 'Mul', name: `${p}/NaNb`, input: [`${p}/na`, `${p}/nb`], output: [`${p}/nanb`] }));
      extra.push(createNode({ op_type: 'Sqrt', name: `${p}/Sqrt`, input: [`${p}/nanb`], output: [`${p}/norm`] }));
      extra.push(createNode({ op_type: 'Div', name: `${p}/Div`, input: [`${p}/dot`, `${p}/norm`], output: [`${p}/cos`] }));
      cos.push(`${p}/cos`);
      outputs.push({ name: `${p}/cos`, type: { tensor_type: { elem_type: DataType.FLOAT } } });
    });
  }
  let logprob: string | undefined;
  let labels: string | undefined;
  if (what.loss) {
    const logits = g0.output.find((o) => o.name === 'logits');
    if (!logits) throw new DsaPruneError(`depth --depth-score loss needs a logits output in ${pm.source.onnxPath || 'the model'}`);
    const p = 'dsa_loss';
    labels = `${p}/labels`;
    inputs.push({ name: labels, type: { tensor_type: { elem_type: DataType.INT64 } } });
    const lg = f32(`${p}/logits`, 'logits');
    extra.push(constInt64(`${p}/Starts`, `${p}/starts`, [0]));
    extra.push(constInt64(`${p}/Ends`, `${p}/ends`, [-1]));
    extra.push(constInt64(`${p}/Axes`, `${p}/axes`, [1]));
    extra.push(createNode({ op_type: 'Slice', name: `${p}/Slice`, input: [lg, `${p}/starts`, `${p}/ends`, `${p}/axes`], output: [`${p}/shifted`] }));
    extra.push(createNode({ op_type: 'LogSoftmax', name: `${p}/LogSoftmax`, input: [`${p}/shifted`], output: [`${p}/lsm`], attribute: [{ name: 'axis', type: 2, i: -1 }] }));
    extra.push(constInt64(`${p}/UnsqAxes`, `${p}/unsq_axes`, [-1]));
    extra.push(opset >= 13
      ? createNode({ op_type: 'Unsqueeze', name: `${p}/Unsqueeze`, input: [labels, `${p}/unsq_axes`], output: [`${p}/idx`] })
      : createNode({ op_type: 'Unsqueeze', name: `${p}/Unsqueeze`, input: [labels], output: [`${p}/idx`], attribute: [{ name: 'axes', type: 7, ints: [-1] }] }));
    extra.push(createNode({ op_type: 'GatherElements', name: `${p}/Gather`, input: [`${p}/lsm`, `${p}/idx`], output: [`${p}/lp`], attribute: [{ name: 'axis', type: 2, i: -1 }] }));
    extra.push(createNode({ op_type: 'ReduceSum', name: `${p}/Sum`, input: [`${p}/lp`], output: [`${p}/sum`], attribute: [{ name: 'keepdims', type: 2, i: 0 }] }));
    logprob = `${p}/sum`;
    outputs.push({ name: logprob, type: { tensor_type: { elem_type: DataType.FLOAT } } });
  }
  const graph: GraphProto = { ...g0, node: [...nodes, ...extra], input: inputs, output: outputs, initializer: inits, value_info: [] };
  return { model: { ...inlined, graph }, gates, gateElemType: elemType, cos, ...(logprob ? { logprob, labels } : {}) };
}
