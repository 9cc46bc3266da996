/** The method registry: built-ins plus user methods, and request validation before any work starts. */
import { DsaPruneError } from '../errors.js';
import type { BudgetMode, Pattern } from '../types.js';
import { magnitude } from './magnitude.js';
import { validateSparsityAndPattern } from './patterns.js';
import { sparsegpt } from './sparsegpt.js';
import type { PruningMethod } from './types.js';
import { wanda } from './wanda.js';

/**
 * One registry per thread, kept on globalThis: a plugin that imports a second copy of the package (a global CLI and a
 * project's own node_modules, or the built package beside the sources) registers into the same map the CLI reads.
 * Worker threads have their own globalThis, so they import the same plugin modules (search/pool.ts passes them on).
 */
const KEY = Symbol.for('dsa-prune.methods');
const holder = globalThis as unknown as Record<symbol, Map<string, PruningMethod> | undefined>;
const registry: Map<string, PruningMethod> = (holder[KEY] ??= new Map<string, PruningMethod>());
// The built-ins of this copy (the same code in every copy of one version).
for (const m of [magnitude, wanda, sparsegpt]) if (!registry.has(m.name)) registry.set(m.name, m);
const BUILT_INS = new Set([magnitude.name, wanda.name, sparsegpt.name]);

/**
 * True for this copy's built-in method objects, whose `MethodResult.zeros` is `countZeros` of the pruned weight
 * itself: a caller may use it instead of counting again. A user method's count is not trusted (count it yourself).
 */
export function zerosAreExact(m: PruningMethod): boolean {
  return m === magnitude || m === wanda || m === sparsegpt;
}

/** Names of every registered method, built-ins first. */
export function methodNames(): string[] {
  return [...registry.keys()];
}

/** The method registered under `name` (case-insensitive); a DsaPruneError listing the known ones otherwise. */
export function getMethod(name: string): PruningMethod {
  const m = registry.get(name) ?? registry.get(String(name).toLowerCase());
  if (!m) {
    throw new DsaPruneError(`unknown pruning method "${name}" (known: ${methodNames().join(', ')})`, {
      code: 'invalid-input',
      hint: 'pick one of the known methods, or register your own with registerMethod() (CLI: --plugin <module.js>, a module that calls it)',
    });
  }
  return m;
}

/**
 * Add a user method (or replace a user method of the same name). Built-in names cannot be replaced.
 * @example registerMethod({ name: 'random', needs: { sq: false, gram: false }, prune: (ctx) => { … } })
 */
export function registerMethod(m: PruningMethod): void {
  if (!m || typeof m.name !== 'string' || m.name.length === 0 || typeof m.prune !== 'function') {
    throw new DsaPruneError('registerMethod: a method needs a non-empty name and a prune(ctx) function');
  }
  if (m.prepare !== undefined && typeof m.prepare !== 'function') {
    throw new DsaPruneError(`registerMethod: ${m.name}.prepare must be a function (the search's fast path) or absent`);
  }
  if (BUILT_INS.has(m.name)) {
    throw new DsaPruneError(`registerMethod: "${m.name}" is a built-in method and cannot be replaced`, {
      hint: 'register your method under another name',
    });
  }
  registry.set(m.name, m);
}

/** What a pruning request asks of a method (checked once, before calibration starts). */
export interface MethodRequest {
  /** Method name or object. */
  method: string | PruningMethod;
  /** Target sparsity in [0, 1) (ignored by N:M patterns, which prune N of every M). */
  sparsity: number;
  /** Sparsity pattern; default unstructured. */
  pattern?: Pattern;
  /** Budget mode; default `exact`. */
  budget?: BudgetMode;
}

/**
 * Refuse an invalid request with a DsaPruneError before any work: unknown method, sparsity outside [0, 1),
 * N:M with N < 1 or N ≥ M, SparseGPT with 128 % M ≠ 0, unknown budget mode. Returns the resolved method.
 */
export function validateMethodRequest(req: MethodRequest): PruningMethod {
  const method = typeof req.method === 'string' ? getMethod(req.method) : req.method;
  const pattern: Pattern = req.pattern ?? { kind: 'unstructured' };
  const budget: BudgetMode = req.budget ?? 'exact';
  if (budget !== 'exact' && budget !== 'reference') {
    throw new DsaPruneError(`unknown budget mode "${String(budget)}"`, { hint: "use 'exact' (default) or 'reference'" });
  }
  validateSparsityAndPattern(req.sparsity, pattern);
  method.validate?.({ sparsity: req.sparsity, pattern, budget });
  return method;
}
