/**
 * Splitting a decoder ONNX graph into a prefix and one sub-graph per block, and instrumenting a block with
 * statistics nodes. Works from the graph alone: a node belongs to block N when its name has a `/layers.N/`
 * (or GPT-2 `/h.N/`, `/blocks.N/`) scope; everything else is either constant (computed from initializers and
 * Constant nodes only — copied into whichever sub-graph needs it) or belongs to the prefix (embedding, mask, rotary
 * tables, position ids: what the blocks share) or the suffix (final norm, lm_head: never run here).
 *
 * Tensors crossing a block boundary travel through a per-batch store on the JS side: the prefix fills it with the
 * shared context and the hidden state entering block 0; block b reads its inputs from it and writes the tensors later
 * blocks read (the hidden state, and for fused exports such as onnxruntime-genai's SkipSimplifiedLayerNormalization,
 * the residual too). Past-KV graph inputs are fed as empty tensors; present outputs are dropped.
 */
import {
  DataType,
  createNode,
  encodeModel,
  createTensor,
  isExternal,
  tensorDims,
  toNumber,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
  type GraphProto,
} from '../model/onnx.js';
import { DsaPruneError } from '../errors.js';
import { blockOfScope } from '../model/discover.js';
import { inlinedModel } from '../model/external.js';
import { inlineMergedBranches } from './merged.js';
import type { LinearInfo } from '../types.js';

/** Block index of a node from its name, or -1: the discovery's rule (src/model/discover.ts blockOfScope), not a second one. */
export function blockOfNode(name: string | undefined): number {
  return blockOfScope(name);
}

/** One distinct linear input X of a block (q/k/v share one, gate/up share one). */
export interface StatsInput {
  /** Tensor name of X in the graph. */
  tensor: string;
  dIn: number;
  /** Linears reading X. */
  linears: string[];
  /** X is float16 in the graph (cast to float32 before reducing). */
  fp16: boolean;
  /** Graph output names added for the statistics. */
  sqOutput: string;
  gramOutput: string;
  /** Graph output name of Σx (added when BlockGraphOptions.sum). */
  sumOutput: string;
  /** Graph output name of X itself as float32 (added when BlockGraphOptions.expose): X, or its Cast for fp16. */
  exposeOutput: string;
}

/** What one sub-graph reads and writes. */
export interface SubgraphSpec {
  /** Serialized ONNX model of the sub-graph. */
  bytes: Uint8Array;
  /** Inputs read from the per-batch store (prefix outputs, earlier blocks' outputs). */
  storeInputs: string[];
  /** Inputs that are graph inputs of the original model (input_ids, attention_mask, past KV, …). */
  graphInputs: string[];
  /** Linear weight initializers turned into inputs: name → ONNX dims and dtype. */
  weightInputs: { name: string; dims: number[]; fp16: boolean }[];
  /** Outputs written back to the store. */
  storeOutputs: string[];
  /**
   * Names inside `bytes` of the sub-graph's inputs and outputs, by their name in the model (graph inputs such as
   * past_key_values.N.key, store tensors, weights, statistics outputs). Empty for graphs built without `canonical`.
   * With canonical names, two blocks whose `bytes` are equal are the same computation and can share one session.
   */
  rename: Map<string, string>;
  /**
   * Graphs built with BlockGraphOptions.gate: the name (in the model's namespace; map it through `rename`) of the bool
   * scalar input that switches the statistics on (true: they are computed) or off (false: empty outputs).
   */
  gateInput?: string;
}

/** Name of the bool input of a gated block graph (BlockGraphOptions.gate). */
export const STATS_GATE = 'dsa_calib_stats_gate';

/** The static analysis of a model: node ownership, producers, what crosses block boundaries. */
export interface GraphPlan {
  nBlocks: number;
  /** Original graph input names. */
  graphInputs: Set<string>;
  /** Per block: distinct linear inputs. */
  statsInputs: StatsInput[][];
  /** Per block: the tensors it must write to the store (read by later blocks). */
  carried: string[][];
  /** Per block: the store tensor(s) holding the hidden state entering it (produced by the previous stage). */
  hiddenIn: string[][];
  /** Tensors the prefix must produce. */
  prefixOutputs: string[];
  /** Per block: index of the last block that reads each store tensor written by (or before) it; for freeing. */
  lastReader: Map<string, number>;
  /** Default-domain opset of the model. */
  opset: number;
  model: ModelProto;
  baseDir?: string;
  producer: Map<string, NodeProto>;
  nodeBlock: Map<NodeProto, number>;
  staticTensors: Set<string>;
  initializers: Map<string, TensorProto>;
  linearsByBlock: LinearInfo[][];
  /** Per initializer: the one block whose nodes read it, or -1 when read outside the blocks or by several blocks. */
  initOwner: Map<string, number>;
  /** Tensors of the last block read by the suffix (final norm): its outputs, computed so it matches the other blocks. */
  lastOutputs: string[];
}

function defaultOpset(model: ModelProto): number {
  const e = model.opset_import.find((o) => !o.domain || o.domain === 'ai.onnx');
  return e ? toNumber(e.version) : 17;
}

