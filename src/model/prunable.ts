/**
 * PrunableModel: a transformers.js model together with its decoded ONNX graph, the discovered linears, weight access in
 * the [dOut × dIn] convention, and `commit()` which rebuilds the onnxruntime session from the edited graph and swaps it
 * into `model.sessions` in place (generate() and pipelines keep working).
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { densifyModel } from './densify.js';
import { DsaPruneError } from '../errors.js';
import { transpose } from '../kernels/dense.js';
import { dtypeToSuffix } from './dtypes.js';
import type { LinearInfo } from '../types.js';
import { discoverLinears, type WeightLayout } from './discover.js';
import { hasExternalData, externalFiles, initializerBytes, inlinedModel, PROTOBUF_LIMIT, writeWithExternalData } from './external.js';
import { sessionFolder, WeightSpill } from './spill.js';
import { releaseBuffers } from './release.js';
import { originalCreate, recordSource, sourceFromPath, sourceOfSession, type ModelSource } from './hook.js';
import {
  decodeModel, encodeModel, float32ToTensorBytes, isExternal, readModelFile, setTensorFloat32, tensorToFloat32,
  type GraphProto, type ModelProto, type TensorProto,
} from './onnx.js';

/**
 * Calling it puts the weight back. `release()` says it will not be called any more: for a weight in the scratch
 * file, the region it points to may then be reused (src/model/spill.ts). An unreleased snapshot only costs disk.
 */
export type WeightSnapshot = (() => void) & { release(): void };

export interface PrunableModel {
  /** The transformers.js model (PreTrainedModel). */
  model: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  source: ModelSource;
  /** Decoded main graph; writeWeight edits it, commit() builds the session from it. */
  proto: ModelProto;
  /** Prunable linears (lm_head excluded); W presented as [dOut × dIn]. */
  linears: LinearInfo[];
  blocks: number;
  /** config.json of the model folder. */
  config: Record<string, unknown>;
  /** A float32 copy of a linear's weight as [dOut × dIn] row-major (fp16 converted). */
  readWeight(l: LinearInfo): Float32Array;
  /**
   * Stage a new [dOut × dIn] weight into the graph, stored in the initializer's own layout and dtype: inline, or for a
   * weight kept in external data, appended to a scratch file the tensor then points to (never held in memory).
   */
  writeWeight(l: LinearInfo, w: Float32Array): void;
  /** An initializer's values as float32, in its raw ONNX layout. */
  readInitializer(name: string): Float32Array;
  /**
   * Free now (not at the next GC) the memory of arrays readInitializer returned that the caller no longer uses (each
   * is a copy of its own); they are then empty (length 0). Other arrays are left alone. src/model/release.ts says why.
   */
  releaseReads(values: Iterable<Float32Array>): Promise<void>;
  /**
   * Remember l's current weight; the returned function puts it back. Holds no copy: writeWeight replaces the tensor's
   * data fields and never mutates them, so keeping the current fields (an external-data reference or the old bytes)
   * is enough. Undo in reverse order when several snapshots cover one initializer.
   */
  snapshotWeight(l: LinearInfo): WeightSnapshot;
  /**
   * Build a session from the edited graph (same session options) and swap it into model.sessions in place.
   * Inline graphs under 2 GB go to onnxruntime as bytes. A graph with external data (the source's data file, and the
   * scratch file pruned weights were spilled to: writeWeight) goes through a temporary folder with those files
   * hard-linked (src/model/spill.ts), so no weight passes through the JS heap; `{ viaFile: false }` inlines it instead.
   * `releaseFirst` (default: on for external data and graphs over 2 GB) frees the old session before the new one is
   * built, so peak memory holds one onnxruntime copy of the weights instead of two; if building then fails, the model
   * must be reloaded.
   */
  commit(opts?: { viaFile?: boolean; releaseFirst?: boolean }): Promise<void>;
  /** sha256 (hex) of the source ONNX bytes and its external data files; cached. */
  modelHash(): string;
  /** Storage layout of each linear's initializer, by linear name. */
  layout: Map<string, WeightLayout>;
  /** The key of model.sessions that holds the graph (`model`, `decoder_model_merged`). */
  sessionKey: string;
}

