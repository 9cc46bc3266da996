/**
 * inspectModel: the prunable linears of a model (object or folder) with their shapes and current sparsity.
 */
import path from 'node:path';
import { countZeros } from '../kernels/dense.js';
import type { LinearInfo } from '../types.js';
import { discoverLinears } from './discover.js';
import { readFolderGraph, validateModelFolder } from './load.js';
import type { TensorProto } from './onnx.js';
import { attachModel, readFloats } from './prunable.js';
import { removedSubLayersOf } from './surgery-depth.js';

/** One linear as inspect shows it: LinearInfo's name, block, role, shape, dtype, node (and parts of a fused one). */
export type InspectLinear = Pick<LinearInfo, 'name' | 'block' | 'role' | 'dIn' | 'dOut' | 'dtype' | 'node' | 'parts'> & {
  /** Fraction of weights that are exactly zero. */
  sparsity: number;
};

export interface InspectReport {
  blocks: number;
  linears: InspectLinear[];
  /** Σ dIn·dOut over the listed linears. */
  prunableParams: number;
  /** MLP intermediate width per block (the down projection's inputs; differs per block after structured pruning). */
  ffnWidths: number[];
  /** Attention width per block: the o projection's inputs (query heads × head_dim; smaller after head pruning). */
  attnWidths: number[];
  /** Head counts from config.json (query heads, KV heads, head_dim), when it names them. */
  heads?: { heads: number; kvHeads: number; headDim?: number };
  /** Sub-layers removed by depth pruning (`block.kind`, from the graph's metadata); empty otherwise. */
  removedSubLayers: string[];
}

function report(linears: LinearInfo[], blocks: number, values: (l: LinearInfo) => Float32Array, config?: Record<string, unknown>, removedSubLayers: string[] = []): InspectReport {
  const out: InspectLinear[] = linears.map((l) => {
    const w = values(l);
    return {
      name: l.name, block: l.block, role: l.role, dIn: l.dIn, dOut: l.dOut, dtype: l.dtype, node: l.node,
      sparsity: w.length ? countZeros(w) / w.length : 0,
      ...(l.parts ? { parts: l.parts.map((p) => ({ ...p })) } : {}),
    };
  });
  const ffnWidths = Array.from({ length: blocks }, (_, b) => linears.find((l) => l.block === b && l.role === 'down')?.dIn ?? 0);
  const attnWidths = Array.from({ length: blocks }, (_, b) => linears.find((l) => l.block === b && l.role === 'o')?.dIn ?? 0);
  const num = (...ks: string[]): number | undefined => ks.map((k) => config?.[k]).find((v): v is number => typeof v === 'number');
  const h = num('num_attention_heads', 'n_head');
  const heads = h ? { heads: h, kvHeads: num('num_key_value_heads') ?? h, ...(num('head_dim') ? { headDim: num('head_dim') } : {}) } : undefined;
  return { blocks, linears: out, prunableParams: linears.reduce((a, l) => a + l.dIn * l.dOut, 0), ffnWidths, attnWidths, ...(heads ? { heads } : {}), removedSubLayers };
}

/**
 * Inspect a transformers.js model (attached through the loading hook) or a model folder (read from disk without
 * creating an onnxruntime session).
 */
export async function inspectModel(model: any | string): Promise<InspectReport> { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (typeof model === 'string') {
    const folder = await validateModelFolder(model);
    const proto = readFolderGraph(folder);
    const found = discoverLinears(proto.graph, { config: folder.config });
    const byName = new Map<string, TensorProto>();
    for (const t of proto.graph.initializer ?? []) if (t.name) byName.set(t.name, t);
    const base = path.dirname(folder.onnxPath);
    return report(found.linears, found.blocks, (l) => {
      const t = byName.get(l.weight);
      return t ? readFloats(t, base, folder.onnxPath) : new Float32Array(0);
    }, folder.config as Record<string, unknown>, removedSubLayersOf(proto));
  }
  const pm = await attachModel(model);
  return report(pm.linears, pm.blocks, (l) => pm.readInitializer(l.weight), pm.config, removedSubLayersOf(pm.proto));
}

/** A readable table of an InspectReport. */
export function formatInspectTable(r: InspectReport): string {
  const header = ['block', 'role', 'name', 'dOut×dIn', 'dtype', 'sparsity'];
  const rows = r.linears.map((l) => [
    String(l.block), l.parts ? `${l.role} (${l.parts.map((p) => `${p.role} ${p.start}-${p.end}`).join(', ')})` : l.role, l.name,
    `${l.dOut}×${l.dIn}`, l.dtype, `${(l.sparsity * 100).toFixed(2)}%`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  const zeros = r.linears.reduce((a, l) => a + l.sparsity * l.dIn * l.dOut, 0);
  return [
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    `${r.linears.length} linears in ${r.blocks} blocks, ${r.prunableParams.toLocaleString('en-US')} prunable parameters, ` +
      `sparsity ${(r.prunableParams ? (zeros / r.prunableParams) * 100 : 0).toFixed(2)}%`,
    ...(r.ffnWidths.some((w) => w > 0) ? [`FFN width per block: ${r.ffnWidths.join(' ')}`] : []),
    ...(r.attnWidths?.some((w) => w > 0) ? [`attention width per block (o inputs = heads × head_dim): ${r.attnWidths.join(' ')}${headsLine(r)}`] : []),
    ...(r.removedSubLayers.length ? [`removed sub-layers (identity on the residual): ${r.removedSubLayers.join(' ')}`] : []),
  ].join('\n') + '\n';
}

function headsLine(r: InspectReport): string {
  return r.heads ? `; config: ${r.heads.heads} heads, ${r.heads.kvHeads} KV heads${r.heads.headDim ? `, head_dim ${r.heads.headDim}` : ''}` : '';
}