/** Analyse `model` for calibration of `linears` (those with block ≥ 0 are the instrumented ones). */
export function planGraph(source: ModelProto, linears: LinearInfo[], baseDir?: string): GraphPlan {
  const model = inlineMergedBranches(source, linears); // decoder_model_merged: the decoder lives in If branches
  const g = model.graph;
  const blockLinears = linears.filter((l) => l.block >= 0);
  if (blockLinears.length === 0) {
    throw new DsaPruneError('calibration: the model has no linear layers inside decoder blocks', {
      hint: 'check that the graph has nodes named like /model/layers.N/... (a transformers.js / optimum export)',
    });
  }
  const nBlocks = Math.max(...blockLinears.map((l) => l.block)) + 1;
  const initializers = new Map(g.initializer.map((t) => [t.name ?? '', t]));
  const graphInputs = new Set(g.input.map((i) => i.name ?? '').filter((n) => !initializers.has(n)));
  const producer = new Map<string, NodeProto>();
  const nodeBlock = new Map<NodeProto, number>();
  for (const n of g.node) {
    for (const o of n.output) if (o) producer.set(o, n);
    const b = blockOfNode(n.name);
    // Nodes scoped beyond the last block (genai's `/model/layers.L/final_norm_layernorm`) are suffix.
    nodeBlock.set(n, b >= 0 && b < nBlocks ? b : -1);
  }
  // Static tensors: computable from initializers and Constant nodes alone (forward closure in topological order).
  const staticTensors = new Set<string>(initializers.keys());
  for (const n of g.node) {
    if (hasSubgraph(n)) continue;
    if (n.input.every((i) => !i || staticTensors.has(i))) for (const o of n.output) if (o) staticTensors.add(o);
  }
  // Prefix-computable: from graph inputs and non-block nodes only.
  const prefixTensors = new Set<string>([...staticTensors, ...graphInputs]);
  for (const n of g.node) {
    if (nodeBlock.get(n)! >= 0) continue;
    if (n.input.every((i) => !i || prefixTensors.has(i))) for (const o of n.output) if (o) prefixTensors.add(o);
  }

  const linearsByBlock: LinearInfo[][] = Array.from({ length: nBlocks }, () => []);
  for (const l of blockLinears) linearsByBlock[l.block]!.push(l);

  const nodeByName = new Map(g.node.map((n) => [n.name ?? '', n]));
  const statsInputs: StatsInput[][] = [];
  for (let b = 0; b < nBlocks; b++) {
    const byTensor = new Map<string, StatsInput>();
    for (const l of linearsByBlock[b]!) {
      const node = nodeByName.get(l.node);
      if (!node) throw new DsaPruneError(`calibration: linear ${l.name} names node ${l.node}, which is not in the graph`);
      const x = node.input.find((i) => i && i !== l.weight && !initializers.has(i));
      if (!x) throw new DsaPruneError(`calibration: cannot find the activation input of ${l.node} (${l.name})`);
      let s = byTensor.get(x);
      if (!s) {
        const k = `${b}_${byTensor.size}`;
        s = statsInput(x, l, k);
        byTensor.set(x, s);
      } else if (s.dIn !== l.dIn) {
        throw new DsaPruneError(`calibration: ${l.name} reads ${x} with d_in ${l.dIn}, another linear reads it with ${s.dIn}`);
      }
      s.linears.push(l.name);
    }
    statsInputs.push([...byTensor.values()]);
  }

  // What each block reads from outside itself (excluding static tensors, which are copied in).
  const reads: Set<string>[] = [];
  for (let b = 0; b < nBlocks; b++) reads.push(new Set());
  const blockProduces: Set<string>[] = Array.from({ length: nBlocks }, () => new Set<string>());
  for (const n of g.node) {
    const b = nodeBlock.get(n)!;
    if (b >= 0) for (const o of n.output) if (o) blockProduces[b]!.add(o);
  }
  for (const n of g.node) {
    const b = nodeBlock.get(n)!;
    if (b < 0) continue;
    for (const i of n.input) {
      if (!i || staticTensors.has(i) || blockProduces[b]!.has(i)) continue;
      reads[b]!.add(i);
    }
  }
  const producedByBlock = (t: string): number => {
    const p = producer.get(t);
    return p ? nodeBlock.get(p)! : -1;
  };
  const carried: string[][] = Array.from({ length: nBlocks }, () => []);
  const prefixOutputs = new Set<string>();
  const lastReader = new Map<string, number>();
  for (let b = 0; b < nBlocks; b++) {
    for (const t of reads[b]!) {
      lastReader.set(t, Math.max(lastReader.get(t) ?? -1, b));
      if (graphInputs.has(t)) continue;
      const pb = producedByBlock(t);
      if (pb >= 0) {
        if (pb >= b) throw new DsaPruneError(`calibration: block ${b} reads ${t} from block ${pb}; blocks must run in order`);
        if (!carried[pb]!.includes(t)) carried[pb]!.push(t);
      } else if (prefixTensors.has(t)) {
        prefixOutputs.add(t);
      } else {
        const p = producer.get(t);
        throw new DsaPruneError(
          `calibration: block ${b} reads ${t}, computed by node ${p?.name ?? '?'} outside the blocks from block outputs`,
          { hint: 'this graph layout is not supported yet: nodes between blocks must carry a /layers.N/ scope' },
        );
      }
    }
  }
  // Hidden state entering block b: what block b-1 hands over; for block 0, prefix tensors only block 0 reads.
  const hiddenIn: string[][] = [];
  for (let b = 0; b < nBlocks; b++) {
    if (b > 0) hiddenIn.push([...reads[b]!].filter((t) => producedByBlock(t) === b - 1));
    else {
      const others = new Set<string>();
      for (let k = 1; k < nBlocks; k++) for (const t of reads[k]!) others.add(t);
      hiddenIn.push([...reads[0]!].filter((t) => prefixOutputs.has(t) && !others.has(t)));
    }
  }
  const initOwner = new Map<string, number>();
  const lastOutputs: string[] = [];
  for (const n of g.node) {
    const b = nodeBlock.get(n)!;
    for (const i of n.input) {
      if (!i) continue;
      if (initializers.has(i)) initOwner.set(i, initOwner.has(i) && initOwner.get(i) !== b ? -1 : b);
      if (b < 0 && producedByBlock(i) === nBlocks - 1 && !lastOutputs.includes(i)) lastOutputs.push(i);
    }
  }
  return {
    nBlocks, graphInputs, statsInputs, carried, hiddenIn, prefixOutputs: [...prefixOutputs], lastReader,
    opset: defaultOpset(model), model, baseDir, producer, nodeBlock, staticTensors, initializers, linearsByBlock,
    initOwner, lastOutputs,
  };
}