const attached = new WeakMap<object, Promise<PrunableModel>>();
/** Graphs loadModelDir already decoded while validating the folder, consumed by the next attach of that file. */
const predecoded = new Map<string, ModelProto>();

export function rememberDecoded(onnxPath: string, proto: ModelProto): void {
  predecoded.set(path.resolve(onnxPath), proto);
}

const SESSION_KEYS = ['model', 'decoder_model_merged', 'decoder_model', 'text_model'];
export { dtypeToSuffix };

export { transpose };

function findOnnxInFolder(dir: string, suffix: string | undefined, base = 'model'): string | undefined {
  const sub = path.join(dir, 'onnx');
  const folder = existsSync(sub) ? sub : dir;
  let files: string[];
  try {
    files = readdirSync(folder).filter((f) => f.endsWith('.onnx'));
  } catch {
    return undefined;
  }
  if (suffix !== undefined && files.includes(`${base}${suffix}.onnx`)) return path.join(folder, `${base}${suffix}.onnx`);
  if (files.includes(`${base}.onnx`)) return path.join(folder, `${base}.onnx`);
  const any = files.find((f) => f.startsWith(base));
  return any ? path.join(folder, any) : undefined;
}

function sessionEntries(model: any): [string, any][] { // eslint-disable-line @typescript-eslint/no-explicit-any
  const sessions = model?.sessions;
  if (!sessions || typeof sessions !== 'object') {
    throw new DsaPruneError('the object passed is not a transformers.js model (it has no onnxruntime sessions)', { code: 'invalid-input',
      hint: 'Pass the model returned by AutoModelForCausalLM.from_pretrained(...).',
    });
  }
  const entries = Object.entries(sessions) as [string, any][]; // eslint-disable-line @typescript-eslint/no-explicit-any
  entries.sort((a, b) => rank(a[0]) - rank(b[0]));
  return entries;
}
function rank(k: string): number {
  const i = SESSION_KEYS.indexOf(k);
  return i < 0 ? SESSION_KEYS.length : i;
}

function readConfig(dir: string, model: any): Record<string, unknown> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const file = path.join(dir, 'config.json');
  if (dir && existsSync(file)) {
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new DsaPruneError(`${file} is not valid JSON (${(e as Error).message})`, { hint: 'Fix or restore config.json.' });
    }
  }
  return { ...(model?.config ?? {}) } as Record<string, unknown>;
}

/** An initializer as float32 (see tensorToFloat32); malformed data becomes a DsaPruneError naming the file. */
export function readFloats(t: TensorProto, baseDir: string | undefined, where: string): Float32Array {
  try {
    return tensorToFloat32(t, baseDir);
  } catch (e) {
    if (e instanceof DsaPruneError) throw e;
    throw new DsaPruneError(`initializer ${t.name} of ${where || 'the model'} has malformed data (${(e as Error).message})`, {
      hint: 'The ONNX file is corrupt: export or download the model again.',
      cause: e,
    });
  }
}

/** The TensorProto fields that hold (or point to) an initializer's data: what setTensorFloat32 replaces. */
const DATA_FIELDS = ['raw_data', 'float_data', 'int32_data', 'int64_data', 'double_data', 'external_data', 'data_location'] as const;

/**
 * Every initializer of a graph and its subgraphs, by name. A name has several copies when each branch of an If holds
 * its own (a merged decoder whose shared weights were not hoisted to the outer graph): writes go to all of them.
 */
