import type { Allocator, AllocationInput } from './types.js';
import { allocationFromScores, scoreBased } from './scores.js';
import { DsaPruneError } from '../errors.js';
import {
  DSA_PUBLISHED, SCALAR_BY_NAME, REDUCE_BY_NAME, dsaScores, dsaTraces, formatDsa, simplifyDsa, toDsaExpression,
  type DsaExpression, type ImportanceTrace,
} from './dsa/index.js';

/** Options of a DSA allocator. */
export interface DsaOptions {
  /** Spread: block sparsities lie in S ± λ. Default 0.08 (the published runs). */
  lambda?: number;
}

const fmt = (x: number) => (Number.isFinite(x) ? Number(x.toPrecision(4)).toString() : String(x));

/** Why a block's importance is not finite: the first stage whose output is not finite (grouping key, value). */
function reason(e: DsaExpression, t: ImportanceTrace): { key: string; value?: string } {
  if (!Number.isFinite(t.reduced)) return { key: `${REDUCE_BY_NAME.get(e.reduce)!.mathjs} is ${t.reduced}` };
  for (const s of t.stages) {
    if (Number.isFinite(s.output)) continue;
    const op = SCALAR_BY_NAME.get(s.op)!;
    const why = op.why?.(s.input);
    return { key: why ? `${op.mathjs} of a value ${why}` : `${op.mathjs} gives ${s.output}`, value: fmt(s.input) };
  }
  return { key: `the value is ${t.value}` };
}

/** The DsaPruneError for non-finite importances, naming blocks, the failing stage and the values. */
function nonFiniteError(e: DsaExpression, traces: ImportanceTrace[], blocks: number[], total: number): DsaPruneError {
  const groups = new Map<string, { blocks: number[]; values: string[] }>();
  for (const b of blocks) {
    const r = reason(e, traces[b]);
    let g = groups.get(r.key);
    if (!g) groups.set(r.key, (g = { blocks: [], values: [] }));
    g.blocks.push(b);
    if (r.value) g.values.push(r.value);
  }
  const parts = [...groups].map(([key, g]) => {
    const vals = g.values.length ? ` (${g.values.slice(0, 4).join(', ')}${g.values.length > 4 ? ', …' : ''})` : '';
    return `${key}${vals} in blocks ${g.blocks.join(',')}`;
  });
  const published = formatDsa(e) === DSA_PUBLISHED ? 'the published function' : 'this function';
  return new DsaPruneError(
    `DSA importance ${formatDsa(e, 'mathjs')} is not finite in ${blocks.length} of ${total} blocks: ${parts.join('; ')} — ${published} is undefined on this model`,
    {
      hint: 'Run `dsa-prune search` to find one that is defined here, or use --budget reference to reproduce the reference code (NaN → 0, ±inf → −1).',
    },
  );
}

/**
 * DSA: `I_ℓ = post(transform(reduce(pre(z_ℓ))))`, `r = minmax(I)`, `s_ℓ = S + 2λ(r_ℓ − mean r)` (a larger I prunes
 * more). Default expression: the published `W:(ABSLOG)-(VAR)-(ATAN,ASIN)`. In the exact budget a non-finite I is a
 * DsaPruneError naming the blocks and the failing stage; in the reference budget NaN → 0 and ±inf → −1.
 */
export function dsa(expression: string | DsaExpression = DSA_PUBLISHED, o: DsaOptions = {}): Allocator {
  const e = toDsaExpression(expression);
  const lambda = o.lambda ?? 0.08;
  if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new DsaPruneError(`DSA lambda must be a number ≥ 0, got ${lambda}`, { hint: 'The published runs use --lambda 0.08.' });
  const info = { reference: formatDsa(e, 'reference'), mathjs: formatDsa(e, 'mathjs'), simplified: simplifyDsa(e), lambda };
  const scores = (input: AllocationInput) => dsaScores(e, input.blocks);
  const fromScores = (I: number[], input: AllocationInput) => {
    if (input.budget === 'exact') {
      const bad = input.blocks.map((b, i) => (b.params > 0 && !Number.isFinite(I[i]) ? i : -1)).filter((i) => i >= 0);
      if (bad.length) throw nonFiniteError(e, dsaTraces(e, input.blocks), bad, input.blocks.length);
    }
    return {
      blockSparsity: allocationFromScores(I, input.blocks.map((b) => b.params), input.sparsity, lambda, input.budget, {
        sign: 1, onConstant: 'error', label: `DSA importance ${info.mathjs}`,
      }),
      scores: I,
      expression: info,
    };
  };
  return scoreBased(
    {
      name: 'dsa',
      describe: () => `dsa: ${info.reference} = ${info.mathjs}, lambda=${lambda}`,
      properties: { permutationEquivariant: true, affineInvariantImportance: true },
    },
    scores,
    fromScores,
  );
}
