/** The method registry: built-ins plus user methods, and request validation before any work starts. */
import { DsaPruneError } from '../errors.js';
import type { BudgetMode, Pattern } from '../types.js';
import { magnitude } from './magnitude.js';
import { validateSparsityAndPattern } from './patterns.js';
import { sparsegpt } from './sparsegpt.js';
import type { PruningMethod } from './types.js';
import { wanda } from './wanda.js';

const registry = new Map<string, PruningMethod>([
  [magnitude.name, magnitude],
  [wanda.name, wanda],
  [sparsegpt.name, sparsegpt],
]);

/** Names of every registered method, built-ins first. */
export function methodNames(): string[] {
  return [...registry.keys()];
}

/** The method registered under `name` (case-insensitive); a DsaPruneError listing the known ones otherwise. */
export function getMethod(name: string): PruningMethod {
  const m = registry.get(name) ?? registry.get(String(name).toLowerCase());
  if (!m) {
    throw new DsaPruneError(`unknown pruning method "${name}" (known: ${methodNames().join(', ')})`, {
      hint: 'pick one of the known methods, or register your own with registerMethod()',
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
  if (m.name === magnitude.name || m.name === wanda.name || m.name === sparsegpt.name) {
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
