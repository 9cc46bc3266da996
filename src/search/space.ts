/**
 * The DSA search space, read from the allocators' op tables: 0–2 pre-process ops, one reduction, a transform and an
 * optional post-process scalar op, and λ ∈ [0.02, 0.25]. Sampling, mutation and crossover for the evolution loop;
 * validity (finite, non-constant importance on the dense block vectors) and the deduplication key (the allocation
 * vector the candidate produces, rounded to 1e-9) — both without evaluating the candidate.
 */
import { DsaPruneError } from '../errors.js';
import type { BlockAllocationStats } from '../allocators/types.js';
import { allocationFromScores } from '../allocators/scores.js';
import type { BudgetMode } from '../types.js';
import { PRE_OPS, REDUCE_OPS, SCALAR_OPS, dsaScores, formatDsa, normalizeDsa, simplifyDsa } from '../allocators/dsa/index.js';
import type { CandidateSpace } from './evolution.js';
import type { Rng } from './random.js';
import type { Candidate, DsaExpression } from './types.js';

/** Range of λ the search explores (METHODS.md). */
export const LAMBDA_RANGE: readonly [number, number] = [0.02, 0.25];

/** Options of dsaSpace(). */
export interface DsaSpaceOptions {
  /** Dense block statistics (z vectors): validity and the allocation vector are computed on them. */
  blocks: readonly Pick<BlockAllocationStats, 'z' | 'params'>[];
  /**
   * Allocation of a candidate from its per-block importance (finite, non-constant) and λ: the block sparsities the
   * pruning will use. Typically `(scores, λ) => allocationFromScores(scores, params, S, λ, budget).blockSparsity`.
   */
  allocate(scores: number[], lambda: number): number[];
  /** λ range (default [0.02, 0.25]). */
  lambda?: readonly [number, number];
  /** Op names to leave out of the space (e.g. `['EXP']`). */
  exclude?: string[];
  /** Std of the Gaussian λ perturbation of a mutation (default 0.03). */
  lambdaStep?: number;
}

/** The op names the space draws from. */
export interface SpaceOps {
  pre: string[];
  reduce: string[];
  /** Scalar ops for the transform (NO_OP included). */
  transform: string[];
  /** Scalar ops for the optional post-process (NO_OP excluded: "no post" is its own choice). */
  post: string[];
}

export function spaceOps(exclude: string[] = []): SpaceOps {
  const ex = new Set(exclude.map((s) => s.toUpperCase()));
  const names = (ops: readonly { name: string }[]) => ops.map((o) => o.name).filter((n) => !ex.has(n));
  const scalar = names(SCALAR_OPS);
  return {
    pre: names(PRE_OPS).filter((n) => n !== 'NO_OP'),
    reduce: names(REDUCE_OPS).filter((n) => n !== 'NO_OP'),
    transform: scalar,
    post: scalar.filter((n) => n !== 'NO_OP'),
  };
}

/** Number of distinct expressions (before λ) in the space — for docs and reports. */
export function spaceSize(ops: SpaceOps = spaceOps()): number {
  const p = ops.pre.length;
  return (1 + p + p * p) * ops.reduce.length * ops.transform.length * (1 + ops.post.length);
}

function clampLambda(x: number, [lo, hi]: readonly [number, number]): number {
  // Reflect at the bounds so perturbations near a bound stay spread out.
  let v = x;
  for (let i = 0; i < 4 && (v < lo || v > hi); i++) v = v < lo ? 2 * lo - v : 2 * hi - v;
  return Math.min(hi, Math.max(lo, v));
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/** Why a candidate is invalid (non-finite or constant importance), or undefined when it is valid. */
export function invalidReason(scores: number[]): string | undefined {
  const bad = scores.map((s, i) => (Number.isFinite(s) ? -1 : i)).filter((i) => i >= 0);
  if (bad.length) return `importance not finite in block${bad.length > 1 ? 's' : ''} ${bad.join(',')}`;
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of scores) {
    if (s < lo) lo = s;
    if (s > hi) hi = s;
  }
  // Differences at the level of float64 rounding of the values are "constant" too: minmax would amplify noise.
  if (!(hi - lo > 1e-12 * Math.max(Math.abs(hi), Math.abs(lo), 1e-300))) return 'importance is the same for every block';
  return undefined;
}