function statsInput(x: string, l: LinearInfo, k: string): StatsInput {
  const fp16 = l.dtype === 'float16';
  const sqOutput = `dsa_calib_sq_${k}`;
  return {
    tensor: x, dIn: l.dIn, linears: [], fp16, sqOutput, gramOutput: `dsa_calib_gram_${k}`, sumOutput: `dsa_calib_sum_${k}`,
    exposeOutput: fp16 ? `${sqOutput}/x32` : x,
  };
}

/**
 * The input of a linear outside the blocks that reads what the last block hands on (the lm_head reads the final
 * norm's output): its StatsInput, for buildHead. Throws when the linear's node is not in the graph.
 */
export function headInput(plan: GraphPlan, head: LinearInfo): StatsInput {
  const node = plan.model.graph.node.find((n) => n.name === head.node);
  if (!node) throw new DsaPruneError(`calibration: linear ${head.name} names node ${head.node}, which is not in the graph`);
  const x = node.input.find((i) => i && i !== head.weight && !plan.initializers.has(i));
  if (!x) throw new DsaPruneError(`calibration: cannot find the activation input of ${head.node} (${head.name})`);
  const s = statsInput(x, head, 'head');
  s.linears.push(head.name);
  return s;
}

function hasSubgraph(n: NodeProto): boolean {
  return n.attribute.some((a) => a.g !== undefined && a.g !== null || (a.graphs?.length ?? 0) > 0);
}

/**
 * Nodes needed to compute `targets` (in original topological order), walking back through `allowed` nodes and
 * static nodes; stops at tensors in neither (those become inputs).
 */
function collect(plan: GraphPlan, targets: string[], allowed: (n: NodeProto) => boolean): { nodes: NodeProto[]; leaves: Set<string> } {
  const keep = new Set<NodeProto>();
  const leaves = new Set<string>();
  const seen = new Set<string>();
  const stack = [...targets];
  while (stack.length > 0) {
    const t = stack.pop()!;
    if (!t || seen.has(t)) continue;
    seen.add(t);
    if (plan.initializers.has(t)) {
      leaves.add(t);
      continue;
    }
    const p = plan.producer.get(t);
    if (p && (allowed(p) || plan.staticTensors.has(t))) {
      if (!keep.has(p)) {
        keep.add(p);
        for (const i of p.input) stack.push(i);
      }
    } else {
      leaves.add(t);
    }
  }
  const nodes = plan.model.graph.node.filter((n) => keep.has(n));
  return { nodes, leaves };
}

function valueInfo(name: string, elemType?: number): ValueInfoProto {
  return elemType ? { name, type: { tensor_type: { elem_type: elemType } } } : { name };
}

/** Initializers with their data inline (external data read from files next to the ONNX file, by slices). */
function inlineInitializers(plan: GraphPlan, inits: TensorProto[]): TensorProto[] {
  if (!inits.some(isExternal)) return inits;
  if (!plan.baseDir) {
    throw new DsaPruneError('calibration: the graph keeps weights in external data, but the model file location is unknown', {
      hint: 'pass a model whose source.onnxPath names the .onnx file (attachModel does this)',
    });
  }
  const shell: ModelProto = { ...plan.model, graph: { ...plan.model.graph, initializer: inits } };
  return inlinedModel(shell, plan.baseDir).graph.initializer;
}

function buildModel(plan: GraphPlan, name: string, nodes: NodeProto[], inputs: ValueInfoProto[], initializers: TensorProto[], outputs: ValueInfoProto[]): Uint8Array {
  const graph: GraphProto = { name, node: nodes, initializer: initializers, input: inputs, output: outputs, value_info: [] };
  const m: ModelProto = {
    ir_version: plan.model.ir_version,
    opset_import: plan.model.opset_import,
    producer_name: 'dsa-prune calibration',
    graph,
  };
  return encodeModel(m);
}

function graphInputInfo(plan: GraphPlan, name: string): ValueInfoProto {
  return plan.model.graph.input.find((i) => i.name === name) ?? { name };
}

/** The prefix sub-graph: graph inputs → everything the blocks share (and the hidden state entering block 0). */
export function buildPrefix(plan: GraphPlan): SubgraphSpec {
  const { nodes, leaves } = collect(plan, plan.prefixOutputs, (n) => plan.nodeBlock.get(n)! < 0);
  // Large float initializers (the embedding table) are inputs, fed from the weights by reference: inlined, the session
  // bytes and the session would hold two more copies of them (2 × 113 MB at SmolLM2-135M, 2 × 545 MB at Qwen2.5-0.5B).
  const byReference = new Set<string>();
  for (const t of leaves) {
    const init = plan.initializers.get(t);
    if (!init || (init.data_type !== DataType.FLOAT && init.data_type !== DataType.FLOAT16)) continue;
    if (tensorDims(init).reduce((a, d) => a * d, 1) >= PREFIX_INPUT_MIN) byReference.add(t);
  }
  return assemble(plan, 'prefix', nodes, leaves, plan.prefixOutputs, [], byReference, new Map(), false);
}

