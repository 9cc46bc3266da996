/**
 * SparseGPT (Frantar & Alistarh 2023) as defined in the project's METHODS.md specification: blocksize 128, percdamp 0.01.
 *
 * H = (2 / nsamples) · gram; dead inputs (H_jj = 0) get H_jj = 1 and a zero weight column; H += 0.01·mean(diag H)·I;
 * Hinv = upper Cholesky factor of H⁻¹ (float64; sparseGptHinvAsync: blocked, big products on onnxruntime, see
 * src/methods/cholesky-blas.ts; sparseGptHinv: the TypeScript kernel). If H is not positive definite
 * the damping is retried ×10 (0.1, 1, 10 × mean diag) and a note says so; after that a DsaPruneError names the layer.
 * Columns are swept in blocks of 128: the block's mask (unstructured) is chosen jointly over its rows on
 * w² / diag(Hinv)² (float32, as the reference), or every M columns for N:M; each pruned weight's error
 * err = w / Hinv_ii is propagated to the rest of the block (err ⊗ Hinv[i, i:]) and, after the block, to all later
 * columns with one blocked product W[:, later] −= Err · Hinv[blk, later] (a float32 onnxruntime Gemm, as the
 * reference's torch matmul, when it has at least BLAS_MIN_WORK multiply-adds; else the float64-accumulating TS loop).
 */
import { splitExactCount } from '../budget/rounding.js';
import { DsaPruneError } from '../errors.js';
import { BLAS_MIN_WORK, blasEnabled, blasSubtractProduct } from '../model/blas.js';
import { upperCholeskyOfInverseInPlace } from '../kernels/cholesky.js';
import { upperCholeskyOfInverseInPlaceAsync } from './cholesky-blas.js';
import { subtractProduct } from '../kernels/gemm.js';
import { kthSmallest, setSmallest, smallestInGroup } from '../kernels/select.js';
import { checkContext, countZeros, layerLabel, requireStats } from './common.js';
import { nmNotes, validateSparsityAndPattern } from './patterns.js';
import type { MethodContext, MethodResult, PruningMethod } from './types.js';

/** Column block of the sweep (the reference's default). N:M requires M to divide it. */
export const SPARSEGPT_BLOCKSIZE = 128;
/** Dampening as a fraction of mean(diag H). */
export const SPARSEGPT_PERCDAMP = 0.01;
/** Extra attempts with 10× more damping each when H is not positive definite. */
export const SPARSEGPT_DAMP_RETRIES = 3;

/** Throws unless N:M fits SparseGPT's column blocks (M must divide 128). */
function validateSparseGptPattern(pattern: MethodContext['pattern'], where?: string): void {
  if (pattern.kind === 'nm' && SPARSEGPT_BLOCKSIZE % pattern.m !== 0) {
    throw new DsaPruneError(
      `SparseGPT with ${pattern.n}:${pattern.m}${where ? ` (${where})` : ''}: M = ${pattern.m} does not divide the ` +
        `${SPARSEGPT_BLOCKSIZE}-column block`,
      { hint: 'use an M that divides 128 (2, 4, 8, 16, 32, 64, 128), or Wanda / magnitude for this pattern' },
    );
  }
}

/**
 * Hinv (upper Cholesky factor of H⁻¹, float64 [dIn × dIn]) for a layer, with the damping retry.
 * Exported for tests and for tools that want the same numbers as the method.
 */
export function sparseGptHinv(
  gram: Float64Array,
  nsamples: number,
  dIn: number,
  name?: string,
  /** First damping tried, as a fraction of mean(diag H) (default SPARSEGPT_PERCDAMP; GPTQ may pass its own). */
  percdamp0: number = SPARSEGPT_PERCDAMP,
): HinvResult {
  const run = hinvAttempts(gram, nsamples, dIn, name, percdamp0);
  let step = run.next();
  while (!step.done) step = run.next(upperCholeskyOfInverseInPlace(step.value, dIn));
  return step.value;
}

/**
 * Inputs from which sparseGptHinvAsync uses the onnxruntime-backed kernels (they fall back to TypeScript up to one
 * 128-wide panel anyway). `npx tsx bench/kernels.bench.ts --sizes 256,384,576,640,1536` (2026-12-03, shared 2-core
 * machine, load 13–17) measured the blocked path cheaper in CPU time from 256 on: 1.7 × at 256, 2.1 × at 384,
 * 3.3 × at 576, 3.6 × at 640, 6.7 × at 1536 (an earlier run at load 15–20 had it 0.56 × at 576, with spinning
 * worker threads).
 */
