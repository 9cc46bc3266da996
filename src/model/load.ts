/**
 * The CLI's model loader: validate a model folder (one clear DsaPruneError per problem), then load it with
 * transformers.js (local files only, never a download) after the loading hook is installed.
 */
import fs, { existsSync, readdirSync, readFileSync, statSync, type ReadStream } from 'node:fs';
import path from 'node:path';
import { DsaPruneError } from '../errors.js';
import { installLoadingHook, splitOnnxName } from './hook.js';
import { densifyModel } from './densify.js';
import { externalInfo, isExternal, readModelFile, type ModelProto } from './onnx.js';
import { attachModel, rememberDecoded, type PrunableModel } from './prunable.js';
import { dtypeToSuffix, SUFFIX_DTYPE } from './dtypes.js';

/** A validated model folder: where its config and the ONNX file to load are. */
export interface ModelFolder {
  dir: string;
  config: Record<string, unknown>;
  /** The ONNX file that will be loaded (`<dir>/onnx/model.onnx`, `model_fp16.onnx`, …). */
  onnxPath: string;
  /** transformers.js dtype matching the file's suffix (`fp32`, `fp16`, `q8`, …). */
  dtype: string;
}

const CAUSAL_ARCH = /(ForCausalLM|LMHeadModel|ForCausalLMWithValueHead)$/;

/**
 * Run `load` (a transformers.js from_pretrained) and then stop the file reads its FileResponses left running.
 * transformers.js (4.3.2, src/utils/hub/FileResponse.js) opens `fs.createReadStream(file)` for every local file it
 * serves (the model folder, or the hub cache) and pipes it into the response's `body` without backpressure; in Node
 * it never reads that body (onnxruntime loads the ONNX and external-data files from disk), so the stream reads the
 * whole file into a queue of 64 KiB chunks that stays alive until the read ends — the full `model.onnx_data` (621 MiB
 * at SmolLM2-135M) fed in the background whenever the event loop turns, i.e. during the prune that follows. That was
 * most of SparseGPT's peak over Wanda's (its solver awaits onnxruntime thousands of times: more turns, more of the
 * file queued; docs/scale.md). The streams FileResponse creates while `load` runs (recognised by the caller in their
 * stack) are destroyed when it returns: their bodies have no reader by then, and the queued chunks become garbage.
 */
export async function closingFileResponseStreams<T>(load: () => Promise<T>): Promise<T> {
  const created: ReadStream[] = [];
  const original = fs.createReadStream;
  const wrapped = function (this: unknown, ...args: Parameters<typeof fs.createReadStream>): ReadStream {
    const stream = original.apply(this, args);
    if (/\bnew _?FileResponse\b/.test(new Error().stack ?? '')) created.push(stream);
    return stream;
  } as typeof fs.createReadStream;
  fs.createReadStream = wrapped;
  try {
    return await load();
  } finally {
    if (fs.createReadStream === wrapped) fs.createReadStream = original;
    for (const s of created) if (!s.destroyed) s.destroy();
  }
}

async function transformers(): Promise<typeof import('@huggingface/transformers')> {
  installLoadingHook();
  return import('@huggingface/transformers');
}

/** Find the folder of `dirOrId`: a path, or a model id present in transformers.js's local model path or cache. */
async function resolveFolder(dirOrId: string): Promise<string> {
  const abs = path.resolve(dirOrId);
  if (existsSync(abs)) {
    if (!statSync(abs).isDirectory()) {
      throw new DsaPruneError(`${abs} is a file, not a model folder`, { code: 'invalid-input',
        hint: 'Pass the folder that holds config.json and onnx/model.onnx.',
      });
    }
    return abs;
  }
  if (/^[\w.-]+\/[\w.-]+$/.test(dirOrId)) {
    const { env } = await transformers();
    for (const root of [env.localModelPath, env.cacheDir]) {
      if (typeof root !== 'string' || !root) continue;
      const cand = path.resolve(root, dirOrId);
      if (existsSync(path.join(cand, 'config.json'))) return cand;
    }
  }
  throw new DsaPruneError(`model folder ${abs} does not exist`, { code: 'not-found',
    hint: /^[\w.-]+\/[\w.-]+$/.test(dirOrId)
      ? `To load ${dirOrId} from the hub (env.remoteHost), allow remote models: --allow-remote (API: { allowRemote: true }) or DSA_PRUNE_ALLOW_REMOTE=1.`
      : 'Pass a local folder with config.json and onnx/model.onnx (or a model id already in the transformers.js cache).',
  });
}

