/**
 * dsa-prune/testing: a property-test kit for allocator authors, built on fast-check.
 *
 * ```ts
 * import { checkAllocator } from 'dsa-prune/testing';
 * checkAllocator(myAllocator, { numRuns: 200 });   // throws AllocatorCheckError with a counterexample on failure
 * ```
 * `checkAllocator` runs the allocator on random block statistics (1..64 blocks, varied widths, heavy-tailed z) and
 * asserts: the budget (exact mode: parameter-weighted mean = S within 1e-9, before any rounding), the bounds
 * ([0, 0.99] exact, [0, 1) reference), determinism (same input → bit-identical output, input not mutated), and every
 * property the allocator declares (`permutationEquivariant`, `affineInvariantImportance`). Refusing an input with a
 * DsaPruneError (e.g. a DSA function undefined on it) is allowed; any other exception is a failure.
 */
import fc from 'fast-check';
import { DsaPruneError } from '../errors.js';
import type { BudgetMode, LinearRole } from '../types.js';
import type { Allocation, AllocationInput, Allocator, BlockAllocationStats } from '../allocators/types.js';
import { EXACT_MAX, EXACT_MIN, weightedMean } from '../budget/global.js';
import { mulberry32 } from '../data/text.js';

/** Shapes of block vectors z the arbitraries draw from (Wanda metrics are ≥ 0; `signed` adds negative entries). */
export type ZDistribution = 'halfnormal' | 'uniform' | 'lognormal' | 'cauchy' | 'sparse' | 'outliers' | 'constant' | 'signed';
export const Z_DISTRIBUTIONS: readonly ZDistribution[] = ['halfnormal', 'uniform', 'lognormal', 'cauchy', 'sparse', 'outliers', 'constant', 'signed'];

/** Options of the arbitraries. */
export interface AllocationInputArbitraryOptions {
  /** Fewest blocks (default 1). */
  minBlocks?: number;
  /** Most blocks (default 64). */
  maxBlocks?: number;
  /** Largest hidden size d of a block (default 8; q/k/v/o are d×d, gate/up/down d×2d): keeps z small and tests fast. */
  maxHidden?: number;
  /** `same`: every block has the same width; `varied`: each block its own; `any` (default): both. */
  widths?: 'same' | 'varied' | 'any';
  /** z distributions to draw from (default: all of Z_DISTRIBUTIONS). */
  distributions?: readonly ZDistribution[];
  /** Target sparsity range (default [0, 0.95]). */
  minSparsity?: number;
  maxSparsity?: number;
  /** Budget mode of the inputs (default `exact`). */
  budget?: BudgetMode;
}

/** Fill a block vector of length n from a distribution; `shape` ∈ [0, 1) varies it between blocks (tail, sparsity…). */
export function zVector(dist: ZDistribution, n: number, seed: number, shape = 0.5): Float32Array {
  const r = mulberry32(seed);
  const normal = () => Math.sqrt(-2 * Math.log(r() + 1e-300)) * Math.cos(2 * Math.PI * r());
  const scale = 10 ** (4 * r() - 2);
  const z = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v: number;
    switch (dist) {
      case 'halfnormal': v = Math.abs(normal()); break;
      case 'uniform': v = r(); break;
      case 'lognormal': v = Math.exp((0.2 + 3 * shape) * normal()); break;
      case 'cauchy': v = Math.abs(Math.tan(Math.PI * (r() - 0.5))); break;
      case 'sparse': v = r() < 0.2 + 0.7 * shape ? 0 : Math.abs(normal()); break;
      case 'outliers': v = Math.abs(normal()) * (r() < 0.002 + 0.05 * shape ? 50 : 1); break;
      case 'constant': v = 1; break;
      case 'signed': v = normal() + shape - 0.5; break;
    }
    z[i] = v * scale;
  }
  return z;
}

const ROLES: [string, LinearRole, number, number][] = [
  ['self_attn.q_proj', 'q', 1, 1], ['self_attn.k_proj', 'k', 1, 1], ['self_attn.v_proj', 'v', 1, 1], ['self_attn.o_proj', 'o', 1, 1],
  ['mlp.gate_proj', 'gate', 2, 1], ['mlp.up_proj', 'up', 2, 1], ['mlp.down_proj', 'down', 1, 2],
];

function buildBlocks(L: number, widths: number[], dist: ZDistribution, seed: number): BlockAllocationStats[] {
  const r = mulberry32(seed ^ 0x9e3779b9);
  return Array.from({ length: L }, (_, index) => {
    const d = widths[index];
    const linears = ROLES.map(([n, role, a, b]) => ({ name: `model.layers.${index}.${n}`, role, params: a * d * b * d }));
    const params = linears.reduce((s, l) => s + l.params, 0);
    return { index, params, linears, z: zVector(dist, params, (seed + 7919 * (index + 1)) | 0, r()) };
  });
}