function initializerIndex(g: GraphProto, into = new Map<string, TensorProto[]>()): Map<string, TensorProto[]> {
  for (const t of g.initializer ?? []) {
    if (!t.name) continue;
    const list = into.get(t.name);
    if (list) list.push(t);
    else into.set(t.name, [t]);
  }
  for (const n of g.node) {
    for (const a of n.attribute ?? []) {
      if (a.g) initializerIndex(a.g, into);
      for (const sg of a.graphs ?? []) initializerIndex(sg, into);
    }
  }
  return into;
}

/** Same values, bit for bit (copies of one weight in several subgraphs). */
function sameFloats(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * Attach dsa-prune to a transformers.js model: find its session's ONNX source (recorded by the loading hook, or
 * `opts.source` = the model folder), decode the graph and discover the linears. Cached per model object.
 */
export function attachModel(model: any, opts: { source?: string } = {}): Promise<PrunableModel> { // eslint-disable-line @typescript-eslint/no-explicit-any
  if (model === null || (typeof model !== 'object' && typeof model !== 'function')) {
    return Promise.reject(new DsaPruneError('attachModel expects a transformers.js model object', { code: 'invalid-input',
      hint: 'Pass the model returned by AutoModelForCausalLM.from_pretrained(...).',
    }));
  }
  let p = attached.get(model);
  if (!p) {
    p = Promise.resolve().then(() => buildPrunable(model, opts));
    attached.set(model, p);
    p.catch(() => attached.delete(model));
  }
  return p;
}

function buildPrunable(model: any, opts: { source?: string }): PrunableModel { // eslint-disable-line @typescript-eslint/no-explicit-any
  const entries = sessionEntries(model);
  let key: string | undefined;
  let source: ModelSource | undefined;
  for (const [k, s] of entries) {
    const src = sourceOfSession(s);
    if (src) {
      key = k;
      source = src;
      break;
    }
  }
  if (!source && opts.source) {
    const dir = path.resolve(opts.source);
    key = entries[0]?.[0];
    if (!key) throw new DsaPruneError('the model has no onnxruntime session');
    const session = entries[0][1];
    const base = key === 'model' ? 'model' : key;
    const file = findOnnxInFolder(dir, dtypeToSuffix(session?.config?.dtype), base) ?? findOnnxInFolder(dir, dtypeToSuffix(session?.config?.dtype));
    if (!file) {
      throw new DsaPruneError(`no ONNX file for session '${key}' in ${dir} (looked for onnx/${base}*.onnx)`, {
        hint: 'Pass { source } = the folder the model was loaded from (it has config.json and onnx/model.onnx).',
      });
    }
    source = sourceFromPath(file, { executionProviders: ['cpu'] });
  }
  if (!source || !key) {
    throw new DsaPruneError(
      "this model was loaded before dsa-prune was imported: import 'dsa-prune' before from_pretrained, or pass { source: dir }",
      { hint: "Load the model again after `import 'dsa-prune'` (or call installLoadingHook() first), or pass the model folder as { source: dir }." },
    );
  }

  let proto: ModelProto;
  if (source.onnxPath) {
    proto = predecoded.get(source.onnxPath) ?? readModelFile(source.onnxPath);
    predecoded.delete(source.onnxPath);
  } else if (source.bytes) {
    proto = decodeModel(source.bytes, 'the model bytes');
  } else {
    throw new DsaPruneError('the source of the model session is unknown', { code: 'invalid-input', hint: 'Pass { source: dir }.' });
  }
  // A folder saved with { compress: true } stores sparse weights as bitmask + values rebuilt by graph nodes:
  // restore plain dense initializers so the linears are found and editable.
  densifyModel(proto);
  const config = readConfig(source.dir, model);
  const found = discoverLinears(proto.graph, { config });
  if (found.linears.length === 0) {
    throw new DsaPruneError(`no prunable linear layer found in ${source.onnxPath || 'the model graph'}`, { code: 'invalid-model',
      hint: 'dsa-prune prunes MatMul/Gemm nodes with float32/float16 weight initializers; run `dsa-prune inspect` on the folder to see what it finds.',
    });
  }
  return makePrunable(model, key, source, proto, config, found.linears, found.blocks, found.layout);
}

