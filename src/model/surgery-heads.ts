/**
 * Graph surgery for structured head pruning (`--target heads`): remove whole KV groups (one KV head and the query
 * heads that read it) from one decoder block's attention — rows of q/k/v (or the sections of a fused qkv / c_attn)
 * and their biases, columns of o — and rewrite every int64 shape constant that spells a head count or a width made of
 * heads (the head-split Reshape, repeat_kv's Expand / Reshape, the merge Reshape before o, a fused projection's Split
 * sizes or Slice bounds), and the declared KV-cache input/output shapes. transformers.js builds the KV cache from the
 * session's input metadata and reads `num_key_value_heads` / `head_dim` from config.json, so the kept count must be
 * the same in every block (`headsConfigPatch` gives the config.json fields). Knows nothing about scores or budgets.
 *
 * Refused before any edit (`attentionLayout` / `planHeadRewrites`): a merged decoder (If branches), fused attention
 * contrib ops (GroupQueryAttention, MultiHeadAttention, Attention, …: their head counts are attributes of a kernel
 * with its own cache layout), a block whose q/k/v/o do not match the config's head counts, a fused qkv whose split
 * is neither a Split nor Slices on its last axis, and shape constants that cannot be classified.
 */
import { DsaPruneError } from '../errors.js';
import type { LinearInfo } from '../types.js';
import { DataType, createTensor, tensorBytes, tensorDims, toNumber, type GraphProto, type NodeProto, type TensorProto } from './onnx.js';
import type { PrunableModel } from './prunable.js';
import { SurgeryLog, privatizeBiases, readMainInitializer, writeMainInitializer, type FfnLayout } from './surgery.js';

/** Ops whose head counts are kernel attributes (contrib fused attention): the heads target refuses them. */
const FUSED_ATTENTION_OPS = new Set([
  'GroupQueryAttention', 'MultiHeadAttention', 'Attention', 'PackedAttention', 'PackedMultiHeadAttention',
  'DecoderMaskedMultiHeadAttention', 'DecoderMaskedSelfAttention', 'SparseAttention', 'QAttention', 'LongformerAttention',
]);

/** The attention of one block as the heads target sees it. */
export interface AttentionLayout {
  block: number;
  /** Query heads H, KV heads (groups) G, head dim d; H = G · nRep. */
  heads: number;
  kvHeads: number;
  headDim: number;
  nRep: number;
  /** Separate projections, or one fused qkv (rows: q [H·d] | k [G·d] | v [G·d]). */
  q?: LinearInfo;
  k?: LinearInfo;
  v?: LinearInfo;
  qkv?: LinearInfo;
  o: LinearInfo;
  /** Bias initializers (after `privatizeHeadBiases`), by linear name; o's output bias. */
  biases: Map<string, string>;
  oBias?: string;
  /** Linear parameters one group holds in this block: its q/k/v rows and its o columns. */
  paramsPerGroup: number;
  /** `/model/layers.3/self_attn/`: the scope whose shape constants are examined. */
  scope: string;
}

/** Head counts of a config (num_attention_heads / n_head, num_key_value_heads, head_dim), undefined when absent. */
export function configHeads(config: Record<string, unknown>): { heads?: number; kvHeads?: number; headDim?: number; hidden?: number } {
  const num = (...keys: string[]): number | undefined => {
    for (const k of keys) if (typeof config[k] === 'number') return config[k] as number;
    return undefined;
  };
  const heads = num('num_attention_heads', 'n_head', 'num_heads');
  const hidden = num('hidden_size', 'n_embd', 'd_model');
  const kvHeads = config.multi_query === true ? 1 : num('num_key_value_heads', 'n_head_kv', 'num_kv_heads') ?? heads;
  const headDim = num('head_dim') ?? (heads && hidden ? hidden / heads : undefined);
  return { heads, kvHeads, headDim, hidden };
}

