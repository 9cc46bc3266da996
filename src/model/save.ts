/**
 * savePruned: write the (pruned) model as a folder `from_pretrained` loads again — the source folder's top-level files
 * (config, generation config, tokenizer, license), onnx/<base><suffix>.onnx (+ .onnx_data when the model had external
 * data or is over 2 GB) and pruning.json. Atomic: written into a temporary sibling folder, then renamed.
 */
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DsaPruneError, EXIT } from '../errors.js';
import { countZeros } from '../kernels/dense.js';
import { hasExternalData, initializerBytes, PROTOBUF_LIMIT, writeWithExternalData } from './external.js';
import { encodeModel } from './onnx.js';
import { modelCard } from './card.js';
import { writeFloatVariants } from './variants.js';
import { attachModel } from './prunable.js';

export interface SaveOptions {
  /** Extra fields of pruning.json (method, sparsity, allocator, calibration hash, …). */
  manifest?: Record<string, unknown>;
  /** Replace an existing non-empty outDir (default: refuse). */
  overwrite?: boolean;
  /** Force (true) or forbid (false) external data; default: when the source had it or the graph is over 2 GB. */
  externalData?: boolean;
  /**
   * Internal (src/save.ts): runs on the complete temporary folder before it is renamed to outDir — quantized variants
   * and compression are written there, so a failure (a full disk) leaves nothing behind either.
   */
  beforePublish?: (dir: string) => void;
  /** Also rebuild the source folder's other float variants (model_fp16.onnx next to model.onnx, …); default true. */
  variants?: boolean;
  /** Fields that replace the source's in config.json (structured head pruning: the head counts and head_dim). */
  config?: Record<string, unknown>;
}

let cachedVersion: string | undefined;
/** This package's version (from its package.json, found upward from this module). */
export function packageVersion(): string {
  if (cachedVersion) return cachedVersion;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const f = path.join(dir, 'package.json');
    if (existsSync(f)) {
      try {
        const pkg = JSON.parse(readFileSync(f, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'dsa-prune' && pkg.version) return (cachedVersion = pkg.version);
      } catch {
        // keep looking upward
      }
    }
    dir = path.dirname(dir);
  }
  return (cachedVersion = '0.0.0');
}

/** realpath of `p`, or of its nearest existing ancestor joined with the rest. */
function realpathNearest(p: string): string {
  let cur = path.resolve(p);
  const rest: string[] = [];
  while (!existsSync(cur)) {
    const parent = path.dirname(cur);
    if (parent === cur) break;
    rest.unshift(path.basename(cur));
    cur = parent;
  }
  return path.join(realpathSync(cur), ...rest);
}

function inside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Refuse output folders that would touch the source or lose data; returns the absolute outDir. */
export function checkOutDir(sourceDir: string, outDir: string, overwrite: boolean): string {
  const out = path.resolve(outDir);
  const outReal = realpathNearest(out);
  if (sourceDir) {
    const src = realpathSync(sourceDir);
    if (inside(outReal, src)) {
      throw new DsaPruneError(`refusing to save into ${out}: it is ${outReal === src ? 'the folder' : 'inside the folder'} the model was loaded from (${src})`, { code: 'refused',
        hint: 'Choose an output folder outside the source model folder; the source is never modified.',
      });
    }
    if (inside(src, outReal)) {
      throw new DsaPruneError(`refusing to save into ${out}: the source model folder ${src} is inside it`, { code: 'refused',
        hint: 'Choose an output folder that does not contain the source model.',
      });
    }
  }
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) {
      throw new DsaPruneError(`output ${out} exists and is a file`, { code: 'refused', hint: 'Choose a folder path for the pruned model.' });
    }
    if (readdirSync(out).length > 0 && !overwrite) {
      throw new DsaPruneError(`output folder ${out} exists and is not empty`, { code: 'refused',
        hint: 'Choose a new folder, or pass overwrite (CLI: --overwrite) to replace it.',
      });
    }
  }
  return out;
}

/**
 * Save the model as a folder from_pretrained loads again, with pruning.json
 * `{ tool: 'dsa-prune', version, ...manifest, linears: [{ name, block, role, sparsity }] }`.
 */
