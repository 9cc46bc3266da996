import type { Allocator } from './types.js';
import { DsaPruneError } from '../errors.js';
import { uniform } from './uniform.js';
import { owl } from './owl.js';
import { atp } from './atp.js';
import { dsa } from './dsa-allocator.js';
import { explicit } from './explicit.js';
import { flapGlobal } from './flap-global.js';

/** Numeric options of the CLI that parameterise allocators. */
export interface AllocatorSpecOptions {
  /** λ of OWL and DSA (--lambda). */
  lambda?: number;
  /** OWL outlier threshold M (--owl-m). */
  owlM?: number;
  /** ATP step β (--beta). */
  beta?: number;
}

/** The spec as quoted in messages (a long argument gives a short error). */
const clip = (s: string) => (s.length <= 80 ? s : `${s.slice(0, 60)}… (${s.length} characters)`);

/**
 * The CLI's `--allocator` value: `uniform` | `owl` | `atp` | `dsa` (the published function) | `dsa:<expression>` |
 * `<expression>` (either DSA form) | `flap-global` (structured ffn only) | `explicit:0.5,0.6,…` (one sparsity per block) | `explicit:<glob>=<s>,…` (per linear, by name or glob).
 */
export function parseAllocatorSpec(spec: string, o: AllocatorSpecOptions = {}): Allocator {
  const s = String(spec ?? '').trim();
  const lower = s.toLowerCase();
  const lambda = o.lambda === undefined ? {} : { lambda: o.lambda };
  if (lower === 'uniform') return uniform();
  if (lower === 'owl') return owl({ ...lambda, ...(o.owlM === undefined ? {} : { M: o.owlM }) });
  if (lower === 'atp') return atp(o.beta === undefined ? {} : { beta: o.beta });
  if (lower === 'dsa') return dsa(undefined, lambda);
  if (lower === 'flap-global') return flapGlobal();
  if (lower.startsWith('dsa:')) return dsa(s.slice(4), lambda);
  if (lower.startsWith('explicit:')) {
    const items = s.slice(9).split(',').map((x) => x.trim());
    // `explicit:model.layers.*.mlp.down_proj=0.8,*.k_proj=0.5`: a per-linear map by name or glob.
    if (items.some((x) => x.includes('='))) {
      const map: Record<string, number> = {};
      for (const it of items) {
        const eq = it.lastIndexOf('=');
        const v = eq > 0 ? Number(it.slice(eq + 1).trim()) : NaN;
        if (eq <= 0 || it.slice(eq + 1).trim() === '' || !Number.isFinite(v)) {
          throw new DsaPruneError(`--allocator ${clip(s)}: "${clip(it)}" is not <name or glob>=<sparsity>`, { hint: 'e.g. explicit:model.layers.*.mlp.down_proj=0.8,*.k_proj=0.5' });
        }
        map[it.slice(0, eq).trim()] = v;
      }
      return explicit(map);
    }
    // Number('') is 0: an empty item (`0.5,,0.6`, a trailing comma) must not silently become sparsity 0.
    const vals = items.map((x) => (x === '' ? NaN : Number(x)));
    if (vals.some((v) => !Number.isFinite(v))) {
      throw new DsaPruneError(`--allocator ${clip(s)}: every value of the list must be a number`, { hint: 'Give one sparsity per block, e.g. explicit:0.4,0.5,0.6.' });
    }
    return explicit(vals);
  }
  if (s.includes('(')) return dsa(s, lambda);
  throw new DsaPruneError(`unknown allocator "${clip(s)}"`, {
    hint: 'Use uniform, owl, atp, dsa, flap-global (structured ffn), dsa:<expression> (e.g. dsa:W:(ABSLOG)-(VAR)-(ATAN,ASIN)), a DSA expression such as asin(atan(var(abslog(z)))), or explicit:0.5,0.6,…',
  });
}
