/**
 * Evaluate a DSA allocation function on block vectors with typed-array kernels: the pre-process ops run chunk by chunk
 * on a float64 scratch buffer (no copy of the block vector), the reduction accumulates in float64, the scalar ops run
 * on one number. Memory is O(chunk) whatever the block size; a block vector is read once per pass (1–4 passes).
 */
import { CHUNK, PRE_BY_NAME, REDUCE_BY_NAME, SCALAR_BY_NAME, meanVar, reduceAll, type ChunkSource, type PreOp, type PreStats } from './ops.js';
import { toDsaExpression, type DsaExpression } from './expression.js';
import type { BlockAllocationStats } from '../types.js';

type Vector = Float32Array | Float64Array;

const NO_STATS: PreStats = { n: 0, mean: NaN, std: NaN, min: NaN, max: NaN };

function statsOf(op: PreOp, src: ChunkSource): PreStats {
  if (op.needs === 'meanstd') {
    const { n, mean, m2 } = meanVar(src);
    return { n, mean, std: Math.sqrt(m2 / (n - 1)), min: NaN, max: NaN };
  }
  if (op.needs === 'minmax') {
    let min = Infinity;
    let max = -Infinity;
    let nan = false;
    let n = 0;
    src((buf, len) => {
      n += len;
      for (let i = 0; i < len; i++) {
        const v = buf[i];
        if (v < min) min = v;
        if (v > max) max = v;
        if (v !== v) nan = true;
      }
    });
    // NaN propagates like torch.min / torch.max.
    return { n, mean: NaN, std: NaN, min: nan ? NaN : min, max: nan ? NaN : max };
  }
  return NO_STATS;
}

/** A chunk source over `z` after the pre-process ops (statistics-needing ops get an extra pass over their input). */
export function preprocessed(pre: readonly string[], z: Vector): ChunkSource {
  const ops = pre.map((p) => PRE_BY_NAME.get(p)!);
  const scratch = new Float64Array(Math.min(CHUNK, Math.max(1, z.length)));
  const stats: PreStats[] = [];
  const upTo = (k: number): ChunkSource => (visit) => {
    for (let off = 0; off < z.length; off += scratch.length) {
      const len = Math.min(scratch.length, z.length - off);
      for (let i = 0; i < len; i++) scratch[i] = z[off + i];
      for (let j = 0; j < k; j++) ops[j].apply(scratch, len, stats[j]);
      visit(scratch, len);
    }
  };
  for (let j = 0; j < ops.length; j++) stats.push(statsOf(ops[j], upTo(j)));
  return upTo(ops.length);
}

/** Apply the pre-process ops to a whole vector (small vectors: tests, mathjs registration). */
export function preprocess(pre: readonly string[], z: Vector): Float64Array {
  const out = new Float64Array(z.length);
  let off = 0;
  preprocessed(pre, z)((buf, len) => {
    out.set(buf.subarray(0, len), off);
    off += len;
  });
  return out;
}

/** The reduction of the pre-processed vector, before any scalar op. */
export function reducedValue(expr: string | DsaExpression, z: Vector): number {
  const e = toDsaExpression(expr);
  return REDUCE_BY_NAME.get(e.reduce)!.reduce(preprocessed(e.pre, z));
}

/** Each scalar stage of an evaluation, for error messages and reports. */
export interface ImportanceTrace {
  /** Value after the reduction. */
  reduced: number;
  /** Value after the transform (and after the post-process when there is one). */
  stages: { op: string; input: number; output: number }[];
  value: number;
}

function scalarStages(e: DsaExpression, reduced: number): ImportanceTrace {
  const stages: ImportanceTrace['stages'] = [];
  let v = reduced;
  for (const name of [e.transform, e.post]) {
    if (name === undefined || name === 'NO_OP') continue;
    const out = SCALAR_BY_NAME.get(name)!.fn(v);
    stages.push({ op: name, input: v, output: out });
    v = out;
  }
  return { reduced, stages, value: v };
}

/**
 * Reductions are memoised per block vector and pre-process: the first candidate with a given pre-process computes every
 * reduction in one fused pass (reduceAll, identical values), so later candidates that share the pre-process — whatever
 * their reduction — only pay for the scalar ops. Block vectors are treated as immutable once scored.
 */
const reducedMemo = new WeakMap<object, Map<string, Record<string, number>>>();

function memoReduced(e: DsaExpression, z: Vector): number {
  const key = e.pre.join(',');
  let m = reducedMemo.get(z);
  if (!m) reducedMemo.set(z, (m = new Map()));
  let all = m.get(key);
  if (all === undefined) m.set(key, (all = reduceAll(preprocessed(e.pre, z))));
  const name = REDUCE_BY_NAME.get(e.reduce)!.name; // NO_OP → MEAN
  const v = all[name];
  if (v === undefined) throw new Error(`reduction ${e.reduce} missing from reduceAll`);
  return v;
}

/** Evaluate with every intermediate scalar (reduced value, each scalar op's input and output). */
export function importanceTrace(expr: string | DsaExpression, z: Vector): ImportanceTrace {
  const e = toDsaExpression(expr);
  return scalarStages(e, memoReduced(e, z));
}

/** I = post(transform(reduce(pre(z)))) for one block vector; may be NaN or ±Infinity (IEEE semantics). */
export function importance(expr: string | DsaExpression, z: Vector): number {
  return importanceTrace(expr, z).value;
}

/** The raw importance of every block (no mapping of non-finite values; see allocationFromScores for that). */
export function dsaScores(expr: string | DsaExpression, blocks: readonly Pick<BlockAllocationStats, 'z'>[]): number[] {
  const e = toDsaExpression(expr);
  return blocks.map((b) => scalarStages(e, memoReduced(e, b.z)).value);
}

/** Traces of every block (for the error message naming which stage failed where). */
export function dsaTraces(expr: string | DsaExpression, blocks: readonly Pick<BlockAllocationStats, 'z'>[]): ImportanceTrace[] {
  const e = toDsaExpression(expr);
  return blocks.map((b) => scalarStages(e, memoReduced(e, b.z)));
}
