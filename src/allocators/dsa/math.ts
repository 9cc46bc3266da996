/**
 * The project's mathjs instance: one `create(all)` shared by parsing, printing and simplification of DSA expressions,
 * and (after `dsaMath()` of functions.ts) by the registered DSA functions.
 */
import { create, all, type MathJsInstance } from 'mathjs';

let instance: MathJsInstance | undefined;
/** The bare instance (parse / simplify / toString need no registered functions). */
export function mathBase(): MathJsInstance {
  // predictable: asin(2) is NaN (IEEE, like the kernels), not a complex number.
  instance ??= create(all, { predictable: true });
  return instance;
}