export async function savePruned(model: any, outDir: string, opts: SaveOptions = {}): Promise<void> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const pm = await attachModel(model);
  const src = pm.source;
  if (!src.dir || !src.onnxPath) {
    throw new DsaPruneError('the model was created from bytes, so there is no source folder to copy config and tokenizer from', {
      hint: 'Load the model from a folder (from_pretrained(dir)), or attach it with { source: dir }.',
    });
  }
  const sourceId = await hubIdOf(src.dir); // before the checks: no await between checking outDir and publishing it
  const out = checkOutDir(src.dir, outDir, opts.overwrite ?? false);
  const parent = path.dirname(out);
  mkdirSync(parent, { recursive: true });
  const tmp = mkdtempSync(path.join(parent, `.${path.basename(out)}.tmp-`));
  chmodSync(tmp, 0o755);
  try {
    // Top-level files of the source folder: config, generation config, tokenizer, license, …
    const sourceHadExternal = pm.proto.graph.initializer.some((t) => (t.external_data?.length ?? 0) > 0) || srcHasDataFiles(src.onnxPath);
    const external = opts.externalData ?? (sourceHadExternal || hasExternalData(pm.proto) || initializerBytes(pm.proto) >= PROTOBUF_LIMIT);
    for (const f of readdirSync(src.dir)) {
      if (f === 'pruning.json') continue;
      const from = path.join(src.dir, f);
      if (!statSync(from).isFile()) continue;
      if (f === 'config.json') {
        writeFileSync(path.join(tmp, f), configFor(patchConfig(readFileSync(from, 'utf8'), opts.config), external));
      } else {
        copyFileSync(from, path.join(tmp, f));
        chmodSync(path.join(tmp, f), 0o644); // a read-only source (shared, cache) must not make the copy read-only
      }
    }
    const onnxDir = path.join(tmp, 'onnx');
    mkdirSync(onnxDir);
    const fileName = `${src.fileBase ?? 'model'}${src.dtypeSuffix}.onnx`;
    const baseDir = path.dirname(src.onnxPath);
    if (external) {
      writeWithExternalData(pm.proto, baseDir, path.join(onnxDir, fileName), path.join(onnxDir, `${fileName}_data`), `${fileName}_data`);
    } else {
      writeFileSync(path.join(onnxDir, fileName), encodeModel(pm.proto));
    }
    // The source's other float variants (model_fp16.onnx next to model.onnx, …) with the same pruned weights.
    const variants = opts.variants === false ? undefined : writeFloatVariants(pm, onnxDir);
    if (variants?.written.length && existsSync(path.join(tmp, 'config.json'))) {
      writeFileSync(path.join(tmp, 'config.json'), configPerFile(readFileSync(path.join(tmp, 'config.json'), 'utf8'), readdirSync(onnxDir)));
    }
    const manifest = {
      tool: 'dsa-prune',
      version: packageVersion(),
      source: { dir: src.dir, onnx: path.relative(src.dir, src.onnxPath), sha256: pm.modelHash() },
      ...opts.manifest,
      ...(variants && (variants.written.length || variants.skipped.length) ? { variants } : {}),
      linears: pm.linears.map((l) => {
        const w = pm.readInitializer(l.weight);
        return { name: l.name, block: l.block, role: l.role, sparsity: w.length ? countZeros(w) / w.length : 0 };
      }),
    };
    writeFileSync(path.join(tmp, 'pruning.json'), JSON.stringify(manifest, null, 2) + '\n');
    opts.beforePublish?.(tmp);
    // The model card replaces the source's README.md (whose license and base model it carries over).
    writeFileSync(path.join(tmp, 'README.md'), modelCard({
      name: path.basename(out), sourceDir: src.dir, sourceId, config: pm.config as Record<string, unknown>,
      files: readdirSync(onnxDir).sort(), manifest, version: packageVersion(),
    }));
    publish(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw saveError(e, out);
  }
}