export const SPARSEGPT_BLAS_MIN_DIN = 256;

/**
 * {@link sparseGptHinv} with the Cholesky / inverse products on onnxruntime (src/methods/cholesky-blas.ts, float64
 * like the synchronous kernels) from {@link SPARSEGPT_BLAS_MIN_DIN} inputs; below that, or with `DSA_PRUNE_BLAS=0`,
 * the synchronous TypeScript kernels (same numbers to float64 rounding).
 */
export async function sparseGptHinvAsync(
  gram: Float64Array,
  nsamples: number,
  dIn: number,
  name?: string,
  /** First damping tried, as a fraction of mean(diag H) (default SPARSEGPT_PERCDAMP; GPTQ may pass its own). */
  percdamp0: number = SPARSEGPT_PERCDAMP,
): Promise<HinvResult> {
  return hinvAsyncInto(gram, nsamples, dIn, name, percdamp0);
}

/** {@link sparseGptHinvAsync} computed in `target` (n² entries, overwritten) when given, else in a new array. */
async function hinvAsyncInto(
  gram: Float64Array, nsamples: number, dIn: number, name: string | undefined, percdamp0: number, target?: Float64Array,
): Promise<HinvResult> {
  const run = hinvAttempts(gram, nsamples, dIn, name, percdamp0, target);
  let step = run.next();
  const big = dIn >= SPARSEGPT_BLAS_MIN_DIN;
  while (!step.done) {
    step = run.next(big ? await upperCholeskyOfInverseInPlaceAsync(step.value, dIn) : upperCholeskyOfInverseInPlace(step.value, dIn));
  }
  return step.value;
}

export interface HinvResult {
  hinv: Float64Array;
  dead: Uint8Array;
  deadCount: number;
  percdamp: number;
  attempts: number;
}

/**
 * The damping attempts shared by the sync and async Hinv: yields the dampened H to factor in place (by
 * upperCholeskyOfInverseInPlace or its async twin) and receives the kernel's result (-1 or the failing pivot).
 */
function* hinvAttempts(
  gram: Float64Array,
  nsamples: number,
  dIn: number,
  name: string | undefined,
  percdamp0: number,
  target?: Float64Array,
): Generator<Float64Array, HinvResult, number> {
  const n = dIn;
  const scale = 2 / nsamples;
  const dead = new Uint8Array(n);
  let deadCount = 0;
  for (let j = 0; j < n; j++) {
    if (gram[j * n + j] === 0) {
      dead[j] = 1;
      deadCount++;
    }
  }
  const h = target && target.length === n * n ? target : new Float64Array(n * n);
  let percdamp = percdamp0;
  let fail = -1;
  for (let attempt = 0; attempt <= SPARSEGPT_DAMP_RETRIES; attempt++) {
    for (let i = 0; i < n * n; i++) h[i] = scale * gram[i];
    let trace = 0;
    for (let j = 0; j < n; j++) {
      if (dead[j]) h[j * n + j] = 1;
      trace += h[j * n + j];
    }
    const damp = percdamp * (trace / n);
    for (let j = 0; j < n; j++) h[j * n + j] += damp;
    fail = Number.isFinite(damp) ? yield h : 0;
    if (fail < 0) return { hinv: h, dead, deadCount, percdamp, attempts: attempt + 1 };
    percdamp *= 10;
  }
  throw new DsaPruneError(
    `SparseGPT: the Hessian of ${layerLabel({ name })} is not positive definite (input ${fail}), even with damping ` +
      `${(percdamp / 10).toPrecision(2)} × mean(diag H)`,
    {
      hint:
        'the calibration statistics may contain NaN/inf or too few tokens: check the calibration text, raise ' +
        '--nsamples, or prune this layer with wanda/magnitude',
    },
  );
}

/**
 * One-entry cache of the last Hinv, keyed by the gram array: q/k/v (and gate/up) share one statistics object and
 * are pruned one after another, so their Hinv (n³/3 work) is computed once. The entry lives in a WeakMap (freed
 * with its gram) and is validated by nsamples and a checksum of the gram, so a reused, refilled buffer is never
 * served a stale factor.
 */