/** True when remote models may be downloaded: the option, else the DSA_PRUNE_ALLOW_REMOTE environment variable. */
export function remoteAllowed(opt?: boolean): boolean {
  if (opt !== undefined) return opt;
  const e = process.env.DSA_PRUNE_ALLOW_REMOTE;
  return e !== undefined && e !== '' && e !== '0' && e.toLowerCase() !== 'false';
}

/**
 * Load `id` (org/name) from the hub transformers.js points at (env.remoteHost + env.remotePathTemplate): it downloads
 * into its file cache (env.cacheDir) and the session is created from the cached path, so the model has a source folder
 * like a local one. One clear error per failure: no such repository, no onnx/ file for the dtype, host unreachable.
 */
async function loadFromHub(
  id: string,
  dtype: string,
  sessionOptions: Record<string, unknown>,
): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const tf = await transformers();
  tf.env.allowRemoteModels = true;
  const host = `${String(tf.env.remoteHost)}${String(tf.env.remotePathTemplate).replaceAll('{model}', id).replaceAll('{revision}', 'main')}`;
  const suffix = dtypeToSuffix(dtype) ?? '';
  const fail = (e: unknown): never => {
    const msg = (e as Error)?.message ?? String(e);
    if (/config\.json/.test(msg) && /(404|not found|could not locate)/i.test(msg)) {
      throw new DsaPruneError(`model ${id} was not found on ${String(tf.env.remoteHost)} (no ${host}config.json)`, {
        hint: 'Check the repository id (org/name) and env.remoteHost / env.remotePathTemplate.', cause: e,
      });
    }
    if (/\.onnx/.test(msg) && /(404|not found|could not locate)/i.test(msg)) {
      throw new DsaPruneError(`model ${id} on ${String(tf.env.remoteHost)} has no onnx/model${suffix}.onnx (dtype ${dtype})`, {
        hint: 'The repository must hold a transformers.js export: onnx/model.onnx (fp32) or onnx/model_fp16.onnx (--dtype fp16).', cause: e,
      });
    }
    if (/fetch failed|ECONNREFUSED|ENOTFOUND|EAI_AGAIN/i.test(msg)) {
      throw new DsaPruneError(`cannot reach ${String(tf.env.remoteHost)} to download ${id}: ${msg}`, { hint: 'Check the network, or download the model folder and pass its path.', cause: e });
    }
    throw new DsaPruneError(`transformers.js could not load ${id} from ${String(tf.env.remoteHost)}: ${msg}`, { cause: e });
  };
  let config: Record<string, unknown>;
  try {
    config = (await tf.AutoConfig.from_pretrained(id)) as unknown as Record<string, unknown>;
  } catch (e) {
    return fail(e);
  }
  const archs = Array.isArray(config.architectures) ? (config.architectures as unknown[]).map(String) : [];
  if (archs.length > 0 && !archs.some((a) => CAUSAL_ARCH.test(a))) {
    throw new DsaPruneError(`${id} is not a causal language model (architectures: ${archs.join(', ')})`, {
      hint: 'dsa-prune prunes decoder-only text generators (…ForCausalLM), e.g. Llama, Qwen2, Phi-3, GPT-2, OPT.',
    });
  }
  // Check the ONNX file is there before from_pretrained: its parallel downloads reject more than once on a 404.
  const onnxFile = `onnx/model${suffix}.onnx`;
  const cached = typeof tf.env.cacheDir === 'string' && existsSync(path.join(tf.env.cacheDir, id, onnxFile));
  if (!cached) {
    let status: number;
    try {
      status = (await fetch(`${host}${onnxFile}`, { method: 'HEAD' })).status;
    } catch (e) {
      return fail(e);
    }
    if (status === 404) fail(new Error(`${onnxFile} not found (404)`));
  }
  try {
    return await closingFileResponseStreams(() => tf.AutoModelForCausalLM.from_pretrained(id, {
      dtype: dtype as never,
      ...(Object.keys(sessionOptions).length ? { session_options: sessionOptions } : {}),
    }));
  } catch (e) {
    return fail(e);
  }
}

/**
 * Validate a model folder without loading it: config.json present and a causal LM, an ONNX file present for `dtype`
 * (default: fp32 if present, else fp16, else the first one).
 */
