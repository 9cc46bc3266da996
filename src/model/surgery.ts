/**
 * Graph surgery for structured pruning: remove MLP intermediate channels of one decoder block from the ONNX graph
 * (slice the gate/up rows, their biases and the down columns; fix the int64 shape constants that spell the old width),
 * and give a down projection an output bias (FLAP's bias compensation). The result is a smaller dense graph that
 * plain onnxruntime / transformers.js run without dsa-prune. Knows nothing about scores or allocation.
 */
import { DsaPruneError } from '../errors.js';
import type { LinearInfo } from '../types.js';
import {
  DataType, createNode, createTensor, setTensorFloat32, tensorBytes, tensorDims, tensorToFloat32,
  type GraphProto, type NodeProto, type TensorProto,
} from './onnx.js';
import type { PrunableModel } from './prunable.js';

/** One up-side projection of an MLP: channel j of the intermediate lives in rows offsets[k] + j of W [dOut × dIn]. */
export interface FfnInput {
  linear: LinearInfo;
  /** Row offsets of the channel inside W (`[0]`; fused gate_up: `[0, F]`). */
  offsets: number[];
  /** Initializer holding the projection's bias (Gemm C input or a following Add), when it has one. */
  bias?: string;
}

/** The MLP of one block as the ffn target sees it. */
export interface FfnLayout {
  block: number;
  /** Intermediate width F (channels). */
  width: number;
  inputs: FfnInput[];
  down: LinearInfo;
  /** Initializer holding the down projection's output bias, when it has one. */
  downBias?: string;
  /** Parameters of the block's linears per channel: Σ dIn of the up-side rows + dOut of down. */
  paramsPerChannel: number;
}

function hasSubgraphs(g: GraphProto): boolean {
  return g.node.some((n) => n.attribute.some((a) => a.g || (a.graphs?.length ?? 0) > 0));
}

function initializerOf(g: GraphProto, name: string): TensorProto | undefined {
  return g.initializer.find((t) => t.name === name);
}

function numel(t: TensorProto): number {
  return tensorDims(t).reduce((a, b) => a * b, 1);
}

/** The initializer a tensor name stands for, through Identity nodes (exporters alias deduplicated weights so). */
function resolveInitializer(g: GraphProto, name: string): { init: TensorProto; aliased: boolean } | undefined {
  let n = name;
  let aliased = false;
  for (let k = 0; k < 16; k++) {
    const t = initializerOf(g, n);
    if (t) return { init: t, aliased };
    const p = g.node.find((x) => x.output.includes(n));
    if (!p || p.op_type !== 'Identity' || !p.input[0]) return undefined;
    n = p.input[0];
    aliased = true;
  }
  return undefined;
}

/** Where a linear's bias enters: [node, input index] of Gemm's C, or of the one Add consuming the MatMul output. */
function biasSlot(g: GraphProto, node: NodeProto, dOut: number): [NodeProto, number] | undefined {
  const ok = (name: string | undefined): boolean => {
    const r = name ? resolveInitializer(g, name) : undefined;
    return !!r && numel(r.init) === dOut && tensorDims(r.init).length <= 2;
  };
  if (node.op_type === 'Gemm') return node.input[2] && ok(node.input[2]) ? [node, 2] : undefined;
  const out = node.output[0];
  const consumers = g.node.filter((n) => n.input.includes(out!));
  if (consumers.length !== 1 || consumers[0]!.op_type !== 'Add') return undefined;
  const add = consumers[0]!;
  const idx = add.input.findIndex((i) => i !== out);
  return idx >= 0 && ok(add.input[idx]) ? [add, idx] : undefined;
}

/** The bias initializer of a linear, made private to it (a copy when it is aliased or read by other nodes). */
function biasOf(g: GraphProto, node: NodeProto, dOut: number, privateName: string, log?: SurgeryLog, added?: Set<string>): string | undefined {
  const slot = biasSlot(g, node, dOut);
  if (!slot) return undefined;
  const [reader, idx] = slot;
  const r = resolveInitializer(g, reader.input[idx]!)!;
  const readers = g.node.filter((n) => n.input.includes(r.init.name!)).length;
  if (!r.aliased && readers === 1) return r.init.name;
  log?.graph(g);
  const copy = createTensor({ name: privateName, dims: tensorDims(r.init), data_type: r.init.data_type });
  setTensorFloat32(copy, tensorToFloat32(r.init));
  g.initializer.push(copy);
  reader.input[idx] = privateName;
  added?.add(privateName);
  return privateName;
}