/** Block statistics of a Llama-like model of random depth, widths and z distribution. */
export function blockStatsArbitrary(o: AllocationInputArbitraryOptions = {}): fc.Arbitrary<BlockAllocationStats[]> {
  const minB = o.minBlocks ?? 1;
  const maxB = o.maxBlocks ?? 64;
  const maxH = o.maxHidden ?? 8;
  const dists = o.distributions ?? Z_DISTRIBUTIONS;
  const sameWidth = o.widths === 'same' ? fc.constant(true) : o.widths === 'varied' ? fc.constant(false) : fc.boolean();
  return fc
    .record({
      L: fc.integer({ min: minB, max: maxB }),
      same: sameWidth,
      d: fc.integer({ min: 1, max: maxH }),
      dist: fc.constantFrom(...dists),
      seed: fc.integer(),
    })
    .map(({ L, same, d, dist, seed }) => {
      const r = mulberry32(seed);
      const widths = Array.from({ length: L }, () => (same ? d : 1 + Math.floor(r() * maxH)));
      return buildBlocks(L, widths, dist, seed);
    });
}

/** A whole AllocationInput: block statistics, a target sparsity and the budget mode. */
export function allocationInputArbitrary(o: AllocationInputArbitraryOptions = {}): fc.Arbitrary<AllocationInput> {
  return fc
    .record({
      blocks: blockStatsArbitrary(o),
      sparsity: fc.double({ min: o.minSparsity ?? 0, max: o.maxSparsity ?? 0.95, noNaN: true }),
    })
    .map(({ blocks, sparsity }) => ({ blocks, sparsity, budget: o.budget ?? 'exact' }));
}

/** Options of checkAllocator. */
export interface CheckAllocatorOptions {
  /** Random inputs per budget mode (default 100). */
  numRuns?: number;
  /** fast-check seed, to replay a failure. */
  seed?: number;
  /** Budget mode(s) to check (default `exact`). */
  budget?: BudgetMode | 'both';
  /** Your own input arbitrary (default allocationInputArbitrary with `inputs` options). */
  arbitrary?: fc.Arbitrary<AllocationInput>;
  /** Options of the default arbitrary (e.g. `{ minBlocks: 4, maxBlocks: 4 }` for an allocator needing 4 blocks). */
  inputs?: AllocationInputArbitraryOptions;
  /** Allowed |weighted mean − S| in exact mode (default 1e-9). */
  budgetTolerance?: number;
  /** Allowed difference between allocations that must be equal up to float rounding (default 1e-9). */
  tolerance?: number;
  /** Properties to check instead of the ones the allocator declares. */
  properties?: Allocator['properties'];
  /** Fewest inputs the allocator must accept (not refuse with a DsaPruneError), per mode (default 1). */
  minAccepted?: number;
}

/** What a passing check saw. */
export interface CheckAllocatorReport {
  allocator: string;
  runs: number;
  accepted: number;
  /** Inputs refused with a DsaPruneError (allowed), with a few of the messages. */
  refused: number;
  refusals: string[];
  checked: string[];
}

/** Thrown by checkAllocator: which property failed, on which (shrunk) input. */
export class AllocatorCheckError extends Error {
  constructor(message: string, readonly property: string) {
    super(message);
    this.name = 'AllocatorCheckError';
  }
}

type Outcome = { ok: true; a: Allocation } | { ok: false; message: string };

class Violation extends Error {
  constructor(readonly property: string, message: string) {
    super(`${property}: ${message}`);
  }
}

function run(allocator: Allocator, input: AllocationInput): Outcome {
  try {
    return { ok: true, a: allocator.allocate(input) };
  } catch (e) {
    if (e instanceof DsaPruneError && e.message) return { ok: false, message: e.message };
    throw new Violation('errors', `threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)} instead of returning or refusing with a DsaPruneError`);
  }
}

function cloneInput(input: AllocationInput): AllocationInput {
  return { ...input, blocks: input.blocks.map((b) => ({ ...b, linears: b.linears.map((l) => ({ ...l })), z: b.z.slice() })) };
}

function sameBits(x: Float32Array, y: Float32Array): boolean {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
  return true;
}

function describeInput(input: AllocationInput): string {
  const ps = input.blocks.map((b) => b.params);
  return `${input.blocks.length} blocks (params ${ps.slice(0, 6).join(',')}${ps.length > 6 ? ',…' : ''}), S=${input.sparsity}, budget=${input.budget}`;
}

