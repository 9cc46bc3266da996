/**
 * Large dense products on onnxruntime's CPU `Gemm` (MLAS, multi-threaded): the BLAS-speed path of SparseGPT's
 * Cholesky / inverse (float64) and of its lazy OBS updates (float32). One tiny ONNX graph per (dtype, variant) with
 * symbolic shapes, so one session serves every size; inputs are copied into contiguous typed arrays (the copy is
 * O(m·k + k·n + m·n) against O(m·k·n) multiply-adds).
 *
 * Measured on the 2-core build machine (`npm run bench -- kernels`, docs/methods.md "Speed"): float64 Gemm ≈ 20 GFLOP/s,
 * float32 ≈ 60–100 GFLOP/s at n ≥ 576, against ≈ 1–2 GFLOP/s for the TypeScript loops; one call costs ≈ 0.1 ms, so
 * products below {@link BLAS_MIN_WORK} multiply-adds stay in TypeScript.
 *
 * `DSA_PRUNE_BLAS=0` in the environment (or `configureBlas({ enabled: false })`) turns the path off everywhere: the
 * methods then run the TypeScript kernels only (for comparisons, or if onnxruntime-node is unusable).
 */
import os from 'node:os';
import * as ort from 'onnxruntime-node';
import { createNode, DataType, encodeModel, type ModelProto, type ValueInfoProto } from './onnx.js';
import type { MatView } from '../kernels/gemm.js';

/**
 * Below this many multiply-adds (m·k·n) SparseGPT's lazy update runs in TypeScript: one onnxruntime call cost 1–2 ms
 * on the loaded 2-core machine (`npm run bench -- kernels`, 200 calls of 64 × 128 × 16), and at bench-12l's widths
 * (≤ 4 M multiply-adds per block) the Gemm path made the prune phase slower there (docs/methods.md "Speed").
 */
export const BLAS_MIN_WORK = 1 << 23;

export type BlasDtype = 'float32' | 'float64';

interface BlasConfig {
  enabled: boolean;
  threads: number;
}

const config: BlasConfig = {
  enabled: process.env.DSA_PRUNE_BLAS !== '0',
  threads: Math.max(1, os.availableParallelism()),
};

/** Sessions by `${dtype}/${variant}`; created on first use. */
const sessions = new Map<string, Promise<ort.InferenceSession>>();

/**
 * Turn the onnxruntime path on or off, or set its intra-op threads (default: all cores). Changing `threads`
 * releases the existing sessions.
 */
export function configureBlas(opts: { enabled?: boolean; threads?: number }): void {
  if (opts.enabled !== undefined) config.enabled = opts.enabled;
  if (opts.threads !== undefined && opts.threads !== config.threads) {
    config.threads = Math.max(1, Math.floor(opts.threads));
    void releaseBlas();
  }
}

/** Whether the onnxruntime path is in use. */
export function blasEnabled(): boolean {
  return config.enabled;
}

/** Release the cached sessions and the Gemm buffers (both are recreated on the next call). */
export async function releaseBlas(): Promise<void> {
  const all = [...sessions.values()];
  sessions.clear();
  freeWorkspaces.length = 0;
  workspaceHighWater = 0;
  await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.release()));
}

type Variant = 'sub' | 'subT' | 'mulT' | 'mul';

/** Y = C − A·B (sub), C − A·Bᵀ (subT), A·Bᵀ (mulT), A·B (mul); A [m×k], B [k×n] or [n×k]. */
function gemmModel(elem: number, variant: Variant): ModelProto {
  const vi = (name: string, dims: string[]): ValueInfoProto => ({
    name,
    type: { tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => ({ dim_param: d })) } } },
  });
  const trans = variant === 'subT' || variant === 'mulT';
  const sub = variant === 'sub' || variant === 'subT';
  const attribute = [
    { name: 'alpha', type: 1, f: sub ? -1 : 1 },
    { name: 'beta', type: 1, f: 1 },
    { name: 'transB', type: 2, i: trans ? 1 : 0 },
  ];
  const inputs = [vi('A', ['m', 'k']), vi('B', trans ? ['n', 'k'] : ['k', 'n'])];
  if (sub) inputs.push(vi('C', ['m', 'n']));
  return {
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    graph: {
      name: `dsa_prune_gemm_${variant}`,
      node: [createNode({ op_type: 'Gemm', name: 'gemm', input: sub ? ['A', 'B', 'C'] : ['A', 'B'], output: ['Y'], attribute })],
      initializer: [],
      input: inputs,
      output: [vi('Y', ['m', 'n'])],
      value_info: [],
    },
  } as ModelProto;
}

