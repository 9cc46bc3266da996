/**
 * The DSA operation space as data: one row per operation (reference name, kind, mathjs name, kernel). Parsing, printing,
 * simplification, evaluation and the search's sampling all read these tables, so adding an operation is adding a row.
 *
 * Kernels run on typed arrays in chunks (a few hundred KB of float64 scratch, whatever the block size), accumulate in
 * float64, and follow the project's METHODS.md specification literally (IEEE semantics: NaN / ±Infinity propagate; the allocator
 * decides what a non-finite importance means).
 */

/** Number of entries processed per chunk (float64 scratch of this length). */
export const CHUNK = 1 << 15;

/** A pass over the (pre-processed) block vector: calls `visit` once per chunk, in order. */
export type ChunkSource = (visit: (buf: Float64Array, len: number) => void) => void;

/** Global statistics some pre-process ops need of their input (computed by an extra pass). */
export interface PreStats {
  n: number;
  mean: number;
  /** Unbiased standard deviation (n − 1). */
  std: number;
  min: number;
  max: number;
}

export interface PreOp {
  /** Reference name (`ABSLOG`). */
  name: string;
  kind: 'pre';
  /** Function name in the mathjs form (`abslog`). */
  mathjs: string;
  /** One-line definition for docs and `describe()`. */
  summary: string;
  /** Which global statistics of its input the op needs (`none`: purely element-wise). */
  needs: 'none' | 'meanstd' | 'minmax';
  /** In-place kernel over buf[0..len). */
  apply(buf: Float64Array, len: number, stats: PreStats): void;
  /** True when every output is ≥ 0 or NaN (used by the simplifier's `abs` rules). */
  nonNegative: boolean;
}

export interface ReduceOp {
  name: string;
  kind: 'reduce';
  mathjs: string;
  summary: string;
  /** Vector → scalar; may call `src` several times (one pass each). */
  reduce(src: ChunkSource): number;
  nonNegative: boolean;
}

export interface ScalarOp {
  name: string;
  kind: 'scalar';
  /** mathjs function name; '' for NO_OP (omitted when printing). */
  mathjs: string;
  summary: string;
  fn(x: number): number;
  /** Why fn(x) is not finite for this x, as a condition on x (`outside [−1, 1]`), or undefined. For error messages. */
  why?(x: number): string | undefined;
  nonNegative: boolean;
}

export type DsaOp = PreOp | ReduceOp | ScalarOp;



const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
const softplus = (x: number): number => (x > 20 ? x : Math.log1p(Math.exp(x)));