/** Prefix initializers with at least this many values are session inputs rather than inlined (buildPrefix). */
const PREFIX_INPUT_MIN = 1 << 20;

/** What a block sub-graph computes. */
export interface BlockGraphOptions {
  /** Add the statistics outputs (sum of squares; Gram when `gram`). */
  stats: boolean;
  gram: boolean;
  /** Also add Σx per feature (ReduceSum over tokens) to the statistics outputs. */
  sum?: boolean;
  /**
   * Also compute the tensors handed to later blocks (for the last block: the tensors the final norm reads, so its
   * graph has the same structure as the others; they are listed in storeOutputs but need not be fetched).
   */
  outputs: boolean;
  /**
   * Canonical form for session sharing: every tensor renamed by its position in the graph (`rename` maps the model's
   * names to them) and every float initializer only this block reads (linear weights, norm weights, biases) made an
   * input, so structurally identical blocks serialize to identical bytes.
   */
  canonical?: boolean;
  /**
   * Put the statistics nodes inside an `If` on a bool input (SubgraphSpec.gateInput): onnxruntime runs every node of
   * a graph whatever is fetched, but only the taken branch of an If, so one session can serve a statistics pass
   * (gate true) and an output pass (gate false: the reductions are skipped, their outputs are empty tensors) with one
   * arena. Needs `stats`.
   */
  gate?: boolean;
  /**
   * Also return every distinct linear input X itself (float32, StatsInput.exposeOutput), for statistics of two
   * streams that need both tensors at once (the cross Gram X̃ᵀX of asymmetric GPTQ). Needs `stats`.
   */
  expose?: boolean;
}

/** The tensors block b hands on when `outputs` is set (see BlockGraphOptions.outputs). */
export function blockOutputs(plan: GraphPlan, b: number): string[] {
  return b === plan.nBlocks - 1 && plan.carried[b]!.length === 0 ? plan.lastOutputs : plan.carried[b]!;
}

/** Sub-graph of block `b`: store tensors + graph inputs + the block's linear weights (as inputs) → stats / outputs. */
export function buildBlock(plan: GraphPlan, b: number, opts: BlockGraphOptions, storeTypes: Map<string, number>): SubgraphSpec {
  const sIn = plan.statsInputs[b]!;
  const outs: string[] = opts.outputs ? [...blockOutputs(plan, b)] : [];
  const targets = [...outs, ...(opts.stats ? sIn.map((s) => s.tensor) : [])];
  const { nodes: allNodes, leaves } = collect(plan, targets, (n) => plan.nodeBlock.get(n) === b);
  const gate = opts.gate === true && opts.stats;
  // Gated graphs: the block's tail (nodes only the handed-on outputs need, e.g. down_proj and the last residual Add)
  // goes into the else branch of the same If, so the statistics pass skips it as the output pass skips the statistics.
  // Float16 blocks keep the tail in the main graph: onnxruntime runs their fp16 nodes in float32 behind inserted Casts
  // and drops the Cast pairs between neighbours, which it cannot do across the If boundary (other bits).
  const tail = gate && outs.length > 0 && !sIn.some((s) => s.fp16) ? blockTail(plan, b, allNodes, sIn.map((s) => s.tensor), outs, storeTypes) : undefined;
  const nodes = tail ? allNodes.filter((n) => !tail.nodes.has(n)) : allNodes;
  const { extra, statsOuts } = opts.stats ? statsNodes(plan, sIn, opts) : { extra: [] as NodeProto[], statsOuts: [] as ValueInfoProto[] };
  let body = extra;
  const extraInputs: ValueInfoProto[] = [];
  if (gate) {
    // then: the statistics nodes, their results renamed <name>/then; else: an empty float tensor per statistic.
    const inBranch = (t: string, suffix: string): string => `${t}/${suffix}`;
    const finals = new Set(statsOuts.map((v) => v.name ?? ''));
    // fp16 inputs: the Cast to float32 stays in the main graph, where onnxruntime optimizes it as in the ungated graph
    // (inside the branch the statistics of the fp16 layouts came out different bits).
    const casts = extra.filter((n) => n.op_type === 'Cast');
    const thenNodes = extra.filter((n) => n.op_type !== 'Cast').map((n) => ({ ...n, output: n.output.map((o) => (finals.has(o) ? inBranch(o, 'then') : o)) }));
    const elseNodes = statsOuts.map((v) => createNode({
      op_type: 'Constant', name: `${v.name}/Empty`, output: [inBranch(v.name ?? '', 'else')],
      attribute: [{ name: 'value', type: 4, t: createTensor({ dims: [0], data_type: DataType.FLOAT, raw_data: new Uint8Array(0) }) }],
    }));
    // The tail in the else branch: its nodes as they are, each handed-on output through an Identity to <name>/else;
    // the then branch returns an empty tensor of the output's element type in its place.
    const tailOuts = tail ? tail.outs.map((o, k) => ({ name: o, type: tail.types[k]! })) : [];
    for (const o of tailOuts) {
      thenNodes.push(createNode({
        op_type: 'Constant', name: `${o.name}/Empty`, output: [inBranch(o.name, 'then')],
        attribute: [{ name: 'value', type: 4, t: createTensor({ dims: [0], data_type: o.type, raw_data: new Uint8Array(0) }) }],
      }));
    }
    if (tail) {
      elseNodes.push(...allNodes.filter((n) => tail.nodes.has(n)));
      for (const o of tailOuts) elseNodes.push(createNode({ op_type: 'Identity', name: `${o.name}/Out`, input: [o.name], output: [inBranch(o.name, 'else')] }));
    }
    const branchOuts = [...statsOuts, ...tailOuts.map((o) => valueInfo(o.name, o.type))];
    const branch = (name: string, node: NodeProto[], suffix: string): GraphProto => ({
      name, node, initializer: [], input: [], value_info: [],
      output: branchOuts.map((v) => valueInfo(inBranch(v.name ?? '', suffix), v.type?.tensor_type?.elem_type ?? DataType.FLOAT)),
    });
    body = [...casts, createNode({
      op_type: 'If', name: 'dsa_calib/StatsGate', input: [STATS_GATE], output: branchOuts.map((v) => v.name ?? ''),
      attribute: [
        { name: 'then_branch', type: 5, g: branch('statistics', thenNodes, 'then') },
        { name: 'else_branch', type: 5, g: branch(tail ? 'outputs' : 'no_statistics', elseNodes, 'else') },
      ],
    })];
    extraInputs.push({ name: STATS_GATE, type: { tensor_type: { elem_type: DataType.BOOL, shape: { dim: [] } } } });
  }
  const weightNames = new Set(plan.linearsByBlock[b]!.map((l) => l.weight));
  if (opts.canonical) {
    for (const t of leaves) {
      const init = plan.initializers.get(t);
      if (!init || plan.initOwner.get(t) !== b) continue;
      const numel = tensorDims(init).reduce((a, d) => a * d, 1);
      if ((init.data_type === DataType.FLOAT || init.data_type === DataType.FLOAT16) && numel > 1) weightNames.add(t);
    }
  }
  const exposed = opts.expose && opts.stats ? sIn.map((s) => valueInfo(s.exposeOutput, DataType.FLOAT)) : [];
  const spec = assemble(plan, opts.canonical ? 'block' : `block_${b}`, [...nodes, ...body], leaves, outs, [...statsOuts, ...exposed], weightNames, storeTypes, opts.canonical ?? false, extraInputs);
  return gate ? { ...spec, gateInput: STATS_GATE } : spec;
}

