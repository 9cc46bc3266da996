/** fast-check arbitraries shared by the DSA expression tests and the parser fuzz. */
import fc from 'fast-check';
import { PRE_OPS, REDUCE_OPS, SCALAR_OPS, type DsaExpression } from '../../src/allocators/dsa/index.js';

/** Any structurally valid DSA expression (0–2 pre-process ops, a reduction, a transform, an optional post-process). */
export const arbExpr: fc.Arbitrary<DsaExpression> = fc.record({
  pre: fc.array(fc.constantFrom(...PRE_OPS.map((o) => o.name)), { maxLength: 2 }),
  reduce: fc.constantFrom(...REDUCE_OPS.map((o) => o.name)),
  transform: fc.constantFrom(...SCALAR_OPS.map((o) => o.name)),
  post: fc.option(fc.constantFrom(...SCALAR_OPS.map((o) => o.name)), { nil: undefined }),
}).map((e) => (e.post === undefined ? { pre: e.pre, reduce: e.reduce, transform: e.transform } : e));