/** The error of a failed save: a full disk or another file-system error (exit code EXIT.io), or `e` itself. */
function saveError(e: unknown, out: string): unknown {
  // A file-system error, thrown directly or wrapped by a writer (writeModelAtomic) as its cause (a DsaPruneError has a
  // `code` too, dsa-prune's own: not an errno).
  const errno = [e, (e as { cause?: unknown } | undefined)?.cause].find(
    (x): x is NodeJS.ErrnoException => !(x instanceof DsaPruneError) && typeof (x as NodeJS.ErrnoException | undefined)?.code === 'string',
  );
  if (errno?.code === 'ENOSPC' || errno?.code === 'EDQUOT') {
    return new DsaPruneError(`the disk filled up while saving to ${out}; nothing was written`, {
      hint: `Free disk space (the model needs about as much as the source folder, more with --quantize) or save to another disk.`,
      exitCode: EXIT.io,
      cause: errno,
    });
  }
  if (e instanceof DsaPruneError) return e;
  if (errno) return new DsaPruneError(`saving to ${out} failed: ${errno.message}; nothing was written`, { exitCode: EXIT.io, cause: errno });
  return new DsaPruneError(`saving to ${out} failed: ${(e as Error)?.message ?? String(e)}; nothing was written`, { cause: e });
}

/** True when the folder of the ONNX file holds external data files for it. */
function srcHasDataFiles(onnxPath: string): boolean {
  const name = path.basename(onnxPath);
  return readdirSync(path.dirname(onnxPath)).some((f) => f.startsWith(`${name}_data`));
}

/** config.json with `patch`'s fields replaced (the text unchanged when there is no patch). */
function patchConfig(text: string, patch: Record<string, unknown> | undefined): string {
  if (!patch || Object.keys(patch).length === 0) return text;
  return JSON.stringify({ ...(JSON.parse(text) as Record<string, unknown>), ...patch }, null, 2) + '\n';
}

/** config.json for the saved folder: transformers.js must expect exactly one external data file, or none. */
function configFor(text: string, external: boolean): string {
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return text;
  }
  const tjs = cfg['transformers.js_config'] as Record<string, unknown> | undefined;
  if (!tjs || !('use_external_data_format' in tjs)) return text;
  const next = { ...tjs };
  if (external) next.use_external_data_format = true;
  else delete next.use_external_data_format;
  return JSON.stringify({ ...cfg, 'transformers.js_config': next }, null, 2) + '\n';
}

/** config.json naming, per ONNX file, whether it has external data (several variants: some do, some do not). */
function configPerFile(text: string, files: string[]): string {
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return text;
  }
  const ext: Record<string, number> = {};
  for (const f of files) if (f.endsWith('.onnx') && files.includes(`${f}_data`)) ext[f] = 1;
  const tjs = { ...((cfg['transformers.js_config'] as Record<string, unknown> | undefined) ?? {}) };
  if (Object.keys(ext).length) tjs.use_external_data_format = ext;
  else delete tjs.use_external_data_format;
  return JSON.stringify({ ...cfg, 'transformers.js_config': tjs }, null, 2) + '\n';
}

/** Move the finished temp folder to `out` (replacing an empty or, when allowed, existing folder). */
function publish(tmp: string, out: string): void {
  let old: string | undefined;
  if (existsSync(out)) {
    old = `${tmp}-old`;
    renameSync(out, old);
  }
  try {
    renameSync(tmp, out);
  } catch (e) {
    if (old) renameSync(old, out);
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      throw new DsaPruneError(`output folder ${out} was created by someone else while saving`, { code: 'refused',
        hint: 'Another process saved to the same folder; choose a different output folder.',
        cause: e,
      });
    }
    throw e;
  }
  if (old) rmSync(old, { recursive: true, force: true });
}

/** The hub id (org/name) of a model folder inside transformers.js's download cache, else undefined. */
async function hubIdOf(dir: string): Promise<string | undefined> {
  const { env } = await import('@huggingface/transformers');
  if (typeof env.cacheDir !== 'string' || !env.cacheDir) return undefined;
  const rel = path.relative(path.resolve(env.cacheDir), dir);
  return /^[\w.-]+\/[\w.-]+$/.test(rel.split(path.sep).join('/')) && !rel.startsWith('..') ? rel.split(path.sep).join('/') : undefined;
}