function checkShape(a: Allocation, input: AllocationInput, tol: number): void {
  const L = input.blocks.length;
  if (!Array.isArray(a.blockSparsity) || a.blockSparsity.length !== L) {
    throw new Violation('shape', `blockSparsity has ${a.blockSparsity?.length} entries for ${L} blocks`);
  }
  const [lo, hi] = input.budget === 'exact' ? [EXACT_MIN, EXACT_MAX] : [0, 1];
  const inBounds = (s: number) => Number.isFinite(s) && s >= lo && (input.budget === 'exact' ? s <= hi : s < hi);
  a.blockSparsity.forEach((s, i) => {
    if (!inBounds(s)) throw new Violation('bounds', `block ${i} gets ${s}, outside [${lo}, ${hi}${input.budget === 'exact' ? ']' : ')'}`);
  });
  for (const [name, s] of Object.entries(a.linearSparsity ?? {})) {
    if (!inBounds(s)) throw new Violation('bounds', `linear ${name} gets ${s}, outside [${lo}, ${hi}]`);
  }
  if (input.budget !== 'exact') return;
  const w = input.blocks.map((b) => b.params);
  if (!w.some((x) => x > 0)) return;
  if (a.linearSparsity) {
    const s: number[] = [];
    const p: number[] = [];
    input.blocks.forEach((b, i) => {
      for (const l of b.linears) {
        s.push(a.linearSparsity![l.name] ?? a.blockSparsity[i]);
        p.push(l.params);
      }
    });
    const m = weightedMean(s, p);
    if (!(Math.abs(m - input.sparsity) <= tol)) throw new Violation('budget', `parameter-weighted mean over linears is ${m}, target ${input.sparsity}`);
  } else {
    const m = weightedMean(a.blockSparsity, w);
    if (!(Math.abs(m - input.sparsity) <= tol)) throw new Violation('budget', `parameter-weighted mean is ${m}, target ${input.sparsity} (|diff| ${Math.abs(m - input.sparsity)})`);
  }
}

/** Index of a block where x and y differ by more than tol (-1: none). `clampStep` ≥ 0: 0.01 also equals |v| ≤ clampStep. */
function sameAllocation(x: number[], y: number[], tol: number, clampStep = -1): number {
  let worst = -1;
  const stepped = (u: number, v: number) => clampStep >= 0 && u === 0.01 && Math.abs(v) <= clampStep;
  for (let i = 0; i < x.length; i++) if (!(Math.abs(x[i] - y[i]) <= tol) && !stepped(x[i], y[i]) && !stepped(y[i], x[i])) worst = i;
  return worst;
}

/**
 * Check an allocator on random inputs (fast-check). Throws AllocatorCheckError naming the property, the shrunk input
 * and the fast-check seed on the first failure; returns a report otherwise.
 */