/**
 * The tail of block b: the nodes of `nodes` (the block's graph) that only the handed-on outputs need, not the linear
 * inputs, with the element type of each output (for the empty tensors the statistics branch returns in their place).
 * Undefined when there is no tail or an output's type cannot be inferred (the tail then stays in the main graph).
 */
function blockTail(
  plan: GraphPlan, b: number, nodes: NodeProto[], statsTensors: string[], outs: string[], storeTypes: Map<string, number>,
): { nodes: Set<NodeProto>; outs: string[]; types: number[] } | undefined {
  const head = new Set(collect(plan, statsTensors, (n) => plan.nodeBlock.get(n) === b).nodes);
  const tailNodes = new Set(nodes.filter((n) => !head.has(n)));
  if (tailNodes.size === 0 || tailNodes.size === nodes.length || [...tailNodes].some(hasSubgraph)) return undefined;
  // Only outputs the tail computes go through the If; the others (e.g. rotary tables block 0 computes for the later
  // blocks) stay outputs of the main graph.
  const produced = new Set([...tailNodes].flatMap((n) => n.output));
  const tailOuts = outs.filter((o) => produced.has(o));
  const types = tailOuts.map((o) => elemTypeOf(plan, o, storeTypes));
  if (tailOuts.length === 0 || types.some((t) => t === undefined)) return undefined;
  return { nodes: tailNodes, outs: tailOuts, types: types as number[] };
}

/** Ops whose output has the element type of their second input (Where: the first is the condition). */
const TYPE_FROM_SECOND = new Set(['Where']);
/** Ops whose output type is fixed. */
const FIXED_TYPE: Record<string, number> = {
  Shape: DataType.INT64, Size: DataType.INT64, Equal: DataType.BOOL, Less: DataType.BOOL, Greater: DataType.BOOL,
  LessOrEqual: DataType.BOOL, GreaterOrEqual: DataType.BOOL, Not: DataType.BOOL, And: DataType.BOOL, Or: DataType.BOOL,
};

/**
 * Element type of tensor t: from the store, an initializer, the graph's inputs / value_info / outputs, else from its
 * producer (Cast: its `to`; fixed-type ops; otherwise the type of the data input, as for every elementwise, shape,
 * MatMul and normalization op of a decoder block). Undefined when none applies.
 */
function elemTypeOf(plan: GraphPlan, t: string, storeTypes: Map<string, number>, depth = 0): number | undefined {
  const known = storeTypes.get(t) ?? plan.initializers.get(t)?.data_type;
  if (known !== undefined) return known;
  const g = plan.model.graph;
  const info = [...g.input, ...g.value_info, ...g.output].find((v) => v.name === t)?.type?.tensor_type?.elem_type;
  if (info) return info;
  const p = plan.producer.get(t);
  if (!p || depth > 200) return undefined;
  const op = p.op_type ?? '';
  if ((p.domain ?? '') !== '' && (p.domain ?? '') !== 'ai.onnx' && (p.domain ?? '') !== 'com.microsoft') return undefined;
  if (op === 'Cast') {
    const to = p.attribute.find((a) => a.name === 'to')?.i;
    return to === undefined || to === null ? undefined : toNumber(to);
  }
  if (FIXED_TYPE[op] !== undefined) return FIXED_TYPE[op];
  if (op === 'Constant' || op === 'ConstantOfShape' || hasSubgraph(p)) {
    const v = p.attribute.find((a) => a.name === 'value')?.t?.data_type;
    return v ?? (op === 'ConstantOfShape' ? DataType.FLOAT : undefined);
  }
  const from = p.input[TYPE_FROM_SECOND.has(op) ? 1 : 0];
  return from ? elemTypeOf(plan, from, storeTypes, depth + 1) : undefined;
}