function session(dtype: BlasDtype, variant: Variant): Promise<ort.InferenceSession> {
  const key = `${dtype}/${variant}`;
  let s = sessions.get(key);
  if (!s) {
    const bytes = encodeModel(gemmModel(dtype === 'float32' ? DataType.FLOAT : DataType.DOUBLE, variant));
    s = ort.InferenceSession.create(bytes, {
      executionProviders: ['cpu'],
      intraOpNumThreads: config.threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3,
      // no busy-waiting of the worker threads between calls: the calibration session runs in the same process, and
      // on a shared machine spinning threads only take CPU from it (session config key session.intra_op.allow_spinning)
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    });
    sessions.set(key, s);
    s.catch(() => sessions.delete(key));
  }
  return s;
}

type Typed = Float32Array | Float64Array;

/**
 * Reusable input / output buffers of the Gemm calls: one set per call in flight (normally one), each buffer grow-only
 * and per dtype, so the thousands of calls of a SparseGPT prune allocate nothing once the widest layer has been seen
 * (before, every call allocated its packed inputs and onnxruntime's output afresh: garbage that the collector freed
 * late, tens of MiB at a time). Freed by {@link releaseBlas}; {@link blasWorkspaceBytes} reports the size.
 */
class Workspace {
  private readonly bufs = new Map<string, Typed>();
  get(dtype: BlasDtype, slot: 'A' | 'B' | 'C' | 'Y', n: number): Typed {
    const key = `${dtype}${slot}`;
    let b = this.bufs.get(key);
    if (!b || b.length < n) {
      b = alloc(dtype, n);
      this.bufs.set(key, b);
    }
    return b.subarray(0, n);
  }
  bytes(): number {
    let t = 0;
    for (const b of this.bufs.values()) t += b.byteLength;
    return t;
  }
}
const freeWorkspaces: Workspace[] = [];
/** Largest Gemm buffer set kept between calls (32 MiB; SmolLM2-135M's widest needs ≈ 19 MiB). */
export const BLAS_KEEP_BYTES = 32 * 2 ** 20;
let workspaceHighWater = 0;

/** Bytes held by the Gemm buffers now, and the most held at once since the last {@link releaseBlas}. */
export function blasWorkspaceBytes(): { now: number; peak: number } {
  return { now: freeWorkspaces.reduce((a, w) => a + w.bytes(), 0), peak: workspaceHighWater };
}

function alloc(dtype: BlasDtype, n: number): Typed {
  return dtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
}

/** Contiguous rows×cols block of a view (the view itself when it already is one contiguous array of `dtype`). */
function pack(ws: Workspace, slot: 'A' | 'B' | 'C', dtype: BlasDtype, v: MatView, rows: number, cols: number): Typed {
  const want = dtype === 'float32' ? Float32Array : Float64Array;
  if (v.data instanceof want && v.offset === 0 && v.ld === cols && v.data.length === rows * cols) return v.data as Typed;
  const out = ws.get(dtype, slot, rows * cols);
  const d = v.data;
  if (v.ld === cols && d instanceof want) {
    out.set((d as Typed).subarray(v.offset, v.offset + rows * cols));
    return out;
  }
  for (let r = 0; r < rows; r++) {
    const o = v.offset + r * v.ld;
    if (d instanceof want) out.set((d as Typed).subarray(o, o + cols), r * cols);
    else for (let c = 0; c < cols; c++) out[r * cols + c] = d[o + c];
  }
  return out;
}