export function checkAllocator(allocator: Allocator, options: CheckAllocatorOptions = {}): CheckAllocatorReport {
  const props = options.properties ?? allocator.properties ?? {};
  const tol = options.tolerance ?? 1e-9;
  const btol = options.budgetTolerance ?? 1e-9;
  const modes: BudgetMode[] = options.budget === 'both' ? ['exact', 'reference'] : [options.budget ?? 'exact'];
  const report: CheckAllocatorReport = { allocator: allocator.name, runs: 0, accepted: 0, refused: 0, refusals: [], checked: [] };
  report.checked = ['errors', 'shape', 'bounds', 'determinism', ...(modes.includes('exact') ? ['budget'] : [])];
  if (props.permutationEquivariant) report.checked.push('permutationEquivariant');
  if (props.affineInvariantImportance) {
    if (typeof allocator.scores !== 'function' || typeof allocator.fromScores !== 'function') {
      throw new AllocatorCheckError(`${allocator.name} declares affineInvariantImportance but has no scores()/fromScores() to check it with`, 'affineInvariantImportance');
    }
    report.checked.push('affineInvariantImportance');
  }

  for (const budget of modes) {
    let accepted = 0;
    const arb = (options.arbitrary ?? allocationInputArbitrary({ ...options.inputs, budget })).map((i) => ({ ...i, budget }));
    const property = fc.property(
      arb,
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.double({ min: 0.01, max: 100, noNaN: true }),
      fc.double({ min: -100, max: 100, noNaN: true }),
      (input, permSeed, a, b) => {
        const snapshot = cloneInput(input);
        const first = run(allocator, input);
        input.blocks.forEach((blk, i) => {
          if (!sameBits(blk.z, snapshot.blocks[i].z)) throw new Violation('determinism', `allocate() modified z of block ${i}`);
        });
        const second = run(allocator, snapshot);
        if (first.ok !== second.ok) throw new Violation('determinism', 'the same input was accepted once and refused once');
        if (!first.ok || !second.ok) {
          if (!first.ok && !second.ok && first.message !== second.message) throw new Violation('determinism', 'two refusals of the same input differ');
          report.refused++;
          if (!first.ok && report.refusals.length < 5) report.refusals.push(first.message);
          return;
        }
        const x = first.a.blockSparsity;
        const y = second.a.blockSparsity;
        if (x.length !== y.length || x.some((v, i) => !Object.is(v, y[i]))) throw new Violation('determinism', 'the same input gave two different allocations');
        checkShape(first.a, input, btol);
        accepted++;
        report.accepted++;

        if (props.permutationEquivariant && input.blocks.length > 1) {
          const r = mulberry32(permSeed);
          const perm = input.blocks.map((_, i) => i);
          for (let i = perm.length - 1; i > 0; i--) {
            const j = Math.floor(r() * (i + 1));
            [perm[i], perm[j]] = [perm[j], perm[i]];
          }
          const permuted = { ...input, blocks: perm.map((p, i) => ({ ...input.blocks[p], index: i })) };
          const out = run(allocator, permuted);
          if (!out.ok) throw new Violation('permutationEquivariant', `refused the permuted input: ${out.message}`);
          const want = perm.map((p) => x[p]);
          // Summation order changes with the permutation: the reference step at 0 may flip (see affineInvariantImportance).
          const bad = sameAllocation(out.a.blockSparsity, want, tol, budget === 'reference' ? tol : -1);
          if (bad >= 0) {
            throw new Violation('permutationEquivariant', `permutation [${perm.join(',')}]: block ${bad} got ${out.a.blockSparsity[bad]}, expected ${want[bad]} (its sparsity before the permutation)`);
          }
        }

        if (props.affineInvariantImportance) {
          const I = allocator.scores!(input);
          const finite = I.every(Number.isFinite);
          const lo = Math.min(...I);
          const hi = Math.max(...I);
          // Only where a·I + b keeps the spread representable (|b| up to 100 × the scale of I).
          const scale = Math.max(Math.abs(lo), Math.abs(hi), 1e-300);
          if (finite && hi > lo && (hi - lo) / scale > 1e-6) {
            const shift = b * scale;
            const J = I.map((v) => a * v + shift);
            const p = run({ ...allocator, allocate: (inp) => allocator.fromScores!(I, inp) }, input);
            const q = run({ ...allocator, allocate: (inp) => allocator.fromScores!(J, inp) }, input);
            if (p.ok !== q.ok) throw new Violation('affineInvariantImportance', `scores I accepted but ${a}·I + ${shift} refused (or the reverse)`);
            if (p.ok && q.ok) {
              // Rounding of a·I + b, seen through minmax: a few ulps of (scale + |b|/a) relative to the spread.
              const t = Math.max(tol, (40 * Number.EPSILON * (scale + Math.abs(shift) / a)) / (hi - lo));
              // The reference rule maps a raw sparsity ≤ 0 to 0.01 (METHODS.md): a block whose raw value is 0 up to the
              // rounding of a·I + b may land on either side of that step, so 0.01 on one side matches ≈ 0 on the other.
              const clampStep = budget === 'reference' ? t : -1;
              const bad = sameAllocation(p.a.blockSparsity, q.a.blockSparsity, t, clampStep);
              if (bad >= 0) throw new Violation('affineInvariantImportance', `scores → ${a}·scores + ${shift} moved block ${bad} from ${p.a.blockSparsity[bad]} to ${q.a.blockSparsity[bad]}`);
            }
          }
        }
      },
    );
    const numRuns = options.numRuns ?? 100;
    const res = fc.check(property, { numRuns, ...(options.seed !== undefined ? { seed: options.seed } : {}) });
    report.runs += numRuns;
    if (res.failed) {
      const err = res.errorInstance;
      const prop = err instanceof Violation ? err.property : 'errors';
      const inp = res.counterexample?.[0] as AllocationInput | undefined;
      throw new AllocatorCheckError(
        `checkAllocator(${allocator.name}): ${err instanceof Error ? err.message : String(err)}\n` +
          `  on ${inp ? describeInput(inp) : 'an input'} after ${res.numRuns} runs (shrunk ${res.numShrinks} times); replay with { seed: ${res.seed} }`,
        prop,
      );
    }
    if (accepted < (options.minAccepted ?? 1)) {
      throw new AllocatorCheckError(
        `checkAllocator(${allocator.name}): accepted ${accepted} of ${numRuns} ${budget}-budget inputs (needs ${options.minAccepted ?? 1}); refusals such as: ${report.refusals[0] ?? '(none)'}`,
        'errors',
      );
    }
  }
  return report;
}