/** config.json fields after keeping `kvHeadsAfter` groups: head counts (under the keys the config uses) and head_dim. */
export function headsConfigPatch(config: Record<string, unknown>, kvHeadsAfter: number): Record<string, number> {
  const { heads, kvHeads, headDim } = configHeads(config);
  const nRep = heads! / kvHeads!;
  const patch: Record<string, number> = {};
  const headsKey = ['num_attention_heads', 'n_head', 'num_heads'].find((k) => typeof config[k] === 'number')!;
  patch[headsKey] = kvHeadsAfter * nRep;
  const kvKey = ['num_key_value_heads', 'n_head_kv', 'num_kv_heads'].find((k) => typeof config[k] === 'number');
  if (kvKey) patch[kvKey] = kvHeadsAfter;
  // head_dim explicitly: readers that derive it from hidden_size / num_attention_heads would get it wrong now.
  patch.head_dim = headDim!;
  return patch;
}

function nodeOf(g: GraphProto, l: LinearInfo): NodeProto {
  const n = g.node.find((x) => x.name === l.node);
  if (!n) throw new DsaPruneError(`node ${l.node} of ${l.name} is not in the main graph`, { code: 'unsupported', hint: 'Structured pruning edits the main graph of onnx/model.onnx only.' });
  return n;
}

function scopeOf(names: string[]): string {
  const parts = names.map((n) => n.split('/'));
  const out: string[] = [];
  for (let i = 0; ; i++) {
    const s = parts[0]![i];
    if (s === undefined || parts.some((p) => p[i] !== s || i >= p.length - 1)) break;
    out.push(s);
  }
  return out.join('/') + '/';
}

/**
 * The attention of block b, or a DsaPruneError (code `refused`) saying why the heads target cannot take it.
 * Analysis only; checks the whole graph for fused attention ops and merged decoders.
 */
