/**
 * The project's mathjs instance: one `create(all)` shared by parsing, printing and simplification of DSA expressions,
 * and (after `dsaMath()` of functions.ts) by the registered DSA functions.
 */
import { createRequire } from 'node:module';
import type { MathJsInstance, create as Create, all as All } from 'mathjs';

let instance: MathJsInstance | undefined;
/** The bare instance (parse / simplify / toString need no registered functions). */
export function mathBase(): MathJsInstance {
  // Loaded on first use, from mathjs's one-file build (same version and code): its ES-module build is ~3,800 files and
  // took seconds to import, which every `import 'dsa-prune'` paid even without a DSA expression.
  if (!instance) {
    const { create, all } = createRequire(import.meta.url)('mathjs/lib/browser/math.js') as { create: typeof Create; all: typeof All };
    // predictable: asin(2) is NaN (IEEE, like the kernels), not a complex number. Set by config(): this build ignores
    // the options argument of create() (asin(1.001) came out complex).
    instance = create(all);
    instance.config({ predictable: true });
  }
  return instance;
}