/**
 * Column slicing of the Gram XᵀX: `width` is the narrowest slice (inputs narrower than 2 × width keep the one full
 * Gemm), `maxSlices` caps the number of slices (b slices emit b(b+1)/2 Gemms). `DSA_PRUNE_GRAM_SLICE=0` in the
 * environment (or `configureGramSlicing({ width: 0 })`) turns the slicing off: one full Gemm per input, as before.
 */
const gramSlicing = { width: envGramSliceWidth(), maxSlices: 8 };

function envGramSliceWidth(): number {
  const v = process.env.DSA_PRUNE_GRAM_SLICE;
  if (v === undefined || v === '') return 192;
  const w = Number(v);
  return Number.isFinite(w) && w >= 0 ? Math.floor(w) : 192;
}

/** Set the Gram slicing (see gramSlicing); returns the previous setting. For tests and benches. */
export function configureGramSlicing(opts: { width?: number; maxSlices?: number }): { width: number; maxSlices: number } {
  const prev = { ...gramSlicing };
  if (opts.width !== undefined) gramSlicing.width = Math.max(0, Math.floor(opts.width));
  if (opts.maxSlices !== undefined) gramSlicing.maxSlices = Math.max(1, Math.floor(opts.maxSlices));
  return prev;
}

/**
 * Column slices of a dIn-wide input for its Gram (widths, multiples of 16 but the last): one slice when the slicing is
 * off or dIn < 2 × width.
 */
export function gramSlices(dIn: number): number[] {
  const { width, maxSlices } = gramSlicing;
  if (width <= 0 || dIn < 2 * width) return [dIn];
  const b = Math.min(maxSlices, Math.floor(dIn / width));
  const w = Math.ceil(dIn / b / 16) * 16;
  const out: number[] = [];
  for (let r = dIn; r > 0; r -= w) out.push(Math.min(w, r));
  return out;
}

/**
 * Nodes computing G = XᵀX ([dIn × dIn] float32) from x2d [tokens × dIn]. One slice: one Gemm with transA (no
 * transposed copy of X). b slices X = [X_0 … X_{b-1}] (one Split): only the blocks on and below the diagonal are
 * multiplied, G_ij = X_iᵀ X_j for j ≤ i, ≈ (b+1)/(2b) of the multiply-adds, and the blocks above are their transposes
 * (G is symmetric), assembled by Concat. Each entry is the same K-long dot product as in the full Gemm; MLAS gave the
 * same bits at SmolLM2 / bench-12l / stories260k widths (test/calibration/gram-slices.test.ts compares them).
 */
function gramNodes(p: string, x2d: string, out: string, dIn: number, opset: number): NodeProto[] {
  const slices = gramSlices(dIn);
  const gemm = (name: string, a: string, b: string, y: string): NodeProto =>
    createNode({ op_type: 'Gemm', name, input: [a, b], output: [y], attribute: [{ name: 'transA', type: 2, i: 1 }] });
  if (slices.length === 1) return [gemm(`${p}/Gram`, x2d, x2d, out)];
  const nodes: NodeProto[] = [];
  const parts = slices.map((_, i) => `${p}/GramX${i}`);
  if (opset >= 13) {
    nodes.push(constInt64(`${p}/GramSplitConst`, `${p}/GramSplitSizes`, slices));
    nodes.push(createNode({ op_type: 'Split', name: `${p}/GramSplit`, input: [x2d, `${p}/GramSplitSizes`], output: parts, attribute: [{ name: 'axis', type: 2, i: 1 }] }));
  } else {
    nodes.push(createNode({ op_type: 'Split', name: `${p}/GramSplit`, input: [x2d], output: parts, attribute: [{ name: 'axis', type: 2, i: 1 }, { name: 'split', type: 7, ints: slices }] }));
  }
  const g = (i: number, j: number): string => `${p}/Gram${i}_${j}`;
  for (let i = 0; i < slices.length; i++) for (let j = 0; j <= i; j++) nodes.push(gemm(g(i, j), parts[i]!, parts[j]!, g(i, j)));
  const rows: string[] = [];
  for (let i = 0; i < slices.length; i++) {
    const cols: string[] = [];
    for (let j = 0; j < slices.length; j++) {
      if (j <= i) {
        cols.push(g(i, j));
      } else {
        const t = `${p}/GramT${i}_${j}`;
        nodes.push(createNode({ op_type: 'Transpose', name: t, input: [g(j, i)], output: [t], attribute: [{ name: 'perm', type: 7, ints: [1, 0] }] }));
        cols.push(t);
      }
    }
    nodes.push(createNode({ op_type: 'Concat', name: `${p}/GramRow${i}`, input: cols, output: [`${p}/GramRow${i}`], attribute: [{ name: 'axis', type: 2, i: 1 }] }));
    rows.push(`${p}/GramRow${i}`);
  }
  nodes.push(createNode({ op_type: 'Concat', name: `${p}/GramRows`, input: rows, output: [out], attribute: [{ name: 'axis', type: 2, i: 0 }] }));
  return nodes;
}

/**
 * Sub-graph of the head: what the last block hands on (its outputs in the store) → the input X of a linear outside
 * the blocks (the lm_head reads the final norm's output), with X's statistics (Σx², XᵀX when `gram`) and, with
 * `expose`, X itself. The nodes between (the final norm) are copied with their initializers.
 */