function nodeOf(g: GraphProto, l: LinearInfo): NodeProto {
  const n = g.node.find((x) => x.name === l.node);
  if (!n) throw new DsaPruneError(`node ${l.node} of ${l.name} is not in the main graph`, { hint: 'Structured pruning edits the main graph of onnx/model.onnx only.' });
  return n;
}

/**
 * The MLP of block b (gate + up, fused gate_up, or up alone — GPT-2 c_fc / OPT fc1 — followed by down), or a
 * DsaPruneError saying why the ffn target cannot take this layout. Analysis only: biases are found, not edited
 * (`privatizeBiases` gives each its own initializer before any edit).
 */
export function ffnLayout(pm: PrunableModel, b: number): FfnLayout {
  const g = pm.proto.graph;
  const where = `block ${b} of ${pm.source.onnxPath || 'the model'}`;
  const hint = 'The ffn target needs gate_proj + up_proj, a fused gate_up_proj, or fc1/c_fc, followed by one down projection, per block (see `dsa-prune inspect`).';
  if (hasSubgraphs(g)) {
    throw new DsaPruneError(`structured pruning cannot edit ${pm.source.onnxPath || 'this graph'}: its decoder lives in If branches (a merged decoder)`, {
      hint: 'Export or load the single-graph onnx/model.onnx instead of decoder_model_merged.onnx.',
    });
  }
  const ls = pm.linears.filter((l) => l.block === b);
  const downs = ls.filter((l) => l.role === 'down');
  if (downs.length !== 1) throw new DsaPruneError(`the ffn target cannot take ${where}: it has ${downs.length} down projections`, { hint });
  const down = downs[0]!;
  const width = down.dIn;
  const gateUp = ls.filter((l) => l.role === 'gate_up');
  const sep = ls.filter((l) => l.role === 'gate' || l.role === 'up');
  let inputs: FfnInput[];
  if (gateUp.length === 1 && sep.length === 0) {
    const l = gateUp[0]!;
    if (l.dOut !== 2 * width) throw new DsaPruneError(`the ffn target cannot take ${where}: gate_up_proj has ${l.dOut} outputs, down_proj ${width} inputs`, { hint });
    inputs = [{ linear: l, offsets: [0, width] }];
  } else if (gateUp.length === 0 && sep.length >= 1 && sep.length <= 2 && new Set(sep.map((l) => l.role)).size === sep.length) {
    for (const l of sep) {
      if (l.dOut !== width) throw new DsaPruneError(`the ffn target cannot take ${where}: ${l.name} has ${l.dOut} outputs, ${down.name} reads ${width}`, { hint });
    }
    inputs = sep.map((l) => ({ linear: l, offsets: [0] }));
  } else {
    throw new DsaPruneError(`the ffn target cannot take ${where}: found ${ls.filter((l) => ['gate', 'up', 'gate_up'].includes(l.role)).length} up-side projections`, { hint });
  }
  for (const l of [...inputs.map((i) => i.linear), down]) {
    if (!initializerOf(g, l.weight)) throw new DsaPruneError(`weight ${l.weight} of ${l.name} is not an initializer of the main graph`, { hint });
    const shared = pm.linears.filter((x) => x.weight === l.weight);
    if (shared.length > 1) throw new DsaPruneError(`weight ${l.weight} of ${l.name} is shared by ${shared.length} linears; its channels cannot be removed for one block`, { hint });
  }
  const paramsPerChannel = inputs.reduce((a, i) => a + i.offsets.length * i.linear.dIn, 0) + down.dOut;
  return { block: b, width, inputs, down, paramsPerChannel };
}

/**
 * Find the biases of the MLP's projections and give each its own initializer: exporters deduplicate equal tensors
 * (GPT-2's zero-initialised biases are one initializer behind Identity nodes), and slicing a shared one for one block
 * would break the others. Returns the names of the initializers it created (the copies).
 */
export function privatizeBiases(pm: PrunableModel, layout: FfnLayout, log?: SurgeryLog): Set<string> {
  const g = pm.proto.graph;
  const added = new Set<string>();
  for (const i of layout.inputs) {
    const bias = biasOf(g, nodeOf(g, i.linear), i.linear.dOut, `${i.linear.name}.bias.dsa`, log, added);
    if (bias) i.bias = bias;
  }
  const downBias = biasOf(g, nodeOf(g, layout.down), layout.down.dOut, `${layout.down.name}.bias.dsa`, log, added);
  if (downBias) layout.downBias = downBias;
  return added;
}