function unpack(src: ArrayLike<number>, v: MatView, rows: number, cols: number): void {
  const d = v.data;
  for (let r = 0; r < rows; r++) {
    const o = v.offset + r * v.ld;
    if (d instanceof Float32Array || d instanceof Float64Array) {
      if (src instanceof Float32Array || src instanceof Float64Array) {
        if (src.constructor === d.constructor) {
          d.set(src.subarray(r * cols, r * cols + cols) as never, o);
          continue;
        }
      }
    }
    for (let c = 0; c < cols; c++) d[o + c] = src[r * cols + c];
  }
}

/**
 * One Gemm: packs A, op(B) (and C) into a workspace, runs the session with a preallocated output and writes the
 * result into `out`'s view. When B is the first rows of A (the Cholesky's `L[j0:n, :j0] · L[j0:j1, :j0]ᵀ`), B is
 * read from A's packed copy instead of being packed again.
 */
async function gemm(
  dtype: BlasDtype, variant: Variant, out: MatView, a: MatView, b: MatView, c: MatView | undefined,
  m: number, k: number, n: number, transB: boolean,
): Promise<void> {
  const ws = freeWorkspaces.pop() ?? new Workspace();
  try {
    const s = await session(dtype, variant);
    const pa = pack(ws, 'A', dtype, a, m, k);
    const bInA = transB && b.data === a.data && b.offset === a.offset && b.ld === a.ld && n <= m;
    const pb = bInA ? pa.subarray(0, n * k) : transB ? pack(ws, 'B', dtype, b, n, k) : pack(ws, 'B', dtype, b, k, n);
    const feeds: Record<string, ort.Tensor> = {
      A: new ort.Tensor(dtype, pa, [m, k]),
      B: new ort.Tensor(dtype, pb, transB ? [n, k] : [k, n]),
    };
    if (c) feeds.C = new ort.Tensor(dtype, pack(ws, 'C', dtype, c, m, n), [m, n]);
    const y = ws.get(dtype, 'Y', m * n);
    workspaceHighWater = Math.max(workspaceHighWater, ws.bytes() + freeWorkspaces.reduce((t, w) => t + w.bytes(), 0));
    await s.run(feeds, { Y: new ort.Tensor(dtype, y, [m, n]) });
    unpack(y, out, m, n);
  } finally {
    // keep buffers up to BLAS_KEEP_BYTES for the next call; above that (8192-wide layers) they are not held between calls
    if (ws.bytes() <= BLAS_KEEP_BYTES) freeWorkspaces.push(ws);
  }
}

/**
 * C[m×n] −= A[m×k] · op(B) on onnxruntime in `dtype` (op(B) = B [k×n], or Bᵀ with B [n×k] when `transB`).
 * Views are copied in and the result written back into C's view (rounded to C's element type).
 */
export async function blasSubtractProduct(
  c: MatView,
  a: MatView,
  b: MatView,
  m: number,
  k: number,
  n: number,
  opts: { dtype?: BlasDtype; transB?: boolean } = {},
): Promise<void> {
  if (m <= 0 || k <= 0 || n <= 0) return;
  const t = opts.transB ?? false;
  await gemm(opts.dtype ?? 'float64', t ? 'subT' : 'sub', c, a, b, c, m, k, n, t);
}

/** C[m×n] = A[m×k] · op(B) on onnxruntime in `dtype` (op as in {@link blasSubtractProduct}); C is overwritten. */
export async function blasProduct(
  c: MatView,
  a: MatView,
  b: MatView,
  m: number,
  k: number,
  n: number,
  opts: { dtype?: BlasDtype; transB?: boolean } = {},
): Promise<void> {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (let r = 0; r < m; r++) c.data.fill(0, c.offset + r * c.ld, c.offset + r * c.ld + n);
    return;
  }
  const t = opts.transB ?? false;
  await gemm(opts.dtype ?? 'float64', t ? 'mulT' : 'mul', c, a, b, undefined, m, k, n, t);
}