interface CacheEntry {
  nsamples: number;
  checksum: number;
  result: HinvResult;
  users: number;
  /**
   * Spare Hinv arrays by length (n²), handed from entry to entry: the array of an evicted entry, reused by the next
   * Hinv of its width. A block alternates widths (q/k/v, o, gate/up at the hidden size, down_proj at the FFN size);
   * with one spare per width no n² float64 array is freed and allocated again per block (SmolLM2: 18 + 2.5 MiB per
   * block). They live as long as the newest entry, i.e. as its gram: nothing outlives the prune.
   */
  spares: Map<number, Float64Array>;
}
const hinvCache = new WeakMap<Float64Array, CacheEntry>();
let lastCached: WeakRef<Float64Array> | undefined;

function gramChecksum(g: Float64Array): number {
  let a = 0, b = 0;
  for (let i = 0; i < g.length; i++) {
    a += g[i];
    b += g[i] * ((i % 1021) + 1);
  }
  return a + 1e-3 * b;
}

/**
 * The cached Hinv of `gram`, or a new one; the caller holds the entry (`users`) until it calls the returned release.
 * A new Hinv is computed in the spare array of its width when there is one (CacheEntry.spares): one n² float64 array
 * per width lives on instead of one per distinct input becoming garbage.
 */
async function cachedHinv(gram: Float64Array, nsamples: number, dIn: number, name?: string): Promise<{ result: HinvResult; release: () => void }> {
  const checksum = gramChecksum(gram);
  const hit = hinvCache.get(gram);
  const hold = (e: CacheEntry) => {
    e.users++;
    return { result: e.result, release: () => { e.users--; } };
  };
  if (hit && hit.nsamples === nsamples && Object.is(hit.checksum, checksum) && hit.result.hinv.length === dIn * dIn) return hold(hit);
  const prevGram = lastCached?.deref();
  const prev = prevGram ? hinvCache.get(prevGram) : undefined;
  let spares = new Map<number, Float64Array>();
  if (prevGram && prev) {
    hinvCache.delete(prevGram);
    spares = prev.spares;
    // its array becomes the spare of its width unless a prune still holds it
    if (prev.users === 0) spares.set(prev.result.hinv.length, prev.result.hinv);
  }
  if (hit) hinvCache.delete(gram);
  lastCached = undefined;
  const target = spares.get(dIn * dIn);
  spares.delete(dIn * dIn);
  const result = await hinvAsyncInto(gram, nsamples, dIn, name, SPARSEGPT_PERCDAMP, target);
  const entry: CacheEntry = { nsamples, checksum, result, users: 0, spares };
  hinvCache.set(gram, entry);
  lastCached = new WeakRef(gram);
  return hold(entry);
}

/**
 * Per-call work buffers of the sweep (err, mask, metric, selection scratch, …), grow-only and reused by the next
 * call when free: a prune of a 1536-row layer needs ≈ 21 bytes × rows × 128 = 4 MiB of them.
 */
class SweepBuffers {
  private f64 = new Float64Array(0);
  private f32a = new Float32Array(0);
  private f32b = new Float32Array(0);
  private f32c = new Float32Array(0);
  private u8 = new Uint8Array(0);
  private i32a = new Int32Array(0);
  private i32b = new Int32Array(0);
  private static grow<T extends { length: number }>(cur: T, n: number, make: (n: number) => T): T {
    return cur.length >= n ? cur : make(n);
  }
  take(rows: number, n: number, bs: number, nmM: number) {
    const rb = rows * bs;
    this.f64 = SweepBuffers.grow(this.f64, rb + bs + 256, (k) => new Float64Array(k));
    this.f32a = SweepBuffers.grow(this.f32a, n, (k) => new Float32Array(k));
    this.f32b = SweepBuffers.grow(this.f32b, rb, (k) => new Float32Array(k));
    this.f32c = SweepBuffers.grow(this.f32c, rb, (k) => new Float32Array(k));
    this.u8 = SweepBuffers.grow(this.u8, rb, (k) => new Uint8Array(k));
    this.i32a = SweepBuffers.grow(this.i32a, rb, (k) => new Int32Array(k));
    this.i32b = SweepBuffers.grow(this.i32b, rows + Math.max(1, nmM), (k) => new Int32Array(k));
    const err = this.f64.subarray(0, rb);
    err.fill(0);
    return {
      err,
      seg: this.f64.subarray(rb, rb + bs),
      acc: this.f64.subarray(rb + bs, rb + bs + 256),
      d2: this.f32a.subarray(0, n),
      tmp: this.f32b.subarray(0, nmM ? nmM : rb),
      scratch: this.f32c.subarray(0, rb),
      mask: this.u8.subarray(0, rb),
      idx: this.i32a.subarray(0, rb),
      cnt: this.i32b.subarray(0, rows),
      picked: this.i32b.subarray(rows, rows + Math.max(1, nmM)),
    };
  }
  bytes(): number {
    return this.f64.byteLength + this.f32a.byteLength + this.f32b.byteLength + this.f32c.byteLength + this.u8.byteLength + this.i32a.byteLength + this.i32b.byteLength;
  }
}
const freeSweepBuffers: SweepBuffers[] = [];

