/**
 * Legacy merged decoders (`decoder_model_merged.onnx`, optimum): the whole decoder sits in the two branches of an
 * `If(use_cache_branch)` node, both reading the same outer-scope weights. Calibration splits a graph by its main-graph
 * nodes, so it first inlines one branch in place of the `If` — a shallow copy; the weights stay the same TensorProtos,
 * so pruning them prunes both branches.
 */
import { createNode, type GraphProto, type ModelProto, type NodeProto } from '../model/onnx.js';
import type { LinearInfo } from '../types.js';

function branches(n: NodeProto): { then?: GraphProto; else?: GraphProto } {
  const get = (name: string) => n.attribute.find((a) => a.name === name)?.g ?? undefined;
  return { then: get('then_branch'), else: get('else_branch') };
}

/** Names of all nodes of a graph and its subgraphs. */
function nodeNames(g: GraphProto, into = new Set<string>()): Set<string> {
  for (const n of g.node) {
    if (n.name) into.add(n.name);
    for (const a of n.attribute ?? []) {
      if (a.g) nodeNames(a.g, into);
      for (const sg of a.graphs ?? []) nodeNames(sg, into);
    }
  }
  return into;
}

/**
 * `model` with every main-graph `If` whose branches hold linears replaced by the branch holding more of them (the
 * `else` branch — no cache, what calibration runs — on a tie), its outputs renamed to the If's through Identity nodes.
 * Returns `model` itself when there is no such If.
 */
export function inlineMergedBranches(model: ModelProto, linears: LinearInfo[]): ModelProto {
  const g = model.graph;
  const wanted = new Set(linears.map((l) => l.node).filter(Boolean));
  if (wanted.size === 0 || !g.node.some((n) => n.op_type === 'If')) return model;
  const count = (b?: GraphProto) => (b ? [...nodeNames(b)].filter((x) => wanted.has(x)).length : 0);
  const node: NodeProto[] = [];
  const initializer = [...(g.initializer ?? [])];
  const have = new Set(initializer.map((t) => t.name));
  const input = [...g.input];
  let changed = false;
  for (const n of g.node) {
    const { then: t, else: e } = n.op_type === 'If' ? branches(n) : {};
    const [ct, ce] = [count(t), count(e)];
    const pick = ce >= ct ? e : t;
    if (!pick || Math.max(ct, ce) === 0) {
      node.push(n);
      continue;
    }
    changed = true;
    node.push(...pick.node);
    // Branch-local initializers (an export that did not hoist them) become main-graph ones.
    for (const init of pick.initializer ?? []) {
      if (have.has(init.name)) continue;
      initializer.push(init);
      have.add(init.name);
    }
    pick.output.forEach((o, i) => {
      if (n.output[i]) node.push(createNode({ op_type: 'Identity', name: `${n.name ?? 'If'}/inlined/${i}`, input: [o.name ?? ''], output: [n.output[i]] }));
    });
  }
  if (!changed) return model;
  // The condition (use_cache_branch) is no longer read; calibration feeds only the inputs its sub-graphs read.
  const read = new Set(node.flatMap((n) => n.input));
  return { ...model, graph: { ...g, node, initializer, input: input.filter((i) => read.has(i.name ?? '') || !g.node.some((n) => n.op_type === 'If' && n.input[0] === i.name)) } } as ModelProto;
}