/** Pre-process ops (element-wise, applied left to right; at most 2 per expression). `NO_OP` is the empty list. */
export const PRE_OPS: readonly PreOp[] = [
  {
    name: 'ABS', kind: 'pre', mathjs: 'abs', summary: '|z|', needs: 'none', nonNegative: true,
    apply(buf, len) {
      for (let i = 0; i < len; i++) buf[i] = Math.abs(buf[i]);
    },
  },
  {
    name: 'LOG', kind: 'pre', mathjs: 'safelog', summary: 'ln(z + 1e-6) after setting z ≤ 0 to 1', needs: 'none', nonNegative: false,
    apply(buf, len) {
      for (let i = 0; i < len; i++) {
        const v = buf[i];
        buf[i] = Math.log((v <= 0 ? 1 : v) + 1e-6);
      }
    },
  },
  {
    name: 'ABSLOG', kind: 'pre', mathjs: 'abslog', summary: 'ln|z| after setting z = 0 to 1', needs: 'none', nonNegative: false,
    apply(buf, len) {
      for (let i = 0; i < len; i++) {
        const v = buf[i];
        buf[i] = v === 0 ? 0 : Math.log(Math.abs(v));
      }
    },
  },
  {
    name: 'POW', kind: 'pre', mathjs: 'square', summary: 'z²', needs: 'none', nonNegative: true,
    apply(buf, len) {
      for (let i = 0; i < len; i++) buf[i] = buf[i] * buf[i];
    },
  },
  {
    name: 'EXP', kind: 'pre', mathjs: 'exp', summary: 'e^z', needs: 'none', nonNegative: true,
    apply(buf, len) {
      for (let i = 0; i < len; i++) buf[i] = Math.exp(buf[i]);
    },
  },
  {
    name: 'NORMALIZE', kind: 'pre', mathjs: 'normalize', summary: '(z − mean)/std (unbiased std, no epsilon; NaN → 0)',
    needs: 'meanstd', nonNegative: false,
    apply(buf, len, s) {
      const m = s.mean;
      const sd = s.std;
      for (let i = 0; i < len; i++) {
        const v = (buf[i] - m) / sd;
        buf[i] = v !== v ? 0 : v;
      }
    },
  },
  {
    name: 'SIGMOID', kind: 'pre', mathjs: 'sigmoid', summary: '1/(1 + e^−z)', needs: 'none', nonNegative: true,
    apply(buf, len) {
      for (let i = 0; i < len; i++) buf[i] = 1 / (1 + Math.exp(-buf[i]));
    },
  },
  {
    name: 'TANH', kind: 'pre', mathjs: 'tanh', summary: 'tanh z', needs: 'none', nonNegative: false,
    apply(buf, len) {
      for (let i = 0; i < len; i++) buf[i] = Math.tanh(buf[i]);
    },
  },
  {
    name: 'MMS', kind: 'pre', mathjs: 'mms', summary: '(z − min)/(max − min + 1e-9)', needs: 'minmax', nonNegative: true,
    apply(buf, len, s) {
      const lo = s.min;
      const d = s.max - s.min + 1e-9;
      for (let i = 0; i < len; i++) buf[i] = (buf[i] - lo) / d;
    },
  },
];

/** Running mean and sum of squared deviations over chunks (Chan's merge). */
interface Moments { n: number; mean: number; m2: number }

/** Merge one chunk whose sum is `cs` into `acc`: two-pass inside the chunk, Chan's merge across chunks. */
function addChunk(acc: Moments, buf: Float64Array, len: number, cs: number): void {
  const cm = cs / len;
  let c2 = 0;
  for (let i = 0; i < len; i++) {
    const d = buf[i] - cm;
    c2 += d * d;
  }
  if (acc.n === 0) {
    acc.n = len;
    acc.mean = cm;
    acc.m2 = c2;
    return;
  }
  const tot = acc.n + len;
  const delta = cm - acc.mean;
  acc.mean += (delta * len) / tot;
  acc.m2 += c2 + ((delta * delta * acc.n) / tot) * len;
  acc.n = tot;
}

/** Mean and unbiased variance in one pass over chunks (two-pass inside each chunk, Chan's merge across chunks). */
export function meanVar(src: ChunkSource): Moments {
  const acc: Moments = { n: 0, mean: 0, m2: 0 };
  src((buf, len) => {
    if (len === 0) return;
    let s = 0;
    for (let i = 0; i < len; i++) s += buf[i];
    addChunk(acc, buf, len, s);
  });
  return acc;
}

/** Σx, Σ|x| and Σx² in their own loops (a shared loop with a callback is megamorphic in V8 and ~3× slower). */
function sumPlain(src: ChunkSource): { n: number; s: number } {
  let n = 0;
  let s = 0;
  src((buf, len) => {
    n += len;
    for (let i = 0; i < len; i++) s += buf[i];
  });
  return { n, s };
}

function sumAbs(src: ChunkSource): { n: number; s: number } {
  let n = 0;
  let s = 0;
  src((buf, len) => {
    n += len;
    for (let i = 0; i < len; i++) s += Math.abs(buf[i]);
  });
  return { n, s };
}

function sumSq(src: ChunkSource): number {
  let s = 0;
  src((buf, len) => {
    for (let i = 0; i < len; i++) s += buf[i] * buf[i];
  });
  return s;
}