/** Undo log of a surgery: restores every tensor field, node list, initializer list, value_info and LinearInfo touched. */
export class SurgeryLog {
  private readonly steps: (() => void)[] = [];
  tensor(t: TensorProto): void {
    const saved = { ...t };
    this.steps.push(() => {
      for (const k of Object.keys(t)) delete (t as Record<string, unknown>)[k];
      Object.assign(t, saved);
    });
  }
  graph(g: GraphProto): void {
    const node = [...g.node];
    const init = [...g.initializer];
    const vi = [...g.value_info];
    const nodes = g.node.map((n) => [n, [...n.input], [...n.output]] as const);
    this.steps.push(() => {
      g.node = node;
      g.initializer = init;
      g.value_info = vi;
      for (const [n, i, o] of nodes) {
        n.input = [...i];
        n.output = [...o];
      }
    });
  }
  linear(l: LinearInfo): void {
    const { dIn, dOut, parts } = l;
    this.steps.push(() => {
      l.dIn = dIn;
      l.dOut = dOut;
      if (parts) l.parts = parts;
      else delete l.parts;
    });
  }
  undo(): void {
    for (let i = this.steps.length - 1; i >= 0; i--) this.steps[i]!();
    this.steps.length = 0;
  }
}

/**
 * Give the down projection of `layout` an output bias initializer (zeros) when it has none: an Add node after its
 * MatMul, in the block's scope. Returns the bias initializer's name (the existing one when there is one).
 */
export function ensureDownBias(pm: PrunableModel, layout: FfnLayout, log?: SurgeryLog): string {
  if (layout.downBias) return layout.downBias;
  const g = pm.proto.graph;
  log?.graph(g);
  const node = nodeOf(g, layout.down);
  const out = node.output[0]!;
  const inner = `${out}_dsa_nobias`;
  const biasName = `${layout.down.name}.dsa_bias`;
  const dtype = layout.down.dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
  const bias = createTensor({ name: biasName, dims: [layout.down.dOut], data_type: dtype });
  setTensorFloat32(bias, new Float32Array(layout.down.dOut));
  node.output[0] = inner;
  const scope = layout.down.node.slice(0, layout.down.node.lastIndexOf('/'));
  const add = createNode({ op_type: 'Add', name: `${scope}/dsa_bias/Add`, input: [inner, biasName], output: [out] });
  g.node.splice(g.node.indexOf(node) + 1, 0, add);
  g.initializer.push(bias);
  layout.downBias = biasName;
  return biasName;
}

/** Current values of an initializer of the main graph (ONNX layout, float32). */
export function readMainInitializer(pm: PrunableModel, name: string): Float32Array {
  const t = initializerOf(pm.proto.graph, name);
  if (!t) throw new DsaPruneError(`initializer ${name} not found in ${pm.source.onnxPath || 'the model graph'}`);
  return tensorToFloat32(t, pm.source.onnxPath ? pm.source.onnxPath.replace(/[/\\][^/\\]*$/, '') : undefined);
}

/** Overwrite an initializer of the main graph with float32 values (stored in its own dtype, same shape). */
export function writeMainInitializer(pm: PrunableModel, name: string, values: Float32Array, dims?: number[], log?: SurgeryLog): void {
  const t = initializerOf(pm.proto.graph, name);
  if (!t) throw new DsaPruneError(`initializer ${name} not found in ${pm.source.onnxPath || 'the model graph'}`);
  log?.tensor(t);
  if (dims) t.dims = dims;
  if (numel(t) !== values.length) throw new DsaPruneError(`initializer ${name}: ${values.length} values for dims [${tensorDims(t)}]`);
  setTensorFloat32(t, values);
}

function int64Values(t: TensorProto): bigint[] | undefined {
  if (t.data_type !== DataType.INT64) return undefined;
  const b = tensorBytes(t);
  if (b.length % 8 !== 0) return undefined;
  const c = new Uint8Array(b.length);
  c.set(b);
  return Array.from(new BigInt64Array(c.buffer));
}

/**
 * Remove the intermediate channels of block `layout.block` not in `keep` (sorted ascending): rows of every up-side
 * projection (both halves of a fused gate_up) and their biases, columns of down. The weights are read as they are now
 * (zeroed columns of down are simply dropped). Int64 shape constants inside an up-side projection's scope that equal
 * its old output count (GPT-2's Conv1D Reshape) are rewritten; value_info of the MLP scope is dropped (onnxruntime
 * infers it). LinearInfo dIn/dOut/parts are updated in place.
 */