/** The DSA search space over the given dense blocks. */
export function dsaSpace(options: DsaSpaceOptions): CandidateSpace & { ops: SpaceOps; scores(c: Candidate): number[] } {
  const ops = spaceOps(options.exclude);
  const lam = options.lambda ?? LAMBDA_RANGE;
  const step = options.lambdaStep ?? 0.03;
  if (ops.reduce.length === 0 || ops.transform.length === 0) throw new DsaPruneError('the search space is empty after exclusions');
  if (options.blocks.length < 2) {
    throw new DsaPruneError(`a layer-wise allocation needs at least 2 blocks, the model has ${options.blocks.length}`);
  }

  const samplePre = (rng: Rng): string[] => {
    const n = rng.int(3);
    const pre: string[] = [];
    for (let i = 0; i < n; i++) pre.push(rng.pick(ops.pre));
    return pre;
  };
  const samplePost = (rng: Rng): string | undefined => (rng.next() < 0.5 ? undefined : rng.pick(ops.post));
  const make = (pre: string[], reduce: string, transform: string, post: string | undefined, lambda: number): Candidate => {
    const expression: DsaExpression = post === undefined ? { pre, reduce, transform } : { pre, reduce, transform, post };
    return { expression, lambda: round6(lambda) };
  };

  const sample = (rng: Rng): Candidate =>
    make(samplePre(rng), rng.pick(ops.reduce), rng.pick(ops.transform), samplePost(rng), rng.uniform(lam[0], lam[1]));

  const mutate = (c: Candidate, rng: Rng): Candidate => {
    const e = c.expression;
    const pre = [...e.pre];
    let { reduce, transform } = e;
    let post = e.post;
    let lambda = c.lambda;
    switch (rng.int(5)) {
      case 0: {
        // pre stage: replace one op, add one, or drop one
        const what = rng.int(3);
        if (what === 0 && pre.length > 0) pre[rng.int(pre.length)] = rng.pick(ops.pre);
        else if (what === 1 && pre.length < 2) pre.splice(rng.int(pre.length + 1), 0, rng.pick(ops.pre));
        else if (pre.length > 0) pre.splice(rng.int(pre.length), 1);
        else pre.push(rng.pick(ops.pre));
        break;
      }
      case 1:
        reduce = rng.pick(ops.reduce);
        break;
      case 2:
        transform = rng.pick(ops.transform);
        break;
      case 3:
        post = samplePost(rng);
        break;
      default:
        lambda = clampLambda(lambda + step * rng.normal(), lam);
    }
    return make(pre, reduce, transform, post, lambda);
  };

  const crossover = (a: Candidate, b: Candidate, rng: Rng): Candidate => {
    const from = () => (rng.next() < 0.5 ? a : b);
    return make(
      [...from().expression.pre], from().expression.reduce, from().expression.transform, from().expression.post,
      from().lambda,
    );
  };

  const scores = (c: Candidate): number[] => dsaScores(c.expression, options.blocks);

  const check: CandidateSpace['check'] = (c) => {
    let s: number[];
    try {
      normalizeDsa(c.expression);
      s = scores(c);
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
    const why = invalidReason(s);
    if (why) return { ok: false, reason: why };
    const alloc = options.allocate(s, c.lambda);
    if (!alloc.every(Number.isFinite)) return { ok: false, reason: 'allocation not finite' };
    return { ok: true, allocationKey: alloc.map((x) => Math.round(x * 1e9)).join(',') };
  };

  const describe = (c: Candidate) => ({ expression: formatDsa(c.expression, 'reference'), simplified: simplifyDsa(c.expression) });

  return { ops, sample, mutate, crossover, check, describe, scores };
}

/** The space of a search at global sparsity `sparsity`: allocation = the dsa() allocator's score → sparsity step. */
export function searchSpace(
  blocks: readonly Pick<BlockAllocationStats, 'z' | 'params'>[],
  sparsity: number,
  budget: BudgetMode,
  o: Omit<DsaSpaceOptions, 'blocks' | 'allocate'> = {},
): ReturnType<typeof dsaSpace> {
  const params = blocks.map((b) => b.params);
  return dsaSpace({ ...o, blocks, allocate: (scores, lambda) => allocationFromScores(scores, params, sparsity, lambda, budget) });
}