const variance = (src: ChunkSource): number => {
  const { n, m2 } = meanVar(src);
  return m2 / (n - 1);
};

/** Reductions (vector → scalar). `NO_OP` parses as `MEAN` (the reference treats it so) and is not listed twice. */
export const REDUCE_OPS: readonly ReduceOp[] = [
  {
    name: 'MEAN', kind: 'reduce', mathjs: 'mean', summary: 'mean z', nonNegative: false,
    reduce(src) {
      const { n, s } = sumPlain(src);
      return s / n;
    },
  },
  { name: 'VAR', kind: 'reduce', mathjs: 'var', summary: 'unbiased variance (n − 1)', nonNegative: true, reduce: variance },
  {
    name: 'STD', kind: 'reduce', mathjs: 'std', summary: 'unbiased standard deviation', nonNegative: true,
    reduce: (src) => Math.sqrt(variance(src)),
  },
  {
    name: 'L1_NORM', kind: 'reduce', mathjs: 'l1_norm', summary: 'mean |z|', nonNegative: true,
    reduce(src) {
      const { n, s } = sumAbs(src);
      return s / n;
    },
  },
  {
    name: 'FROBENIUS_NORM', kind: 'reduce', mathjs: 'frobenius_norm', summary: '√Σz²', nonNegative: true,
    reduce: (src) => Math.sqrt(sumSq(src)),
  },
  { name: 'GRAM', kind: 'reduce', mathjs: 'gram', summary: 'Σz²', nonNegative: true, reduce: sumSq },
  {
    name: 'GEOMETRIC_MEAN', kind: 'reduce', mathjs: 'geometric_mean', summary: 'exp(mean ln z); NaN if any z ≤ 0', nonNegative: true,
    reduce(src) {
      let n = 0;
      let s = 0;
      let bad = false;
      src((buf, len) => {
        n += len;
        for (let i = 0; i < len; i++) {
          const v = buf[i];
          if (!(v > 0)) bad = true;
          else s += Math.log(v);
        }
      });
      return bad ? NaN : Math.exp(s / n);
    },
  },
  {
    name: 'ENTROPY', kind: 'reduce', mathjs: 'entropy', summary: '−Σ p ln p, p = z/Σz over the finite z ≥ 0 (NaN if none)',
    nonNegative: true,
    reduce(src) {
      let k = 0;
      let t = 0;
      src((buf, len) => {
        for (let i = 0; i < len; i++) {
          const v = buf[i];
          if (v >= 0 && v !== Infinity) {
            k++;
            t += v;
          }
        }
      });
      return entropyGiven(src, k, t);
    },
  },
];

/** Second pass of ENTROPY: −Σ p ln p with p = z/t over the finite z > 0, given the count k and total t of z ≥ 0. */
function entropyGiven(src: ChunkSource, k: number, t: number): number {
  if (k === 0 || !(t > 0) || !Number.isFinite(t)) return NaN;
  let h = 0;
  src((buf, len) => {
    for (let i = 0; i < len; i++) {
      const v = buf[i];
      if (v > 0 && v !== Infinity) {
        const p = v / t;
        h -= p * Math.log(p);
      }
    }
  });
  return h;
}

/**
 * Every reduction of REDUCE_OPS at once, in one pass (plus ENTROPY's second pass): the search scores many candidates
 * that share a pre-process and differ in the reduction, so computing all of them costs about what two cost. Each value
 * is accumulated in the same order as its own reducer, so the results are identical to calling them one by one.
 */
