/**
 * Size–quality frontier: prune a model at several sparsities, save every variant a transformers.js user could ship
 * (dense fp32 / q8 / q4; each sparsity × plain q4 / sparse q4 / GPTQ q4 / sparse GPTQ q4; optionally structured FFN
 * variants × q4 — channels really removed, so a smaller dense file), measure each file's bytes and perplexity as
 * transformers.js loads it (on one or more texts; the first decides the front), and mark the Pareto front (no other
 * variant both smaller and better).
 *
 * ```ts
 * import { frontier } from 'dsa-prune';
 * const r = await frontier('models/stories260k', { calibration: ['calib.txt'], ppl: 'eval.txt', sparsities: [0, 0.5] });
 * r.points.filter((p) => p.pareto); r.recommendation.sentence;
 * ```
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DsaPruneError } from './errors.js';
import { loadModelDir, loadModelVariant } from './model/index.js';
import { pruneModel, type PruneOptions } from './prune.js';
import { savePruned } from './save.js';
import { checkQ4BlockSize, sparseQ4Model, writeModelAtomic } from './compress/index.js';
import { readModelFile } from './model/onnx.js';
import { readTextFile, tokenizeText } from './data/text.js';
import { perplexity } from './eval/perplexity.js';
import type { ProgressCallback } from './types.js';
import type { Allocator } from './allocators/types.js';

/**
 * One structured variant of the grid: `--method structured --target ffn` at `sparsity` (fraction of the block linear
 * parameters removed, docs/structured.md), saved as q4. `allocator` may be a function of the model hash (a structured
 * search result applies to its own model only); `label` names it (e.g. `searched`).
 */
export interface FrontierStructuredVariant {
  sparsity: number;
  score?: 'wanda-sp' | 'flap' | 'magnitude';
  allocator?: Allocator | ((modelHash: string) => Allocator);
  label?: string;
}