export async function validateModelFolder(dirOrId: string, opts: { dtype?: string } = {}): Promise<ModelFolder> {
  const dir = await resolveFolder(dirOrId);
  const cfgFile = path.join(dir, 'config.json');
  if (!existsSync(cfgFile)) {
    throw new DsaPruneError(`${dir} has no config.json, so it is not a transformers.js model folder`, { code: 'invalid-model',
      hint: 'A model folder holds config.json, tokenizer files and onnx/model.onnx (as exported by optimum / transformers.js).',
    });
  }
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
    if (!config || typeof config !== 'object' || Array.isArray(config)) throw new Error('not a JSON object');
  } catch (e) {
    throw new DsaPruneError(`${cfgFile} is not valid JSON (${(e as Error).message})`, { code: 'invalid-model', hint: 'Fix or restore config.json.' });
  }
  const archs = Array.isArray(config.architectures) ? (config.architectures as unknown[]).map(String) : [];
  if (archs.length > 0 && !archs.some((a) => CAUSAL_ARCH.test(a))) {
    throw new DsaPruneError(`${dir} is not a causal language model (architectures: ${archs.join(', ')})`, { code: 'invalid-model',
      hint: 'dsa-prune prunes decoder-only text generators (…ForCausalLM), e.g. Llama, Qwen2, Phi-3, GPT-2, OPT.',
    });
  }
  if (typeof config.model_type !== 'string') {
    throw new DsaPruneError(`${cfgFile} has no model_type`, { code: 'invalid-model', hint: 'config.json must name the architecture (model_type: "llama", …).' });
  }
  const onnxDir = path.join(dir, 'onnx');
  const files = existsSync(onnxDir) ? readdirSync(onnxDir).filter((f) => /^model.*\.onnx$/.test(f)) : [];
  if (files.length === 0) {
    throw new DsaPruneError(`${dir} has no onnx/model*.onnx`, { code: 'not-found',
      hint: 'Export the model to ONNX first (optimum-cli export onnx --task text-generation-with-past …) so that onnx/model.onnx exists.',
    });
  }
  let file: string | undefined;
  if (opts.dtype !== undefined) {
    const suffix = dtypeToSuffix(opts.dtype);
    if (suffix === undefined) {
      throw new DsaPruneError(`unknown dtype ${JSON.stringify(opts.dtype)}`, { code: 'invalid-input', hint: `Use one of ${Object.values(SUFFIX_DTYPE).join(', ')}.` });
    }
    file = files.find((f) => f === `model${suffix}.onnx`);
    if (!file) {
      throw new DsaPruneError(`${dir} has no onnx/model${suffix}.onnx for dtype ${opts.dtype}`, { code: 'not-found',
        hint: `Available: ${files.join(', ')}.`,
      });
    }
  } else {
    file = files.find((f) => f === 'model.onnx') ?? files.find((f) => f === 'model_fp16.onnx') ?? files.sort()[0];
  }
  const { suffix } = splitOnnxName(file);
  const dtype = SUFFIX_DTYPE[suffix] ?? 'fp32';
  return { dir, config, onnxPath: path.join(onnxDir, file), dtype };
}

/** Decode the folder's ONNX (clear error when corrupt or truncated) and check its external data files exist. */
export function readFolderGraph(folder: ModelFolder): ModelProto {
  const proto = readModelFile(folder.onnxPath);
  densifyModel(proto); // compressed sparse storage → plain dense initializers (see src/model/densify.ts)
  const base = path.dirname(folder.onnxPath);
  for (const t of proto.graph.initializer ?? []) {
    if (!isExternal(t)) continue;
    const { location } = externalInfo(t);
    if (!existsSync(path.join(base, location))) {
      throw new DsaPruneError(`${folder.onnxPath} keeps weight ${t.name} in ${location}, which is missing`, { code: 'invalid-model',
        hint: 'Copy the whole model folder, including the .onnx_data file(s) next to the .onnx file.',
      });
    }
  }
  return proto;
}

/**
 * Load a model folder for pruning: validate it, load model and tokenizer with transformers.js (local files only),
 * and attach dsa-prune. `tokenizer` is null when the folder has no tokenizer files.
 */
export async function loadModelDir(
  dir: string,
  opts: { dtype?: string; threads?: number; allowRemote?: boolean } = {},
): Promise<{ model: any; tokenizer: any; prunable: PrunableModel }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  // A hub id with remote models allowed: transformers.js resolves it (its own cache first, then env.remoteHost).
  if (remoteAllowed(opts.allowRemote) && /^[\w.-]+\/[\w.-]+$/.test(dir) && !existsSync(path.resolve(dir))) return loadRemote(dir, opts);
  const folder = await validateModelFolder(dir, opts);
  const proto = readFolderGraph(folder);
  rememberDecoded(folder.onnxPath, proto);
  const { model, tokenizer } = await openFolder(folder, opts);
  const prunable = await attachModel(model, { source: folder.dir });
  return { model, tokenizer, prunable };
}