export function removeFfnChannels(pm: PrunableModel, layout: FfnLayout, keep: Int32Array, log?: SurgeryLog): void {
  const F = layout.width;
  const K = keep.length;
  if (K < 1) throw new DsaPruneError(`removing every FFN channel of block ${layout.block} would empty it`);
  for (let i = 0; i < K; i++) {
    if (!(keep[i]! >= 0 && keep[i]! < F) || (i > 0 && keep[i]! <= keep[i - 1]!)) throw new DsaPruneError(`removeFfnChannels: kept channels must be increasing indices in [0, ${F})`);
  }
  if (K === F) return;
  const g = pm.proto.graph;
  log?.graph(g);
  for (const inp of layout.inputs) {
    const l = inp.linear;
    const oldOut = l.dOut;
    const w = pm.readWeight(l);
    const rows = inp.offsets.length * K;
    const nw = new Float32Array(rows * l.dIn);
    let r = 0;
    for (const off of inp.offsets) for (let k = 0; k < K; k++, r++) nw.set(w.subarray((off + keep[k]!) * l.dIn, (off + keep[k]! + 1) * l.dIn), r * l.dIn);
    if (inp.bias) {
      const b = readMainInitializer(pm, inp.bias);
      const nb = new Float32Array(rows);
      r = 0;
      for (const off of inp.offsets) for (let k = 0; k < K; k++, r++) nb[r] = b[off + keep[k]!]!;
      writeMainInitializer(pm, inp.bias, nb, [rows], log);
    }
    log?.linear(l);
    l.dOut = rows;
    if (l.parts) l.parts = l.parts.map((p, i) => ({ ...p, start: i * K, end: (i + 1) * K }));
    const t = initializerOf(g, l.weight)!;
    log?.tensor(t);
    t.dims = pm.layout.get(l.name) === 'out_in' ? [rows, l.dIn] : [l.dIn, rows];
    pm.writeWeight(l, nw);
    fixShapeConstants(g, l.node, oldOut, rows, log);
  }
  const d = layout.down;
  const w = pm.readWeight(d);
  const nw = new Float32Array(d.dOut * K);
  for (let o = 0; o < d.dOut; o++) for (let k = 0; k < K; k++) nw[o * K + k] = w[o * F + keep[k]!]!;
  log?.linear(d);
  d.dIn = K;
  const t = initializerOf(g, d.weight)!;
  log?.tensor(t);
  t.dims = pm.layout.get(d.name) === 'out_in' ? [d.dOut, K] : [K, d.dOut];
  pm.writeWeight(d, nw);
  fixShapeConstants(g, d.node, F, K, log);
  // Static shapes the exporter recorded for the MLP's tensors are stale now.
  const mlpScope = commonScope([...layout.inputs.map((i) => i.linear.node), d.node]);
  if (mlpScope) g.value_info = g.value_info.filter((v) => !(v.name ?? '').startsWith(mlpScope));
  layout.width = K;
}

/** Longest common `/a/b/` prefix of node names (the MLP scope, `/model/layers.3/mlp/`), or '' when only the root. */
function commonScope(names: string[]): string {
  const parts = names.map((n) => n.split('/'));
  const out: string[] = [];
  for (let i = 0; ; i++) {
    const s = parts[0]![i];
    if (s === undefined || i >= parts[0]!.length - 1 || parts.some((p) => p[i] !== s || i >= p.length - 1)) break;
    out.push(s);
  }
  const scope = out.join('/');
  return /\.\d+/.test(scope) ? scope + '/' : '';
}

/** Int64 Constant nodes in `node`'s scope whose single value is `from`: set to `to` (shape arithmetic of Conv1D). */
function fixShapeConstants(g: GraphProto, nodeName: string, from: number, to: number, log?: SurgeryLog): void {
  const scope = nodeName.slice(0, nodeName.lastIndexOf('/') + 1);
  if (!/\.\d+\//.test(scope)) return;
  for (const n of g.node) {
    if (n.op_type !== 'Constant' || !(n.name ?? '').startsWith(scope)) continue;
    const a = n.attribute.find((x) => x.name === 'value' && x.t);
    if (!a?.t) continue;
    const v = int64Values(a.t);
    if (!v || v.length !== 1 || v[0] !== BigInt(from)) continue;
    log?.tensor(a.t);
    const dims = tensorDims(a.t);
    a.t.raw_data = new Uint8Array(BigInt64Array.from([BigInt(to)]).buffer);
    delete a.t.int64_data;
    a.t.dims = dims;
  }
}