export interface FrontierOptions {
  /** Calibration text file(s) (Wanda / SparseGPT). */
  calibration?: string[];
  /** Text file(s) for perplexity: the first decides the Pareto front and the recommendation, all are reported (`ppls`). */
  ppl: string | string[];
  /** Sparsities of the grid (0 = dense). Default [0, 0.3, 0.5, 0.7]. */
  sparsities?: number[];
  method?: PruneOptions['method'];
  allocator?: PruneOptions['allocator'];
  nsamples?: number;
  seqlen?: number;
  /** Perplexity window (default min(512, seqlen ?? 512)) and number of windows (default all). */
  pplSeqlen?: number;
  pplWindows?: number;
  /**
   * Structured FFN variants (channels removed, then q4): `dsa-prune frontier --structured 0.2,0.25 [--structured-search
   * @result.json]`. Calibration: the same files, nsamples and seqlen as the unstructured points. Default none.
   */
  structured?: FrontierStructuredVariant[];
  /** Folder for the variants, frontier.json and frontier.html. */
  out: string;
  /**
   * GPTQ q4 points per sparsity (`gptq-q4`, and `sparse-gptq-q4` when its sparse form pays): the pruned model's q4
   * codes from GPTQ error feedback (src/compress/gptq.ts) on the calibration windows pruning used (magnitude: the
   * `calibration` files). Default true when calibration text is given.
   */
  gptq?: boolean;
  /** How q4 files store the embedding table (QuantizeOptions.embedding). Default 'q4' (4-bit, tied to the lm_head). */
  q4Embedding?: 'q4' | 'q8';
  /** q4 block of the lm_head / embedding pair (QuantizeOptions.headBlockSize; default the writer's, q4HeadBlockSize). */
  q4HeadBlock?: number;
  /** "What to ship": the smallest file whose ppl is within this fraction of the dense fp32 ppl. Default 0.05. */
  tolerance?: number;
  threads?: number;
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

export interface FrontierPoint {
  /** e.g. `dense fp32`, `50% q4`, `50% sparse q4`. */
  name: string;
  sparsity: number;
  /** `fp32` | `q8` | `q4` | `sparse-q4` | `gptq-q4` | `sparse-gptq-q4` | `structured-q4` (FFN channels removed, then q4). */
  format: string;
  /** transformers.js dtype that loads it. */
  dtype: string;
  /** Folder (relative to `out`) and file (relative to that folder). */
  dir: string;
  file: string;
  bytes: number;
  ppl: number;
  /** Perplexity on every `ppl` text, in their order (the first is `ppl`). */
  ppls: { file: string; ppl: number }[];
  /** Tokens per second of the first text's perplexity pass (transformers.js forward, batched windows; wall clock, noisy). */
  tokensPerSecond: number;
  loadMs: number;
  pareto: boolean;
  /** Structured variants: the score, allocator and FFN width kept per block. */
  structured?: { target: 'ffn'; score: string; allocator: string; ffnWidths: number[] };
}

export interface FrontierResult {
  model: string;
  method: string;
  allocator: string;
  sparsities: number[];
  perplexity: { file: string; seqlen: number; windows?: number; files: string[] };
  points: FrontierPoint[];
  recommendation: { name: string; sentence: string; tolerance: number };
}

/** Points not dominated by another (bytes ≤ and ppl ≤, one of them strictly). */
export function paretoFront<T extends { bytes: number; ppl: number }>(points: T[]): boolean[] {
  return points.map((p) => !points.some((q) => q !== p && q.bytes <= p.bytes && q.ppl <= p.ppl && (q.bytes < p.bytes || q.ppl < p.ppl)));
}

const MB = (b: number): string => `${(b / 1e6).toFixed(2)} MB`;
/** 0.5 → `50%`, 0.454 → `45.4%`. */
const pct = (s: number): string => `${+(s * 100).toFixed(1)}%`;

/** The smallest variant within `tolerance` of the dense fp32 perplexity, as one sentence. */
export function recommend(points: FrontierPoint[], tolerance: number): FrontierResult['recommendation'] {
  const base = points.find((p) => p.sparsity === 0 && p.format === 'fp32') ?? points.reduce((a, b) => (a.ppl <= b.ppl ? a : b));
  const ok = points.filter((p) => p.ppl <= base.ppl * (1 + tolerance));
  const pick = ok.reduce((a, b) => (b.bytes < a.bytes || (b.bytes === a.bytes && b.ppl < a.ppl) ? b : a));
  const rel = (pick.ppl / base.ppl - 1) * 100;
  // The best pruned file that is smaller than the pick, to say what pruning would cost.
  const smallerPruned = points.filter((p) => p.sparsity > 0 && p.bytes < pick.bytes).sort((a, b) => a.ppl - b.ppl)[0];
  let why: string;
  if (pick.sparsity === 0) {
    why = smallerPruned
      ? `pruning does not pay for this model, even the best smaller pruned file (${smallerPruned.name}, ${MB(smallerPruned.bytes)}) has ppl ${smallerPruned.ppl.toFixed(2)}, more than ${Math.round(tolerance * 100)} % worse`
      : 'no variant is smaller at that quality';
  } else why = `the smallest file within ${Math.round(tolerance * 100)} % of the dense fp32 perplexity`;
  return {
    name: pick.name,
    tolerance,
    sentence: `Ship ${pick.name} (${MB(pick.bytes)}, ppl ${pick.ppl.toFixed(2)}, ${rel >= 0 ? '+' : ''}${rel.toFixed(1)} % vs dense fp32 ${base.ppl.toFixed(2)}): ${why}.`,
  };
}

const FORMAT_NAME: Record<string, string> = { 'sparse-q4': 'sparse q4', 'gptq-q4': 'GPTQ q4', 'sparse-gptq-q4': 'sparse GPTQ q4', 'structured-q4': 'q4' };

function atomicWrite(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/** Copy a model folder's non-ONNX files (config, tokenizer, pruning.json) and only `onnx/<file>`. */
function variantFolder(src: string, dst: string): void {
  rmSync(dst, { recursive: true, force: true });
  mkdirSync(path.join(dst, 'onnx'), { recursive: true });
  for (const f of readdirSync(src)) if (statSync(path.join(src, f)).isFile()) copyFileSync(path.join(src, f), path.join(dst, f));
}

/** Build and measure the grid. Writes `<out>/variants/…`, `<out>/frontier.json`; the HTML page is the caller's. */
export async function frontier(modelDir: string, opts: FrontierOptions): Promise<FrontierResult> {
  const sparsities = [...new Set(opts.sparsities ?? [0, 0.3, 0.5, 0.7])].sort((a, b) => a - b);
  for (const s of sparsities) {
    if (!(s >= 0 && s < 1)) throw new DsaPruneError(`sparsity ${s} is outside [0, 1)`, { hint: 'Pass --sparsities like 0,0.3,0.5,0.7.' });
  }
  const method = opts.method ?? 'wanda';
  const methodName = typeof method === 'string' ? method : method.name;
  if (methodName !== 'magnitude' && sparsities.some((s) => s > 0) && !opts.calibration?.length) {
    throw new DsaPruneError(`${methodName} needs calibration text`, { hint: 'Pass --calibration <file> (or --method magnitude).' });
  }
  const pplFiles = Array.isArray(opts.ppl) ? opts.ppl : [opts.ppl];
  if (!pplFiles.length) throw new DsaPruneError('frontier needs a perplexity text', { hint: 'Pass --ppl <file>.' });
  for (const f of pplFiles) if (!existsSync(f)) throw new DsaPruneError(`perplexity text ${f} does not exist`, { hint: 'Pass --ppl <file>.' });
  const structured = opts.structured ?? [];
  for (const v of structured) {
    if (!(v.sparsity > 0 && v.sparsity < 1)) throw new DsaPruneError(`structured sparsity ${v.sparsity} is outside (0, 1)`, { code: 'invalid-input', hint: 'Pass --structured like 0.2,0.25,0.3.' });
    if ((v.score ?? 'wanda-sp') !== 'magnitude' && !opts.calibration?.length) {
      throw new DsaPruneError(`structured ${v.score ?? 'wanda-sp'} needs calibration text`, { code: 'invalid-input', hint: 'Pass --calibration <file> (or --structured-score magnitude).' });
    }
  }
  const tags = structured.map((v) => `ffn${+(v.sparsity * 100).toFixed(1)}${v.label ? `-${v.label}` : ''}`);
  if (new Set(tags).size !== tags.length) throw new DsaPruneError(`structured variants repeat (${tags.join(', ')})`, { code: 'invalid-input', hint: 'Give each structured sparsity once (a searched variant gets its own label).' });
  if (path.resolve(opts.out) === path.resolve(modelDir)) {
    throw new DsaPruneError(`--out ${opts.out} is the model folder itself`, { hint: 'Choose a new folder for the frontier.' });
  }
  const gptq = (opts.gptq ?? !!opts.calibration?.length) && sparsities.some((s) => s > 0);
  if (gptq && !opts.calibration?.length) {
    throw new DsaPruneError('GPTQ points need calibration text', { hint: 'Pass --calibration <file>, or --no-gptq to leave the GPTQ q4 points out.' });
  }
  if (opts.q4HeadBlock !== undefined) checkQ4BlockSize(opts.q4HeadBlock, 'q4 lm_head / embedding block size (--q4-head-block)');
  const quantizeOptions = { embedding: opts.q4Embedding ?? 'q4', ...(opts.q4HeadBlock !== undefined ? { headBlockSize: opts.q4HeadBlock } : {}) } as const;
  const texts = await Promise.all(pplFiles.map((f) => readTextFile(f)));
  const pplSeqlen = opts.pplSeqlen ?? Math.min(512, opts.seqlen ?? 512);
  const variantsDir = path.join(opts.out, 'variants');
  mkdirSync(variantsDir, { recursive: true });
  const total = sparsities.length + structured.length;
  const report = (i: number, phase: string, f = 0): void => opts.onProgress?.({ phase: `frontier ${phase}`, fraction: Math.min(1, (i + f) / total) });

  // Save every variant folder first.
  const saved: { sparsity: number; dir: string; formats: { format: string; dtype: string; dir: string }[]; name?: string; structured?: FrontierPoint['structured'] }[] = [];
  for (let i = 0; i < sparsities.length; i++) {
    const s = sparsities[i];
    const tag = s === 0 ? 'dense' : `s${+(s * 100).toFixed(1)}`;
    report(i, `${tag}: prune + save`);
    const { model } = await loadModelDir(modelDir, { threads: opts.threads });
    try {
      if (s > 0) {
        await pruneModel(model, {
          method, sparsity: s, allocator: opts.allocator,
          calibration: opts.calibration?.length ? { files: opts.calibration } : undefined,
          nsamples: opts.nsamples, seqlen: opts.seqlen, threads: opts.threads, signal: opts.signal,
          onProgress: (p) => report(i, `${tag}: ${p.phase}`, 0.7 * p.fraction),
        });
      }
      const dir = path.join(variantsDir, tag);
      await savePruned(model, dir, { overwrite: true, quantize: s === 0 ? ['q8', 'q4'] : ['q4'], quantizeOptions });
      const formats = [...(s === 0 ? [{ format: 'fp32', dtype: 'fp32', dir }, { format: 'q8', dtype: 'q8', dir }] : []), { format: 'q4', dtype: 'q4', dir }];
      /** The sparse q4 form of `from`'s model_q4.onnx in `${from}-sparse`, when it pays. */
      const sparseOf = (from: string, format: string): void => {
        const sdir = `${from}-sparse`;
        variantFolder(from, sdir);
        const { model: sq, report: r } = sparseQ4Model(readModelFile(path.join(from, 'onnx/model_q4.onnx')));
        writeModelAtomic(sq, path.join(sdir, 'onnx/model_q4.onnx'));
        if (r.weights.length) formats.push({ format, dtype: 'q4', dir: sdir });
        else rmSync(sdir, { recursive: true, force: true });
      };
      if (s > 0) {
        sparseOf(dir, 'sparse-q4');
        if (gptq) {
          // GPTQ codes of the same pruned model: the windows pruning used (or the calibration files for magnitude).
          const gdir = `${dir}-gptq`;
          report(i, `${tag}: GPTQ`, 0.7);
          await savePruned(model, gdir, {
            overwrite: true, quantize: ['q4'], quantizeOptions,
            gptq: { threads: opts.threads, signal: opts.signal, onProgress: (p) => report(i, `${tag}: GPTQ ${p.phase}`, 0.7) },
            ...(methodName === 'magnitude' ? { calibration: { files: opts.calibration! }, nsamples: opts.nsamples, seqlen: opts.seqlen } : {}),
          });
          // The grid ships the q4 files; the folder's fp32 copy of the pruned model is the RTN folder's.
          for (const f of readdirSync(path.join(gdir, 'onnx'))) if (!f.startsWith('model_q4')) rmSync(path.join(gdir, 'onnx', f), { force: true });
          formats.push({ format: 'gptq-q4', dtype: 'q4', dir: gdir });
          sparseOf(gdir, 'sparse-gptq-q4');
        }
      }
      saved.push({ sparsity: s, dir, formats });
    } finally {
      await model.dispose?.();
    }
  }
  // Structured variants: FFN channels removed (a smaller dense model), saved as q4.
  for (let k = 0; k < structured.length; k++) {
    const v = structured[k]!;
    const i = sparsities.length + k;
    const tag = tags[k]!;
    const score = v.score ?? 'wanda-sp';
    report(i, `${tag}: structured prune + save`);
    const { model, prunable } = await loadModelDir(modelDir, { threads: opts.threads });
    try {
      const allocator = typeof v.allocator === 'function' ? v.allocator(prunable.modelHash()) : v.allocator;
      const r = await pruneModel(model, {
        method: 'structured', target: ['ffn'], score, sparsity: v.sparsity, allocator,
        calibration: opts.calibration?.length ? { files: opts.calibration } : undefined,
        nsamples: opts.nsamples, seqlen: opts.seqlen, threads: opts.threads, signal: opts.signal, source: modelDir,
        onProgress: (p) => report(i, `${tag}: ${p.phase}`, 0.7 * p.fraction),
      });
      const dir = path.join(variantsDir, tag);
      await savePruned(model, dir, { overwrite: true, quantize: ['q4'], quantizeOptions });
      saved.push({
        sparsity: v.sparsity, dir, formats: [{ format: 'structured-q4', dtype: 'q4', dir }],
        name: `ffn ${pct(v.sparsity)}${v.label ? ` ${v.label}` : ''} q4`,
        structured: { target: 'ffn', score, allocator: allocator?.name ?? 'uniform', ffnWidths: r.structured!.blocks.map((b) => b.ffnAfter) },
      });
    } finally {
      await model.dispose?.();
    }
  }
  // Measure each file as transformers.js loads it.
  const points: FrontierPoint[] = [];
  let ids: ReturnType<typeof tokenizeText>[] | undefined; // every variant shares the source model's tokenizer
  for (let i = 0; i < saved.length; i++) {
    const v = saved[i];
    for (let j = 0; j < v.formats.length; j++) {
      const f = v.formats[j];
      const name = v.name ?? `${v.sparsity === 0 ? 'dense' : pct(v.sparsity)} ${FORMAT_NAME[f.format] ?? f.format}`;
      report(i, `${name}: perplexity`, 0.7 + (0.3 * j) / v.formats.length);
      const t0 = performance.now();
      const m = await loadModelVariant(f.dir, { dtype: f.dtype, threads: opts.threads });
      const loadMs = performance.now() - t0;
      try {
        ids ??= texts.map((t) => tokenizeText(m.tokenizer, t));
        const rs = [];
        for (const t of ids) rs.push(await perplexity(m.model, t, { seqlen: pplSeqlen, limitWindows: opts.pplWindows, signal: opts.signal }));
        points.push({
          name, sparsity: v.sparsity, format: f.format, dtype: f.dtype, dir: path.relative(opts.out, f.dir), file: m.file, bytes: m.bytes,
          ppl: rs[0]!.ppl, ppls: rs.map((r, k) => ({ file: pplFiles[k]!, ppl: r.ppl })), tokensPerSecond: rs[0]!.tokensPerSecond, loadMs, pareto: false,
          ...(v.structured ? { structured: v.structured } : {}),
        });
      } finally {
        await m.model.dispose?.();
      }
    }
  }
  // The pruned folders keep their fp32 model.onnx (the source of their q4 files); the grid ships pruned models as
  // q4 / sparse q4 only.
  const front = paretoFront(points);
  points.forEach((p, k) => (p.pareto = front[k]));
  const result: FrontierResult = {
    model: modelDir,
    method: methodName,
    allocator: opts.allocator === undefined ? 'uniform' : (opts.allocator as { name?: string }).name ?? 'custom',
    sparsities,
    perplexity: { file: pplFiles[0]!, seqlen: pplSeqlen, ...(opts.pplWindows ? { windows: opts.pplWindows } : {}), files: pplFiles },
    points,
    recommendation: recommend(points, opts.tolerance ?? 0.05),
  };
  atomicWrite(path.join(opts.out, 'frontier.json'), JSON.stringify(result, null, 2) + '\n');
  opts.onProgress?.({ phase: 'frontier', fraction: 1 });
  return result;
}