async function pruneSparseGpt(ctx: MethodContext): Promise<MethodResult> {
  checkContext('sparsegpt', ctx);
  validateSparsityAndPattern(ctx.sparsity, ctx.pattern, ctx.name);
  validateSparseGptPattern(ctx.pattern, ctx.name);
  const stats = requireStats('sparsegpt', ctx, true);
  const { weight: W, dOut: rows, dIn: n, sparsity: s, pattern, signal } = ctx;
  signal?.throwIfAborted();
  const nm = pattern.kind === 'nm' ? pattern : undefined;
  if (!nm && s === 0) return { zeros: countZeros(W), notes: [] };

  const notes: string[] = nmNotes(n, pattern);
  const held = await cachedHinv(stats.gram!, stats.nsamples, n, ctx.name);
  const buffers = freeSweepBuffers.pop() ?? new SweepBuffers();
  try {
    await sweep(ctx, held.result, buffers.take(rows, n, SPARSEGPT_BLOCKSIZE, nm ? nm.m : 0), notes);
  } finally {
    held.release();
    freeSweepBuffers.push(buffers);
  }
  return { zeros: countZeros(W), notes };
}

/** The column sweep of {@link pruneSparseGpt} with Hinv `hinv` and work buffers `b`. */
async function sweep(ctx: MethodContext, hinv: HinvResult, b: ReturnType<SweepBuffers['take']>, notes: string[]): Promise<void> {
  const { weight: W, dOut: rows, dIn: n, sparsity: s, pattern, signal } = ctx;
  const nm = pattern.kind === 'nm' ? pattern : undefined;
  const { hinv: U, dead, deadCount, percdamp, attempts } = hinv;
  if (attempts > 1) {
    notes.push(
      `H not positive definite with ${SPARSEGPT_PERCDAMP} damping; used ${percdamp.toPrecision(2)} × mean(diag H) ` +
        `(${attempts - 1} retr${attempts > 2 ? 'ies' : 'y'})`,
    );
  }
  if (deadCount > 0) {
    notes.push(`${deadCount} dead input${deadCount > 1 ? 's' : ''} (H_jj = 0): weight column${deadCount > 1 ? 's' : ''} zeroed`);
    for (let j = 0; j < n; j++) if (dead[j]) for (let r = 0; r < rows; r++) W[r * n + j] = 0;
  }

  const bs = SPARSEGPT_BLOCKSIZE;
  // float32 diag(Hinv)² for the metric w² / d² (the reference computes it in float32)
  const { d2, err, seg, mask, tmp, picked } = b;
  const scratch = nm ? undefined : b.scratch;
  for (let j = 0; j < n; j++) {
    const d = Math.fround(U[j * n + j]);
    d2[j] = Math.fround(d * d);
  }
  const gemmScratch = { acc: b.acc, idx: b.idx, cnt: b.cnt };
  // exact budget: round(s·numel) over the layer, split over the column blocks by cumulative rounding
  let blockCounts: Int32Array | undefined;
  if (!nm && ctx.budget === 'exact') {
    const ends: number[] = [];
    for (let i1 = 0; i1 < n; i1 += bs) ends.push(rows * Math.min(i1 + bs, n));
    blockCounts = splitExactCount(s, ends);
  }

  const useBlas = blasEnabled();
  for (let i1 = 0, blk = 0; i1 < n; i1 += bs, blk++) {
    const i2 = Math.min(i1 + bs, n);
    const count = i2 - i1;
    mask.fill(0);
    if (!nm) {
      // joint mask of the block on w² / diag(Hinv)²
      const numelBlk = rows * count;
      for (let r = 0; r < rows; r++) {
        const wo = r * n + i1;
        const to = r * count;
        for (let c = 0; c < count; c++) {
          const w = W[wo + c];
          tmp[to + c] = Math.fround(Math.fround(w * w) / d2[i1 + c]);
        }
      }
      if (blockCounts) {
        setSmallest(tmp, blockCounts[blk], mask, 1, 0, numelBlk, 0, scratch);
      } else {
        const thr = kthSmallest(tmp, Math.floor(numelBlk * s), 0, numelBlk, scratch);
        for (let t = 0; t < numelBlk; t++) if (tmp[t] <= thr) mask[t] = 1;
      }
    }
    // OBS sweep of the block, row by row: a row's mask (N:M: chosen group by group on its updated weights), errors
    // and updates involve that row only, so sweeping each row's 128 columns in order gives the same operations, in
    // the same order, as sweeping column by column over all rows (bit for bit), with the row's segment in a
    // float64 buffer (every update rounded to float32 as the Float32Array store did) and Hinv's block in cache.
    for (let r = 0; r < rows; r++) {
      const wo = r * n + i1;
      const mo = r * count;
      const eo = r * bs;
      for (let c = 0; c < count; c++) seg[c] = W[wo + c];
      for (let i = 0; i < count; i++) {
        if (nm && i % nm.m === 0) {
          // N:M: choose the group on the row's current (already updated) weights
          const width = Math.min(nm.m, count - i);
          for (let t = 0; t < width; t++) {
            const w = seg[i + t];
            tmp[t] = Math.fround(Math.fround(w * w) / d2[i1 + i + t]);
          }
          const c = smallestInGroup(tmp, 0, width, nm.n, picked);
          for (let t = 0; t < c; t++) mask[mo + i + picked[t]] = 1;
        }
        if (!mask[mo + i]) continue;
        const hr = (i1 + i) * n + i1;
        const e = seg[i] / U[hr + i];
        seg[i] = 0;
        err[eo + i] = e;
        if (e === 0) continue;
        // W[r, col+1:i2] −= e · Hinv[col, col+1:i2]
        let j = i + 1;
        for (; j + 3 < count; j += 4) {
          seg[j] = Math.fround(seg[j] - e * U[hr + j]);
          seg[j + 1] = Math.fround(seg[j + 1] - e * U[hr + j + 1]);
          seg[j + 2] = Math.fround(seg[j + 2] - e * U[hr + j + 2]);
          seg[j + 3] = Math.fround(seg[j + 3] - e * U[hr + j + 3]);
        }
        for (; j < count; j++) seg[j] = Math.fround(seg[j] - e * U[hr + j]);
      }
      for (let c = 0; c < count; c++) W[wo + c] = seg[c];
    }
    if (i2 < n && useBlas && rows * count * (n - i2) >= BLAS_MIN_WORK) {
      // float32 product (as the reference's torch matmul), one rounding into W per block
      await blasSubtractProduct(
        { data: W, offset: i2, ld: n },
        { data: err, offset: 0, ld: bs },
        { data: U, offset: i1 * n + i2, ld: n },
        rows,
        count,
        n - i2,
        { dtype: 'float32' },
      );
    } else if (i2 < n) {
      subtractProduct(
        { data: W, offset: i2, ld: n },
        { data: err, offset: 0, ld: bs },
        { data: U, offset: i1 * n + i2, ld: n },
        rows,
        count,
        n - i2,
        gemmScratch,
      );
    }
    err.fill(0);
    if (signal) {
      signal.throwIfAborted();
      // let an abort (or other work) in between blocks
      await new Promise<void>((resolve) => setImmediate(resolve));
      signal.throwIfAborted();
    }
  }
}

/** SparseGPT (needs the input Gram matrix; updates the kept weights). */
export const sparsegpt: PruningMethod = {
  name: 'sparsegpt',
  needs: { sq: false, gram: true },
  validate: (req) => validateSparseGptPattern(req.pattern),
  prune: pruneSparseGpt,
  // Fast path: a weight update, so nothing to cache but the dense weight; every candidate runs the solver on a copy
  // (Hinv is recomputed per linear: holding one per Gram would cost dIn² × 8 bytes each).
  prepare: (ctx) => {
    requireStats('sparsegpt', ctx, true);
    return {
      apply: async (sparsity, out, signal) => {
        out.set(ctx.weight);
        await pruneSparseGpt({ weight: out, dOut: ctx.dOut, dIn: ctx.dIn, stats: ctx.stats, sparsity, pattern: { kind: 'unstructured' }, budget: ctx.budget, signal, name: ctx.name });
      },
    };
  },
};