export function buildHead(plan: GraphPlan, head: StatsInput, opts: { gram: boolean; expose?: boolean }, storeTypes: Map<string, number>): SubgraphSpec {
  const { nodes, leaves } = collect(plan, [head.tensor], (n) => plan.nodeBlock.get(n)! < 0);
  const { extra, statsOuts } = statsNodes(plan, [head], opts);
  const exposed = opts.expose ? [valueInfo(head.exposeOutput, DataType.FLOAT)] : [];
  return assemble(plan, 'head', [...nodes, ...extra], leaves, [], [...statsOuts, ...exposed], new Set(), storeTypes, false);
}

/** Statistics nodes (Σx², optionally Σx and XᵀX) over each input of `sIn`, and the graph outputs they add. */
function statsNodes(plan: GraphPlan, sIn: StatsInput[], opts: { gram: boolean; sum?: boolean }): { extra: NodeProto[]; statsOuts: ValueInfoProto[] } {
  const extra: NodeProto[] = [];
  const statsOuts: ValueInfoProto[] = [];
  for (const s of sIn) {
    const p = s.sqOutput;
    let x = s.tensor;
    if (s.fp16) {
      extra.push(createNode({ op_type: 'Cast', name: `${p}/Cast`, input: [x], output: [`${p}/x32`], attribute: [{ name: 'to', type: 2, i: DataType.FLOAT }] }));
      x = `${p}/x32`;
    }
    const shapeName = `${p}/shape`;
    extra.push(constInt64(`${p}/ShapeConst`, shapeName, [-1, s.dIn]));
    extra.push(createNode({ op_type: 'Reshape', name: `${p}/Reshape`, input: [x, shapeName], output: [`${p}/x2d`] }));
    const x2d = `${p}/x2d`;
    extra.push(...sumOfSquares(p, x2d, s.sqOutput, plan.opset));
    statsOuts.push(valueInfo(s.sqOutput, DataType.FLOAT));
    if (opts.sum) {
      extra.push(...reduceRows('ReduceSum', p, 'SumAxesConst', 'sumAxes', x2d, s.sumOutput, plan.opset >= 13));
      statsOuts.push(valueInfo(s.sumOutput, DataType.FLOAT));
    }
    if (opts.gram) {
      extra.push(...gramNodes(p, x2d, s.gramOutput, s.dIn, plan.opset));
      statsOuts.push(valueInfo(s.gramOutput, DataType.FLOAT));
    }
  }
  return { extra, statsOuts };
}

/**
 * How Σx² over the rows of x2d is computed. `mul-sum` (default): Mul(x, x) then ReduceSum over axis 0. `sum-square`:
 * one ReduceSumSquare (before session 7). Both sum each column in row order in float32 from the same float32 squares,
 * so they give the same bits (test/calibration/sq-reduce.test.ts checks both against a JS loop and each other), but
 * onnxruntime's CPU ReduceSumSquare has no fast path for a reduction over the leading axis: it walks each column with
 * the row stride, 5–10 × slower than ReduceSum's row-wise vector adds at 4096 × 1536 (17.6 % of a SmolLM2-135M
 * statistics run, docs/scale.md). `DSA_PRUNE_SQ_REDUCE=sum-square` in the environment selects the old node.
 */
export type SqReduction = 'mul-sum' | 'sum-square';
let sqReduction: SqReduction = process.env.DSA_PRUNE_SQ_REDUCE === 'sum-square' ? 'sum-square' : 'mul-sum';

/** Set how Σx² is computed (see SqReduction); returns the previous setting. For tests and benches. */
export function configureSqReduction(r: SqReduction): SqReduction {
  if (r !== 'mul-sum' && r !== 'sum-square') throw new DsaPruneError(`calibration: sq reduction must be 'mul-sum' or 'sum-square', got ${String(r)}`);
  const prev = sqReduction;
  sqReduction = r;
  return prev;
}

/** Nodes computing Σ_rows x2d² ([dIn] float32) into `out` (see SqReduction). */
function sumOfSquares(p: string, x2d: string, out: string, opset: number): NodeProto[] {
  if (sqReduction === 'sum-square') return reduceRows('ReduceSumSquare', p, 'AxesConst', 'axes', x2d, out, opset >= 18);
  const sq = `${p}/x2d_sq`;
  return [
    createNode({ op_type: 'Mul', name: `${p}/Square`, input: [x2d, x2d], output: [sq] }),
    ...reduceRows('ReduceSum', p, 'AxesConst', 'axes', sq, out, opset >= 13, `${p}/SumSquares`),
  ];
}

/**
 * `op` (ReduceSumSquare / ReduceSum) of x2d over axis 0, without keepdims. The axes become an input from opset 18
 * (ReduceSumSquare) or 13 (ReduceSum): `axesAsInput` says which form; before that they are an attribute. Node names
 * `<p>/<op>` and `<p>/<constName>` → `<p>/<axesName>` as the graphs have always had them.
 */
function reduceRows(
  op: string, p: string, constName: string, axesName: string, x2d: string, out: string, axesAsInput: boolean, nodeName = `${p}/${op}`,
): NodeProto[] {
  if (axesAsInput) {
    return [
      constInt64(`${p}/${constName}`, `${p}/${axesName}`, [0]),
      createNode({ op_type: op, name: nodeName, input: [x2d, `${p}/${axesName}`], output: [out], attribute: [{ name: 'keepdims', type: 2, i: 0 }] }),
    ];
  }
  return [createNode({
    op_type: op, name: nodeName, input: [x2d], output: [out],
    attribute: [{ name: 'axes', type: 7, ints: [0] }, { name: 'keepdims', type: 2, i: 0 }],
  })];
}