function makePrunable(
  model: any, // eslint-disable-line @typescript-eslint/no-explicit-any
  sessionKey: string,
  source: ModelSource,
  proto: ModelProto,
  config: Record<string, unknown>,
  linears: LinearInfo[],
  blocks: number,
  layout: Map<string, WeightLayout>,
): PrunableModel {
  const inits = initializerIndex(proto.graph);
  const baseDir = source.onnxPath ? path.dirname(source.onnxPath) : undefined;
  let hash: string | undefined;
  const sourceExternal = externalFiles(proto); // before any write points a weight at the scratch file
  const spill = new WeightSpill();

  const copies = (name: string): TensorProto[] => {
    const t = inits.get(name);
    if (!t) throw new DsaPruneError(`initializer ${name} not found in ${source.onnxPath || 'the model graph'}`);
    return t;
  };
  const tensor = (name: string): TensorProto => copies(name)[0];
  const floats = (t: TensorProto): Float32Array => readFloats(t, baseDir, source.onnxPath);
  /**
   * Buffers of readInitializer results not yet released. tensorToFloat32 returns a copy of its own in every case (an
   * external read is a fresh buffer, inline bytes are copied by aligned(), other dtypes converted), so no graph bytes
   * are among them; only arrays handed out here can be released.
   */
  const ownReads = new WeakSet<ArrayBufferLike>();
  // A weight copied into several subgraphs is pruned once and written to every copy — only right if they are equal.
  for (const l of linears) {
    const [first, ...rest] = inits.get(l.weight) ?? [];
    if (!rest.length) continue;
    const v = floats(first);
    if (rest.some((t) => !sameFloats(v, floats(t)))) {
      throw new DsaPruneError(`weight ${l.weight} of ${l.name} is stored in several subgraphs of ${source.onnxPath || 'the model'} with different values`, {
        hint: 'Each branch of the If would need its own pruning; prune the single-graph export (onnx/model.onnx) instead.',
      });
    }
  }
  const check = (l: LinearInfo): WeightLayout => {
    const lay = layout.get(l.name);
    if (!lay) throw new DsaPruneError(`linear ${l.name} does not belong to this model`, { hint: 'Use the LinearInfo objects of this model\'s PrunableModel.linears.' });
    return lay;
  };

  const pm: PrunableModel = {
    model,
    source,
    proto,
    linears,
    blocks,
    config,
    layout,
    sessionKey,
    readInitializer(name) {
      const v = floats(tensor(name));
      ownReads.add(v.buffer);
      return v;
    },
    async releaseReads(values) {
      const own: ArrayBuffer[] = [];
      for (const v of values) {
        if (!ownReads.has(v.buffer)) continue;
        ownReads.delete(v.buffer);
        own.push(v.buffer as ArrayBuffer);
      }
      await releaseBuffers(own);
    },
    snapshotWeight(l) {
      check(l);
      const saved = copies(l.weight).map((t) => [t, DATA_FIELDS.map((k) => [k, t[k]] as const)] as const);
      const release = spill.pin(copies(l.weight)[0]!);
      const restore = (): void => {
        for (const [t, fields] of saved) {
          for (const [k, v] of fields) {
            if (v === undefined) delete t[k];
            else (t as Record<string, unknown>)[k] = v;
          }
        }
      };
      return Object.assign(restore, { release });
    },
    readWeight(l) {
      const lay = check(l);
      const raw = floats(tensor(l.weight));
      if (raw.length !== l.dIn * l.dOut) throw new DsaPruneError(`initializer ${l.weight} of ${l.name} has ${raw.length} values, expected ${l.dIn}×${l.dOut}`);
      return lay === 'out_in' ? raw : transpose(raw, l.dIn, l.dOut);
    },
    writeWeight(l, w) {
      const lay = check(l);
      if (!(w instanceof Float32Array) || w.length !== l.dIn * l.dOut) {
        throw new DsaPruneError(`writeWeight(${l.name}): expected a Float32Array of ${l.dOut}×${l.dIn} = ${l.dOut * l.dIn} values, got ${w?.length}`);
      }
      const ts = copies(l.weight);
      // External data stays external: the new bytes go to the scratch file, not the heap (spill.ts). The write is
      // synchronous, so `w` itself (out_in) is written without the copy an inline tensor needs to own its bytes.
      if (ts.every(isExternal)) {
        spill.store(ts, float32ToTensorBytes(ts[0]!, lay === 'out_in' ? w : transpose(w, l.dOut, l.dIn)));
        return;
      }
      const stored = lay === 'out_in' ? Float32Array.from(w) : transpose(w, l.dOut, l.dIn);
      for (const t of ts) setTensorFloat32(t, stored); // every copy: both branches of a merged decoder
    },
    async commit(copts = {}) {
      const old = model.sessions[sessionKey];
      const create = originalCreate();
      const options = { ...(source.sessionOptions as Record<string, unknown>) };
      delete options.externalData;
      let session: any; // eslint-disable-line @typescript-eslint/no-explicit-any
      const external = hasExternalData(proto);
      const buildSession = async (inline: boolean): Promise<any> => { // eslint-disable-line @typescript-eslint/no-explicit-any
        if (inline) return create(encodeModel(external ? inlinedModel(proto, baseDir!) : proto), options);
        if (external && baseDir) {
          // The weights stay on disk: the source's data file and the scratch file, linked next to a model file.
          const folder = sessionFolder(proto, baseDir);
          try {
            return await create(folder.onnxPath, options);
          } finally {
            folder.dispose();
          }
        }
        // Too big for one protobuf message: lay the weights out as external data in a temporary folder.
        const tmp = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-commit-'));
        try {
          const onnx = path.join(tmp, 'model.onnx');
          writeWithExternalData(proto, baseDir ?? tmp, onnx, path.join(tmp, 'model.onnx_data'), 'model.onnx_data');
          return await create(onnx, options);
        } finally {
          rmSync(tmp, { recursive: true, force: true });
        }
      };
      const big = initializerBytes(proto) >= PROTOBUF_LIMIT;
      // External data: through a file (no inline copy in the heap), and the old session freed first, so the peak
      // holds one onnxruntime copy of the weights instead of two.
      const onDisk = external && !!baseDir;
      let released = false;
      if ((copts.releaseFirst ?? (big || onDisk)) && old && typeof old.release === 'function') {
        await old.release();
        released = true;
      }
      try {
        session = await buildSession(!(copts.viaFile ?? onDisk) && !big);
      } catch (e) {
        if (!released) throw e;
        throw new DsaPruneError(`rebuilding the onnxruntime session of ${source.onnxPath || 'the model'} failed after the old one was released: ${(e as Error).message}`, {
          hint: 'Load the model again (from_pretrained) before using it; free memory or pass commit({ releaseFirst: false }).',
          cause: e,
        });
      }
      if (old && typeof old === 'object' && 'config' in old) session.config = old.config;
      recordSource(session, source);
      model.sessions[sessionKey] = session;
      if (!released && old && typeof old.release === 'function') {
        try {
          await old.release();
        } catch {
          // an already released session: nothing to free
        }
      }
    },
    modelHash() {
      if (hash) return hash;
      const h = createHash('sha256');
      if (source.onnxPath) {
        hashFile(h, source.onnxPath);
        for (const f of sourceExternal) hashFile(h, path.join(baseDir!, f));
      } else if (source.bytes) h.update(source.bytes);
      hash = h.digest('hex');
      return hash;
    },
  };
  return pm;
}

function hashFile(h: ReturnType<typeof createHash>, file: string): void {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(16 << 20);
    let pos = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
}
