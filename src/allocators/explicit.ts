import type { Allocator, AllocationInput } from './types.js';
import { budgetRaw, validateInput } from './scores.js';
import { DsaPruneError } from '../errors.js';

/** A linear-name pattern: `/regex/flags`, or a glob where `*` is any run of characters and `?` one character. */
export function namePattern(p: string): RegExp {
  const re = /^\/(.*)\/([a-z]*)$/s.exec(p);
  if (re) {
    try {
      return new RegExp(re[1], re[2]);
    } catch (e) {
      throw new DsaPruneError(`pattern ${p} is not a valid regular expression: ${(e as Error).message}`);
    }
  }
  const body = p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function checkValue(v: number, where: string): void {
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new DsaPruneError(`explicit sparsity for ${where} must be in [0, 1), got ${String(v)}`);
}

/**
 * Sparsities given by the user: a list (one per block, in block order) or a map from linear-name patterns to
 * sparsities (glob `model.layers.*.mlp.*` or `/regex/`; the last matching pattern wins; unmatched linears get the
 * target). In the exact budget the values are the shape: one common offset (then the [0, 0.99] clamp) makes the
 * parameter-weighted mean equal the target; in the reference budget they are used as given.
 */
export function explicit(list: number[] | Record<string, number>): Allocator {
  if (Array.isArray(list)) {
    list.forEach((v, i) => checkValue(v, `block ${i}`));
    const values = list.slice();
    return {
      name: 'explicit',
      describe: () => `explicit: [${values.join(', ')}]`,
      needsStatistics: false,
      allocate(input) {
        validateInput(input);
        if (values.length !== input.blocks.length) {
          throw new DsaPruneError(`explicit allocation has ${values.length} values but the model has ${input.blocks.length} blocks`, {
            hint: 'Give one sparsity per decoder block, in block order.',
          });
        }
        return { blockSparsity: budgetRaw(values, input.blocks.map((b) => b.params), input.sparsity, input.budget) };
      },
    };
  }
  if (!list || typeof list !== 'object') throw new DsaPruneError('explicit() takes a list of sparsities or a { pattern: sparsity } map');
  const rules = Object.entries(list).map(([p, v]) => {
    checkValue(v, `pattern ${p}`);
    return { p, re: namePattern(p), v };
  });
  return {
    name: 'explicit',
    describe: () => `explicit: ${rules.map((r) => `${r.p}=${r.v}`).join(', ')}`,
    needsStatistics: false,
    allocate(input: AllocationInput) {
      validateInput(input);
      const linears = input.blocks.flatMap((b) => b.linears.map((l) => ({ ...l, block: b.index })));
      const used = new Set<string>();
      const raw = linears.map((l) => {
        let v = input.sparsity;
        for (const r of rules) {
          if (r.re.test(l.name)) {
            v = r.v;
            used.add(r.p);
          }
        }
        return v;
      });
      const unused = rules.filter((r) => !used.has(r.p)).map((r) => r.p);
      if (unused.length) {
        throw new DsaPruneError(`explicit allocation: pattern ${unused.join(', ')} matches no prunable linear`, {
          hint: 'Run `dsa-prune inspect <model>` to see the linear names (e.g. model.layers.0.mlp.down_proj).',
        });
      }
      const s = budgetRaw(raw, linears.map((l) => l.params), input.sparsity, input.budget, 'linear');
      const linearSparsity: Record<string, number> = {};
      linears.forEach((l, i) => (linearSparsity[l.name] = s[i]));
      let k = 0;
      const blockSparsity = input.blocks.map((b) => {
        let num = 0;
        let den = 0;
        for (const l of b.linears) {
          num += s[k++] * l.params;
          den += l.params;
        }
        return den > 0 ? num / den : input.sparsity;
      });
      return { blockSparsity, linearSparsity };
    },
  };
}