export function reduceAll(src: ChunkSource): Record<string, number> {
  let sum = 0;
  let abs = 0;
  let sq = 0;
  let logSum = 0;
  let bad = false;
  let k = 0;
  let t = 0;
  const moments: Moments = { n: 0, mean: 0, m2: 0 };
  src((buf, len) => {
    if (len === 0) return;
    let cs = 0;
    for (let i = 0; i < len; i++) {
      const v = buf[i];
      sum += v;
      cs += v;
      abs += Math.abs(v);
      sq += v * v;
      if (!(v > 0)) bad = true;
      else logSum += Math.log(v);
      if (v >= 0 && v !== Infinity) {
        k++;
        t += v;
      }
    }
    addChunk(moments, buf, len, cs); // meanVar's step, so VAR and STD equal their own reducers bit for bit
  });
  const n = moments.n;
  const variance = moments.m2 / (n - 1);
  return {
    MEAN: sum / n, VAR: variance, STD: Math.sqrt(variance), L1_NORM: abs / n, FROBENIUS_NORM: Math.sqrt(sq), GRAM: sq,
    GEOMETRIC_MEAN: bad ? NaN : Math.exp(logSum / n), ENTROPY: entropyGiven(src, k, t),
  };
}

const outside = (lo: number, hi: number) => (x: number) => (x < lo || x > hi ? `outside [${lo}, ${hi}]` : undefined);
const overflow = (x: number) => (x > 700 ? 'overflows' : undefined);

/** Scalar ops: the first is the transform, the optional second the post-process. `NO_OP` is the identity. */
export const SCALAR_OPS: readonly ScalarOp[] = [
  { name: 'NO_OP', kind: 'scalar', mathjs: '', summary: 'x', fn: (x) => x, nonNegative: false },
  { name: 'SIN', kind: 'scalar', mathjs: 'sin', summary: 'sin x', fn: Math.sin, nonNegative: false },
  { name: 'COS', kind: 'scalar', mathjs: 'cos', summary: 'cos x', fn: Math.cos, nonNegative: false },
  { name: 'TAN', kind: 'scalar', mathjs: 'tan', summary: 'tan x', fn: Math.tan, nonNegative: false },
  { name: 'ASIN', kind: 'scalar', mathjs: 'asin', summary: 'asin x (NaN outside [−1, 1])', fn: Math.asin, why: outside(-1, 1), nonNegative: false },
  { name: 'ACOS', kind: 'scalar', mathjs: 'acos', summary: 'acos x (NaN outside [−1, 1])', fn: Math.acos, why: outside(-1, 1), nonNegative: false },
  { name: 'ATAN', kind: 'scalar', mathjs: 'atan', summary: 'atan x', fn: Math.atan, nonNegative: false },
  { name: 'EXP', kind: 'scalar', mathjs: 'exp', summary: 'e^x', fn: Math.exp, why: overflow, nonNegative: true },
  {
    name: 'LOG', kind: 'scalar', mathjs: 'log', summary: 'ln x (NaN for x < 0, −inf at 0)', fn: Math.log, nonNegative: false,
    why: (x) => (x < 0 ? '< 0' : x === 0 ? '= 0' : undefined),
  },
  { name: 'ABS', kind: 'scalar', mathjs: 'abs', summary: '|x|', fn: Math.abs, nonNegative: true },
  { name: 'SIGMOID', kind: 'scalar', mathjs: 'sigmoid', summary: '1/(1 + e^−x)', fn: sigmoid, nonNegative: true },
  { name: 'TANH', kind: 'scalar', mathjs: 'tanh', summary: 'tanh x', fn: Math.tanh, nonNegative: false },
  { name: 'SOFTPLUS', kind: 'scalar', mathjs: 'softplus', summary: 'ln(1 + e^x) (= x for x > 20)', fn: softplus, nonNegative: true },
];

const byName = <T extends DsaOp>(ops: readonly T[]) => new Map(ops.map((o) => [o.name, o]));
export const PRE_BY_NAME: ReadonlyMap<string, PreOp> = byName(PRE_OPS);
export const REDUCE_BY_NAME: ReadonlyMap<string, ReduceOp> = new Map([...byName(REDUCE_OPS), ['NO_OP', REDUCE_OPS[0]]]);
export const SCALAR_BY_NAME: ReadonlyMap<string, ScalarOp> = byName(SCALAR_OPS);

/** Scalar helpers the mathjs registration reuses. */
export const scalarKernels = { sigmoid, softplus };
