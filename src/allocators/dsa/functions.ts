/** Registration of the DSA functions into the shared mathjs instance (see math.ts). */
import type { MathJsInstance } from 'mathjs';
import { mathBase } from './math.js';
import { PRE_OPS, PRE_BY_NAME, REDUCE_BY_NAME, scalarKernels } from './ops.js';
import { preprocess } from './importance.js';

let registered = false;

/**
 * The instance with the DSA functions registered through mathjs `import` (abslog, safelog, mms, normalize, sigmoid,
 * softplus, var, l1_norm, gram, frobenius_norm, geometric_mean, entropy), so that
 * `dsaMath().evaluate('asin(atan(var(abslog(z))))', { z: [0.1, 2, 3] })` works on small arrays (docs, experiments).
 * Pruning never evaluates vectors through mathjs: it uses the typed-array kernels of importance.ts.
 */
export function dsaMath(): MathJsInstance {
  const math = mathBase();
  if (registered) return math;
  const flat = (x: unknown): Float64Array => {
    const v = (x as { valueOf(): unknown }).valueOf();
    return Float64Array.from((Array.isArray(v) ? (v as unknown[]).flat(Infinity) : [v]).map(Number));
  };
  const pre = (name: string) => (x: unknown) => Array.from(preprocess([name], flat(x)));
  const red = (name: string) => (x: unknown) => {
    const a = flat(x);
    return REDUCE_BY_NAME.get(name)!.reduce((visit) => visit(a, a.length));
  };
  if (!PRE_BY_NAME.has('ABSLOG')) throw new Error('DSA op table is incomplete');
  math.import(
    {
      abslog: pre('ABSLOG'),
      safelog: pre('LOG'),
      mms: pre('MMS'),
      normalize: pre('NORMALIZE'),
      sigmoid: (x: unknown) => (typeof x === 'number' ? scalarKernels.sigmoid(x) : pre('SIGMOID')(x)),
      softplus: (x: unknown) => scalarKernels.softplus(Number(x)),
      var: red('VAR'),
      l1_norm: red('L1_NORM'),
      gram: red('GRAM'),
      frobenius_norm: red('FROBENIUS_NORM'),
      geometric_mean: red('GEOMETRIC_MEAN'),
      entropy: red('ENTROPY'),
    },
    { override: true },
  );
  // Builtins that are scalar-only in mathjs get an element-wise Array/Matrix signature (merged into the typed function).
  for (const op of PRE_OPS) {
    if (!['exp', 'tanh', 'square', 'abs'].includes(op.mathjs)) continue;
    const f = pre(op.name);
    try {
      math.import({ [op.mathjs]: math.typed(op.mathjs, { 'Array | Matrix': (x: unknown) => f(x) }) });
    } catch {
      // already element-wise (abs)
    }
  }
  registered = true;
  return math;
}
