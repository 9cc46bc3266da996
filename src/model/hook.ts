/**
 * The loading hook: wraps onnxruntime-node's `InferenceSession.create` so that every session transformers.js creates
 * afterwards is recorded with where its ONNX came from (path or bytes) and the session options it was built with.
 *
 * Relies on transformers.js 4.3.x creating sessions through `ONNX.InferenceSession.create(buffer_or_path, options)`
 * on the same `onnxruntime-node` module instance (src/backends/onnx.js, createInferenceSession).
 */
import * as ort from 'onnxruntime-node';
import path from 'node:path';
import { FILE_SUFFIXES } from './dtypes.js';

/** Where a session's ONNX graph came from. */
export interface ModelSource {
  /** Absolute path of the ONNX file (`<dir>/onnx/model.onnx`); '' when the session was created from bytes. */
  onnxPath: string;
  /** The model folder (parent of the `onnx/` subfolder). */
  dir: string;
  /** Dtype suffix of the file name: '' for model.onnx, '_fp16' for model_fp16.onnx, … */
  dtypeSuffix: string;
  /** Session options the session was created with (reused when the edited graph is swapped in). */
  sessionOptions: object;
  /** External data files named in the session options (paths relative to the ONNX file). */
  externalData?: string[];
  /** Base name of the ONNX file without suffix and extension (`model`, `decoder_model_merged`). */
  fileBase?: string;
  /** The ONNX bytes when the session was created from a buffer instead of a path. */
  bytes?: Uint8Array;
}

type CreateFn = (...args: unknown[]) => Promise<unknown>;

const sources = new WeakMap<object, ModelSource>();
const HOOK = Symbol.for('dsa-prune.loadingHook');

interface Hooked {
  [HOOK]?: { original: CreateFn };
}


/** Split `model_fp16.onnx` into { base: 'model', suffix: '_fp16' }. */
export function splitOnnxName(file: string): { base: string; suffix: string } {
  const stem = path.basename(file).replace(/\.onnx$/i, '');
  for (const s of FILE_SUFFIXES) {
    if (stem.endsWith(s) && stem.length > s.length) return { base: stem.slice(0, -s.length), suffix: s };
  }
  return { base: stem, suffix: '' };
}

/** Build a ModelSource for an ONNX file on disk. */
export function sourceFromPath(onnxPath: string, sessionOptions: object = {}): ModelSource {
  const abs = path.resolve(onnxPath);
  const parent = path.dirname(abs);
  const dir = path.basename(parent) === 'onnx' ? path.dirname(parent) : parent;
  const { base, suffix } = splitOnnxName(abs);
  const ext = (sessionOptions as { externalData?: unknown[] }).externalData;
  const externalData = Array.isArray(ext)
    ? ext.map((e) => (typeof e === 'string' ? e : String((e as { path?: string }).path ?? ''))).filter(Boolean)
    : undefined;
  return { onnxPath: abs, dir, dtypeSuffix: suffix, sessionOptions, fileBase: base, ...(externalData ? { externalData } : {}) };
}

/** The original (unwrapped) `InferenceSession.create`, for building sessions that should not be recorded. */
export function originalCreate(): CreateFn {
  const cls = ort.InferenceSession as unknown as Hooked & { create: CreateFn };
  return cls[HOOK]?.original ?? cls.create.bind(cls);
}

/**
 * Wrap `InferenceSession.create` once (idempotent, also across copies of this module). Sessions created afterwards
 * are recorded; `sourceOfSession` returns the record.
 */
export function installLoadingHook(): void {
  const cls = ort.InferenceSession as unknown as Hooked & { create: CreateFn };
  if (cls[HOOK]) return;
  const original = cls.create.bind(cls) as CreateFn;
  const wrapped: CreateFn = async (...args: unknown[]) => {
    const session = await original(...args);
    try {
      const first = args[0];
      const options = (typeof args[1] === 'object' && args[1] !== null ? args[1] : {}) as object;
      if (session && typeof session === 'object') {
        if (typeof first === 'string') sources.set(session, sourceFromPath(first, options));
        else if (first instanceof Uint8Array) {
          sources.set(session, { onnxPath: '', dir: '', dtypeSuffix: '', sessionOptions: options, bytes: first });
        }
      }
    } catch {
      // Recording is best effort: never break model loading.
    }
    return session;
  };
  Object.defineProperty(cls, HOOK, { value: { original }, enumerable: false, configurable: true });
  cls.create = wrapped;
}

/** Where the given onnxruntime session came from, if it was created after installLoadingHook(). */
export function sourceOfSession(session: unknown): ModelSource | undefined {
  return session && typeof session === 'object' ? sources.get(session) : undefined;
}

/** Record a source for a session built by dsa-prune itself (the swapped-in session keeps its model's source). */
export function recordSource(session: object, source: ModelSource): void {
  sources.set(session, source);
}