/**
 * Load the file transformers.js picks for `dtype` (`fp32`, `fp16`, `q8`, `q4`, …; default as validateModelFolder),
 * as transformers.js itself does, without attaching dsa-prune: for evaluating any saved variant, quantized ones
 * included. Returns the file (relative to the folder) and its size with external data.
 */
export async function loadModelVariant(
  dir: string,
  opts: { dtype?: string; threads?: number } = {},
): Promise<{ model: any; tokenizer: any; dtype: string; file: string; bytes: number }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const folder = await validateModelFolder(dir, opts);
  const { model, tokenizer } = await openFolder(folder, opts);
  const onnxDir = path.dirname(folder.onnxPath);
  const name = path.basename(folder.onnxPath);
  let bytes = statSync(folder.onnxPath).size;
  for (const f of readdirSync(onnxDir)) if (f.startsWith(`${name}_data`)) bytes += statSync(path.join(onnxDir, f)).size;
  return { model, tokenizer, dtype: folder.dtype, file: path.relative(folder.dir, folder.onnxPath), bytes };
}

async function openFolder(folder: ModelFolder, opts: { threads?: number }): Promise<{ model: any; tokenizer: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const tf = await transformers();
  tf.env.allowRemoteModels = false;
  tf.env.allowLocalModels = true;
  const sessionOptions: Record<string, unknown> = {};
  if (opts.threads !== undefined) {
    sessionOptions.intraOpNumThreads = opts.threads;
    sessionOptions.interOpNumThreads = 1;
  }
  let model: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    model = await closingFileResponseStreams(() => tf.AutoModelForCausalLM.from_pretrained(folder.dir, {
      dtype: folder.dtype as never,
      local_files_only: true,
      ...(Object.keys(sessionOptions).length ? { session_options: sessionOptions } : {}),
    }));
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    if (/unsupported model type|not supported|Unrecognized/i.test(msg)) {
      throw new DsaPruneError(`${folder.dir} (model_type ${String(folder.config.model_type)}) is not a causal language model transformers.js can load: ${msg}`, { code: 'invalid-model',
        hint: 'dsa-prune prunes decoder-only text generators supported by AutoModelForCausalLM.',
        cause: e,
      });
    }
    throw new DsaPruneError(`transformers.js could not load ${folder.dir}: ${msg}`, { code: 'invalid-model',
      hint: 'Check that the folder is a complete transformers.js export (config.json, tokenizer files, onnx/model.onnx).',
      cause: e,
    });
  }
  let tokenizer: any = null; // eslint-disable-line @typescript-eslint/no-explicit-any
  if (existsSync(path.join(folder.dir, 'tokenizer.json')) || existsSync(path.join(folder.dir, 'tokenizer_config.json'))) {
    try {
      tokenizer = await tf.AutoTokenizer.from_pretrained(folder.dir, { local_files_only: true });
    } catch (e) {
      throw new DsaPruneError(`the tokenizer files of ${folder.dir} could not be loaded: ${(e as Error).message}`, { code: 'invalid-model',
        hint: 'Restore tokenizer.json / tokenizer_config.json from the original model.',
        cause: e,
      });
    }
  }
  return { model, tokenizer };
}

/** loadModelDir for a repository id on the hub (remote models allowed): download through transformers.js, attach. */
async function loadRemote(
  id: string,
  opts: { dtype?: string; threads?: number },
): Promise<{ model: any; tokenizer: any; prunable: PrunableModel }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const dtype = opts.dtype ?? 'fp32';
  if (dtypeToSuffix(dtype) === undefined) {
    throw new DsaPruneError(`unknown dtype ${JSON.stringify(dtype)}`, { hint: `Use one of ${Object.values(SUFFIX_DTYPE).join(', ')}.` });
  }
  const sessionOptions: Record<string, unknown> = {};
  if (opts.threads !== undefined) {
    sessionOptions.intraOpNumThreads = opts.threads;
    sessionOptions.interOpNumThreads = 1;
  }
  const model = await loadFromHub(id, dtype, sessionOptions);
  const tf = await transformers();
  let tokenizer: any = null; // eslint-disable-line @typescript-eslint/no-explicit-any
  try {
    tokenizer = await tf.AutoTokenizer.from_pretrained(id);
  } catch {
    tokenizer = null; // a repository without tokenizer files: calibration then needs token ids
  }
  const prunable = await attachModel(model);
  return { model, tokenizer, prunable };
}