export function attentionLayout(pm: PrunableModel, b: number): AttentionLayout {
  const g = pm.proto.graph;
  const file = pm.source.onnxPath || 'the model';
  const where = `block ${b} of ${file}`;
  const hint = 'The heads target needs q_proj/k_proj/v_proj (or a fused qkv_proj / c_attn) and o_proj per block, plain MatMul/Gemm attention, and num_attention_heads (and num_key_value_heads) in config.json.';
  if (g.node.some((n) => n.attribute.some((a) => a.g || (a.graphs?.length ?? 0) > 0))) {
    throw new DsaPruneError(`the heads target cannot edit ${file}: its decoder lives in If branches (a merged decoder)`, {
      code: 'unsupported', hint: 'Export or load the single-graph onnx/model.onnx instead of decoder_model_merged.onnx.',
    });
  }
  const fused = g.node.find((n) => FUSED_ATTENTION_OPS.has(n.op_type ?? ''));
  if (fused) {
    throw new DsaPruneError(`the heads target cannot rewrite ${file}: it uses the fused attention op ${fused.op_type} (${fused.name ?? 'unnamed'}), whose head counts are kernel attributes`, {
      code: 'unsupported', hint: 'Use an export with plain MatMul/Softmax attention (the optimum / torch.onnx export without --optimize), or prune --target ffn only.',
    });
  }
  const { heads: H, kvHeads: G, headDim: d } = configHeads(pm.config);
  if (!H || !G || !d || !Number.isInteger(d) || H % G !== 0) {
    throw new DsaPruneError(`the heads target cannot read the head counts of ${file} from config.json (heads ${H}, KV heads ${G}, head_dim ${d})`, { code: 'unsupported', hint });
  }
  const ls = pm.linears.filter((l) => l.block === b);
  const one = (role: string): LinearInfo | undefined => {
    const xs = ls.filter((l) => l.role === role);
    if (xs.length > 1) throw new DsaPruneError(`the heads target cannot take ${where}: it has ${xs.length} ${role} projections`, { code: 'unsupported', hint });
    return xs[0];
  };
  const q = one('q');
  const k = one('k');
  const v = one('v');
  const qkv = one('qkv');
  const o = one('o');
  if (!o) throw new DsaPruneError(`the heads target cannot take ${where}: no o projection found`, { code: 'unsupported', hint });
  const bad = (msg: string): never => { throw new DsaPruneError(`the heads target cannot take ${where}: ${msg}`, { code: 'unsupported', hint }); };
  if (qkv && (q || k || v)) bad('it has both a fused qkv and separate q/k/v projections');
  if (!qkv && !(q && k && v)) bad('q, k and v projections not all found');
  if (qkv && qkv.dOut !== (H + 2 * G) * d) bad(`${qkv.name} has ${qkv.dOut} outputs, the config's heads need (${H} + 2·${G})·${d} = ${(H + 2 * G) * d}`);
  if (q && q.dOut !== H * d) bad(`${q.name} has ${q.dOut} outputs, ${H} heads × ${d} = ${H * d} expected`);
  for (const x of [k, v]) if (x && x.dOut !== G * d) bad(`${x.name} has ${x.dOut} outputs, ${G} KV heads × ${d} = ${G * d} expected`);
  if (o.dIn !== H * d) bad(`${o.name} has ${o.dIn} inputs, ${H} heads × ${d} = ${H * d} expected`);
  for (const l of [q, k, v, qkv, o]) {
    if (!l) continue;
    if (!g.initializer.some((t) => t.name === l.weight)) bad(`weight ${l.weight} of ${l.name} is not an initializer of the main graph`);
    if (pm.linears.filter((x) => x.weight === l.weight).length > 1) bad(`weight ${l.weight} of ${l.name} is shared by several linears`);
  }
  const dIn = (qkv ?? q)!.dIn;
  const nRep = H / G;
  const paramsPerGroup = (nRep + 2) * d * dIn + nRep * d * o.dOut;
  const scope = scopeOf([(qkv ?? q)!.node, o.node]);
  if (!/\.\d+\//.test(scope)) bad(`its attention nodes (${(qkv ?? q)!.node}, ${o.node}) share no block scope`);
  return { block: b, heads: H, kvHeads: G, headDim: d, nRep, ...(q ? { q } : {}), ...(k ? { k } : {}), ...(v ? { v } : {}), ...(qkv ? { qkv } : {}), o, biases: new Map(), paramsPerGroup, scope };
}

/** Give every q/k/v/o bias its own initializer (exporters deduplicate equal tensors); returns the copies' names. */
export function privatizeHeadBiases(pm: PrunableModel, lay: AttentionLayout, log?: SurgeryLog): Set<string> {
  const ins = (lay.qkv ? [lay.qkv] : [lay.q!, lay.k!, lay.v!]).map((linear) => ({ linear, offsets: [0] as number[], bias: undefined as string | undefined }));
  const ffnLike: FfnLayout = { block: lay.block, width: lay.o.dIn, inputs: ins, down: lay.o, paramsPerChannel: 0 };
  const added = privatizeBiases(pm, ffnLike, log);
  for (const i of ins) if (i.bias) lay.biases.set(i.linear.name, i.bias);
  if (ffnLike.downBias) lay.oBias = ffnLike.downBias;
  return added;
}

// ---------------------------------------------------------------------------------------------------------------
// Shape constants

function int64Values(t: TensorProto): bigint[] | undefined {
  if (t.data_type !== DataType.INT64) return undefined;
  if (t.int64_data?.length) return t.int64_data.map((x) => BigInt(toNumber(x)));
  const b = tensorBytes(t);
  if (b.length % 8 !== 0) return undefined;
  const c = new Uint8Array(b.length);
  c.set(b);
  return Array.from(new BigInt64Array(c.buffer));
}

/** An int64 constant feeding input `idx` of `consumer`: a Constant node's value or an initializer. */
interface ConstRef {
  consumer: NodeProto;
  idx: number;
  values: bigint[];
}

function constAt(g: GraphProto, consumer: NodeProto, idx: number): ConstRef | undefined {
  const name = consumer.input[idx];
  if (!name) return undefined;
  const p = g.node.find((n) => n.output.includes(name));
  let t: TensorProto | undefined;
  if (p?.op_type === 'Constant') t = p.attribute.find((a) => a.name === 'value' && a.t)?.t;
  else if (!p) t = g.initializer.find((x) => x.name === name);
  const values = t ? int64Values(t) : undefined;
  return values ? { consumer, idx, values } : undefined;
}

/** One planned rewrite: input `idx` of `consumer` becomes the int64 tensor `values` (same dims). */
export interface ShapeRewrite {
  consumer: NodeProto;
  idx: number;
  values: bigint[];
  why: string;
}

/** Elements of a shape tensor built by Concat (each input a constant or a 1-element dynamic value), or a constant. */
function shapeElements(g: GraphProto, shapeName: string): { el: ({ ref: ConstRef; off: number } | undefined)[] } | undefined {
  let name = shapeName;
  for (let hop = 0; hop < 6; hop++) {
    const p = g.node.find((n) => n.output.includes(name));
    if (!p) {
      const t = g.initializer.find((x) => x.name === name);
      const values = t ? int64Values(t) : undefined;
      return values ? { el: values.map((_, off) => ({ ref: { consumer: undefined as unknown as NodeProto, idx: -1, values }, off })) } : undefined;
    }
    if (p.op_type === 'Concat') {
      const el: ({ ref: ConstRef; off: number } | undefined)[] = [];
      for (let i = 0; i < p.input.length; i++) {
        const c = constAt(g, p, i);
        if (c) c.values.forEach((_, off) => el.push({ ref: c, off }));
        else {
          const q = g.node.find((n) => n.output.includes(p.input[i]!));
          if (q?.op_type !== 'Unsqueeze') return undefined; // unknown length
          el.push(undefined);
        }
      }
      return { el };
    }
    if (p.op_type === 'Constant') {
      const t = p.attribute.find((a) => a.name === 'value' && a.t)?.t;
      const values = t ? int64Values(t) : undefined;
      return values ? { el: values.map((_, off) => ({ ref: { consumer: undefined as unknown as NodeProto, idx: -1, values }, off })) } : undefined;
    }
    if (p.op_type === 'Where') name = p.input[2]!;
    else if (p.op_type === 'Reshape' || p.op_type === 'Cast' || p.op_type === 'Identity') name = p.input[0]!;
    else return undefined;
  }
  return undefined;
}

/**
 * Every shape constant of block `lay.block`'s attention to rewrite for `G2` kept groups, found by position (not by
 * value alone, since head counts collide with axes and repeat factors):
 * - a Reshape / Expand shape ending in head_dim: [b, s, H|G, d] or [b, H|G, s, d] → the static head entry (H → H', G → G');
 *   [b, G, nRep, s, d] (repeat_kv's Expand) → entry 1 (G → G');
 * - the Reshape chain that feeds o: a static last entry H·d → H'·d;
 * - a fused projection: the Reshape of its output ([b, s, (H+2G)·d]), Split sizes [H·d, G·d, G·d], Slice bounds on its
 *   last axis (0, H·d, (H+G)·d, (H+2G)·d).
 * Shape inputs given directly as initializers are rewritten by a private copy. Throws (refused) on a static entry it
 * cannot classify.
 */
export function planHeadRewrites(pm: PrunableModel, lay: AttentionLayout, G2: number): ShapeRewrite[] {
  const g = pm.proto.graph;
  const { heads: H, kvHeads: G, headDim: d, nRep } = lay;
  const H2 = G2 * nRep;
  const out: ShapeRewrite[] = [];
  const where = `block ${lay.block} of ${pm.source.onnxPath || 'the model'}`;
  const refuse = (msg: string): never => {
    throw new DsaPruneError(`the heads target cannot rewrite ${where}: ${msg}`, {
      code: 'unsupported', hint: 'This export spells head counts in a way dsa-prune does not recognise; prune --target ffn only, or export with dynamic (-1) head dimensions.',
    });
  };
  // Group edits by (consumer, idx) so several entries of one constant end in one rewrite.
  const pending = new Map<string, ShapeRewrite>();
  const edit = (ref: ConstRef, off: number, to: number, why: string, owner: NodeProto, ownerIdx: number): void => {
    const consumer = ref.idx >= 0 ? ref.consumer : owner;
    const idx = ref.idx >= 0 ? ref.idx : ownerIdx;
    const key = `${consumer.name ?? consumer.output[0]}#${idx}`;
    const r = pending.get(key) ?? { consumer, idx, values: [...ref.values], why };
    r.values[off] = BigInt(to);
    pending.set(key, r);
  };
  const inScope = (n: NodeProto): boolean => (n.name ?? '').startsWith(lay.scope);
  const static_ = (e: { ref: ConstRef; off: number } | undefined): number | undefined => (e ? Number(e.ref.values[e.off]!) : undefined);

  // o's input chain (Reshape hops back from o's input).
  const oNode = nodeOf(g, lay.o);
  const oChain = new Set<NodeProto>();
  let cur = oNode.input[0];
  for (let hop = 0; hop < 4 && cur; hop++) {
    const p = g.node.find((n) => n.output.includes(cur!));
    if (!p || p.op_type !== 'Reshape') break;
    oChain.add(p);
    cur = p.input[0];
  }
  for (const n of g.node) {
    if (!inScope(n) || (n.op_type !== 'Reshape' && n.op_type !== 'Expand')) continue;
    if (lay.qkv && n.name?.startsWith(lay.qkv.node.slice(0, lay.qkv.node.lastIndexOf('/') + 1))) continue; // the fused projection's own scope: below
    const s = shapeElements(g, n.input[1]!);
    if (!s) continue;
    const el = s.el;
    const last = static_(el[el.length - 1]);
    if (oChain.has(n)) {
      if (last === H * d) edit(el[el.length - 1]!.ref, el[el.length - 1]!.off, H2 * d, 'merge reshape before o', n, 1);
      else if (last !== undefined && last !== -1 && last !== 0) refuse(`the Reshape ${n.name} before ${lay.o.name} has a static width ${last}, not ${H}·${d}`);
      continue;
    }
    if (last !== d) continue;
    if (el.length === 5 && n.op_type === 'Expand') {
      const x = static_(el[1]);
      if (x === G) edit(el[1]!.ref, el[1]!.off, G2, 'repeat_kv expand', n, 1);
      else if (x !== undefined && x !== -1) refuse(`the Expand ${n.name} has ${x} at its KV-head axis, the config says ${G}`);
      continue;
    }
    if (el.length !== 4) continue;
    for (const pos of [1, 2]) {
      const x = static_(el[pos]);
      if (x === undefined || x === -1 || x === 0) continue;
      if (x === H) edit(el[pos]!.ref, el[pos]!.off, H2, 'head reshape', n, 1);
      else if (x === G) edit(el[pos]!.ref, el[pos]!.off, G2, 'KV-head reshape', n, 1);
      else refuse(`the ${n.op_type} ${n.name} has a static ${x} in a head-shaped [·, ·, ·, ${d}] target (heads ${H}, KV heads ${G})`);
    }
  }
  if (lay.qkv) {
    const total = (H + 2 * G) * d;
    const total2 = (H2 + 2 * G2) * d;
    const qNode = nodeOf(g, lay.qkv);
    // Consumers of the fused output (through its bias Add and a Reshape of the fused projection's own scope).
    const reach = new Set<string>(qNode.output);
    const projScope = lay.qkv.node.slice(0, lay.qkv.node.lastIndexOf('/') + 1);
    for (const n of g.node) {
      if (!n.input.some((i) => reach.has(i))) continue;
      if (n.op_type === 'Add' || (n.op_type === 'Reshape' && (n.name ?? '').startsWith(projScope))) {
        n.output.forEach((o) => reach.add(o));
        if (n.op_type === 'Reshape') {
          const s = shapeElements(g, n.input[1]!);
          const lastE = s?.el[s.el.length - 1];
          if (static_(lastE) === total) edit(lastE!.ref, lastE!.off, total2, 'fused projection reshape', n, 1);
          else if (static_(lastE) !== -1) refuse(`the Reshape ${n.name} of ${lay.qkv.name}'s output has no static width ${total}`);
        }
      }
    }
    const bounds = new Map<number, number>([[0, 0], [H * d, H2 * d], [(H + G) * d, (H2 + G2) * d], [total, total2]]);
    let split = 0;
    for (const n of g.node) {
      if (!n.input[0] || !reach.has(n.input[0])) continue;
      if (n.op_type === 'Split') {
        split++;
        const c = constAt(g, n, 1);
        const sizes = c?.values.map(Number);
        if (!c || sizes!.length !== 3 || sizes![0] !== H * d || sizes![1] !== G * d || sizes![2] !== G * d) refuse(`the Split ${n.name} of ${lay.qkv.name} does not split [${H * d}, ${G * d}, ${G * d}]`);
        c!.values.forEach((_, off) => edit(c!, off, [H2 * d, G2 * d, G2 * d][off]!, 'fused split sizes', n, 1));
      } else if (n.op_type === 'Slice') {
        split++;
        const axes = constAt(g, n, 3)?.values.map(Number);
        if (!axes || axes.length !== 1 || !(axes[0] === -1 || axes[0] === 2)) refuse(`the Slice ${n.name} of ${lay.qkv.name} is not on its last axis`);
        for (const idx of [1, 2]) {
          const c = constAt(g, n, idx);
          if (!c || c.values.length !== 1) refuse(`the Slice ${n.name} of ${lay.qkv.name} has no constant ${idx === 1 ? 'start' : 'end'}`);
          const x = Number(c!.values[0]!);
          if (c!.values[0]! >= 9223372036854775807n || x === -1) continue;
          const to = bounds.get(x);
          if (to === undefined) refuse(`the Slice ${n.name} of ${lay.qkv.name} has a bound ${x} that is not a section edge`);
          if (to !== x) edit(c!, 0, to!, 'fused slice bound', n, idx);
        }
      } else if (!['Shape', 'Add'].includes(n.op_type ?? '') && !(n.op_type === 'Reshape' && (n.name ?? '').startsWith(projScope))) {
        refuse(`${lay.qkv.name}'s output feeds ${n.op_type} ${n.name}, not a Split or Slices`);
      }
    }
    if (split === 0) refuse(`no Split or Slice of ${lay.qkv.name}'s output found`);
  }
  out.push(...pending.values());
  return out;
}

/** Apply planned rewrites: a Constant read only here is edited in place, anything else gets a private initializer. */
function applyRewrites(g: GraphProto, block: number, rewrites: ShapeRewrite[], log?: SurgeryLog): void {
  let k = 0;
  for (const r of rewrites) {
    const name = r.consumer.input[r.idx]!;
    const readers = g.node.filter((n) => n.input.includes(name)).length;
    const p = g.node.find((n) => n.output.includes(name));
    const src = p?.op_type === 'Constant' ? p.attribute.find((a) => a.name === 'value' && a.t)?.t : g.initializer.find((t) => t.name === name);
    const dims = src ? tensorDims(src) : [r.values.length];
    const raw = new Uint8Array(BigInt64Array.from(r.values).buffer);
    if (p?.op_type === 'Constant' && readers === 1 && src) {
      log?.tensor(src);
      src.raw_data = raw;
      delete src.int64_data;
      src.dims = dims;
    } else {
      const t = createTensor({ name: `${name}_dsa_heads_${block}_${k++}`, dims, data_type: DataType.INT64 });
      t.raw_data = raw;
      g.initializer.push(t);
      r.consumer.input[r.idx] = t.name!;
    }
  }
}

function setDim(vi: { type?: { tensor_type?: { shape?: { dim?: { dim_value?: unknown; dim_param?: string }[] } } } }, axis: number, from: number, to: number): void {
  const dim = vi.type?.tensor_type?.shape?.dim?.[axis];
  if (dim && dim.dim_value !== undefined && dim.dim_value !== null && toNumber(dim.dim_value as number) === from) dim.dim_value = to;
}

/**
 * Keep only the KV groups `keep` (sorted ascending) of block `lay.block`: q rows of their query heads, k/v rows of
 * their KV heads (the sections of a fused qkv), the matching biases, o's columns; shape constants rewritten
 * (`planHeadRewrites`, planned here again for the current counts), the block's past_key_values / present shapes and
 * stale value_info of the attention scope updated. Weights are read as they are now (zeroed o columns are dropped).
 */
export function removeHeadGroups(pm: PrunableModel, lay: AttentionLayout, keep: Int32Array, log?: SurgeryLog): void {
  const { kvHeads: G, headDim: d, nRep } = lay;
  const G2 = keep.length;
  if (G2 < 1) throw new DsaPruneError(`removing every KV group of block ${lay.block} would empty its attention`, { code: 'unsupported' });
  for (let i = 0; i < G2; i++) {
    if (!(keep[i]! >= 0 && keep[i]! < G) || (i > 0 && keep[i]! <= keep[i - 1]!)) throw new DsaPruneError(`removeHeadGroups: kept groups must be increasing indices in [0, ${G})`);
  }
  if (G2 === G) return;
  const g = pm.proto.graph;
  const rewrites = planHeadRewrites(pm, lay, G2);
  log?.graph(g);
  // Row indices kept in the q space (H·d) and in the KV space (G·d).
  const qRows: number[] = [];
  const kvRows: number[] = [];
  for (const grp of keep) {
    for (let r = 0; r < nRep; r++) for (let j = 0; j < d; j++) qRows.push((grp * nRep + r) * d + j);
    for (let j = 0; j < d; j++) kvRows.push(grp * d + j);
  }
  const H = lay.heads;
  const sliceRows = (l: LinearInfo, rows: number[]): void => {
    const w = pm.readWeight(l);
    const nw = new Float32Array(rows.length * l.dIn);
    rows.forEach((r, i) => nw.set(w.subarray(r * l.dIn, (r + 1) * l.dIn), i * l.dIn));
    const bias = lay.biases.get(l.name);
    if (bias) {
      const b = readMainInitializer(pm, bias);
      writeMainInitializer(pm, bias, Float32Array.from(rows, (r) => b[r]!), [rows.length], log);
    }
    log?.linear(l);
    l.dOut = rows.length;
    const t = g.initializer.find((x) => x.name === l.weight)!;
    log?.tensor(t);
    t.dims = pm.layout.get(l.name) === 'out_in' ? [rows.length, l.dIn] : [l.dIn, rows.length];
    pm.writeWeight(l, nw);
  };
  if (lay.qkv) {
    const rows = [...qRows, ...kvRows.map((r) => H * d + r), ...kvRows.map((r) => (H + G) * d + r)];
    sliceRows(lay.qkv, rows);
    const q2 = qRows.length;
    const kv2 = kvRows.length;
    lay.qkv.parts = [{ role: 'q', start: 0, end: q2 }, { role: 'k', start: q2, end: q2 + kv2 }, { role: 'v', start: q2 + kv2, end: q2 + 2 * kv2 }];
  } else {
    sliceRows(lay.q!, qRows);
    sliceRows(lay.k!, kvRows);
    sliceRows(lay.v!, kvRows);
  }
  const o = lay.o;
  const w = pm.readWeight(o);
  const F = o.dIn;
  const K = qRows.length;
  const nw = new Float32Array(o.dOut * K);
  for (let r = 0; r < o.dOut; r++) for (let k = 0; k < K; k++) nw[r * K + k] = w[r * F + qRows[k]!]!;
  log?.linear(o);
  o.dIn = K;
  const t = g.initializer.find((x) => x.name === o.weight)!;
  log?.tensor(t);
  t.dims = pm.layout.get(o.name) === 'out_in' ? [o.dOut, K] : [K, o.dOut];
  pm.writeWeight(o, nw);
  applyRewrites(g, lay.block, rewrites, log);
  // Declared KV-cache shapes [batch, G, seq, d] of this block.
  for (const vi of [...g.input, ...g.output]) {
    const n = vi.name ?? '';
    if (new RegExp(`^(past_key_values|present)\\.${lay.block}\\.(key|value)$`).test(n)) setDim(vi, 1, G, G2);
  }
  g.value_info = g.value_info.filter((v) => !(v.name ?? '').startsWith(lay.scope));
  lay.kvHeads = G2;
  lay.heads = G2 * nRep;
}

/** Zero the o columns of the removed groups (the calibration stand-in for their removal). */
export function zeroGroupColumns(o: Float32Array, dOut: number, dIn: number, removed: ArrayLike<number>, nRep: number, headDim: number): void {
  for (let k = 0; k < removed.length; k++) {
    const g0 = removed[k]! * nRep * headDim;
    for (let r = 0; r < dOut; r++) o.fill(0, r * dIn + g0, r * dIn + g0 + nRep * headDim);
  }
}