function constInt64(nodeName: string, out: string, values: number[]): NodeProto {
  const t = createTensor({ dims: [values.length], data_type: DataType.INT64, raw_data: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
  return createNode({ op_type: 'Constant', name: nodeName, output: [out], attribute: [{ name: 'value', type: 4, t }] });
}

function assemble(
  plan: GraphPlan, name: string, nodes: NodeProto[], leaves: Set<string>, storeOutputs: string[], statsOuts: ValueInfoProto[],
  weightNames: Set<string>, storeTypes: Map<string, number>, canonical: boolean, extraInputs: ValueInfoProto[] = [],
): SubgraphSpec {
  const inputs: ValueInfoProto[] = [...extraInputs];
  const inits: TensorProto[] = [];
  const storeInputs: string[] = [];
  const graphInputs: string[] = [];
  const weightInputs: SubgraphSpec['weightInputs'] = [];
  for (const t of leaves) {
    const init = plan.initializers.get(t);
    if (init && weightNames.has(t)) {
      const fp16 = init.data_type === DataType.FLOAT16;
      weightInputs.push({ name: t, dims: tensorDims(init), fp16 });
      inputs.push({ name: t, type: { tensor_type: { elem_type: init.data_type, shape: { dim: tensorDims(init).map((d) => ({ dim_value: d })) } } } });
    } else if (init) {
      inits.push(init);
    } else if (plan.graphInputs.has(t)) {
      graphInputs.push(t);
      inputs.push(graphInputInfo(plan, t));
    } else {
      const et = storeTypes.get(t);
      if (et === undefined) throw new DsaPruneError(`calibration: internal error: ${name} reads ${t}, which no earlier stage produced`);
      storeInputs.push(t);
      inputs.push(valueInfo(t, et));
    }
  }
  const outputs = [...storeOutputs.map((o) => valueInfo(o)), ...statsOuts];
  const initializers = inlineInitializers(plan, inits);
  if (!canonical) {
    const bytes = buildModel(plan, name, nodes, inputs, initializers, outputs);
    return { bytes, storeInputs, graphInputs, weightInputs, storeOutputs, rename: new Map() };
  }
  const c = canonicalize(plan, nodes, inputs, initializers, outputs);
  const bytes = buildModel(plan, name, c.nodes, c.inputs, c.initializers, c.outputs);
  return { bytes, storeInputs, graphInputs, weightInputs, storeOutputs, rename: c.rename };
}

/**
 * Rename every tensor to `dsa_t<k>`, k = order of first appearance (inputs,
 * initializers, then node inputs/outputs in topological order), node names to `dsa_n<k>`, and list the outputs in
 * canonical order: the serialized graph then depends on the structure alone (ops, attributes, shapes, constant
 * values), not on the names the exporter gave each block.
 */
function canonicalize(
  plan: GraphPlan, nodes: NodeProto[], inputs: ValueInfoProto[], initializers: TensorProto[], outputs: ValueInfoProto[],
): { nodes: NodeProto[]; inputs: ValueInfoProto[]; initializers: TensorProto[]; outputs: ValueInfoProto[]; rename: Map<string, string> } {
  const rename = new Map<string, string>();
  const order = new Map<string, number>();
  const name = (t: string): string => {
    if (!t) return t;
    let r = rename.get(t);
    if (r === undefined) {
      order.set(t, rename.size);
      r = `dsa_t${rename.size}`;
      rename.set(t, r);
    }
    return r;
  };
  // Identity nodes (exporters alias deduplicated weights through them) are dropped: their output is their input.
  const alias = new Map<string, string>();
  const graphOut = new Set(outputs.map((v) => v.name ?? ''));
  const kept = nodes.filter((n) => {
    if (n.op_type !== 'Identity' || (n.domain ?? '') !== '' || graphOut.has(n.output[0] ?? '')) return true;
    alias.set(n.output[0]!, alias.get(n.input[0]!) ?? n.input[0]!);
    return false;
  });
  const real = (t: string): string => alias.get(t) ?? t;
  // Names by first use in node order, so the order in which inputs were discovered does not matter.
  const renameNode = (n: NodeProto, nodeName: string): NodeProto => {
    const c: NodeProto = { ...n, name: nodeName, input: n.input.map((t) => name(real(t))), output: n.output.map(name) };
    delete (c as { doc_string?: string }).doc_string;
    // If branches (the statistics gate): the same namespace, their nodes after the If's inputs, in branch order.
    if (n.attribute.some((a) => a.g)) {
      c.attribute = n.attribute.map((a) => (a.g ? {
        ...a, g: {
          ...a.g, name: a.name, node: a.g.node.map((x, j) => renameNode(x, `${nodeName}_${a.name}_${j}`)),
          output: a.g.output.map((v) => ({ ...v, name: name(v.name ?? '') })),
        },
      } : a));
    }
    return c;
  };
  const cNodes = kept.map((n, k) => renameNode(n, `dsa_n${k}`));
  const byOrder = <T extends { name?: string }>(xs: T[]): T[] =>
    xs.filter((x) => order.has(x.name ?? '')).sort((a, b) => order.get(a.name ?? '')! - order.get(b.name ?? '')!).map((x) => ({ ...x, name: name(x.name ?? '') }));
  const cInputs = byOrder(inputs);
  const cInits = byOrder(initializers);
  const cOutputs = byOrder(outputs);
  return { nodes: cNodes, inputs: cInputs, initializers: cInits, outputs: cOutputs, rename };
}
