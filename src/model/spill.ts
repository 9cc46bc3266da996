/**
 * Spilling edited weights to disk. A model whose weights live in external data (`model.onnx_data`) keeps them out of
 * the JS heap: the decoded graph holds only references. When dsa-prune writes a pruned weight of such a model, the new
 * bytes go to a scratch file (one per PrunableModel, in the OS temp folder, deleted at process exit) and the tensor is
 * pointed at it by an absolute `location`, instead of being held inline (`raw_data`): held inline, the pruned linears
 * of a whole model sat in memory next to the onnxruntime session until commit (≈ 0.65 × the model at SmolLM2-135M).
 * Readers resolve `location` with path.resolve (src/model/onnx.ts), so an absolute one reads the scratch file.
 *
 * onnxruntime refuses external data outside the model's folder (and absolute locations), so commit builds a session
 * folder (`sessionFolder`): the model file with every external file hard-linked next to it (copied when the link
 * fails, e.g. across file systems), deleted once the session exists.
 */
import { closeSync, copyFileSync, fsyncSync, linkSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DsaPruneError } from '../errors.js';
import { encodeModel, externalInfo, isExternal, pointAtExternal, type ModelProto, type TensorProto } from './onnx.js';
import { writeAll } from './external.js';

const live = new Set<string>();
let exitHook = false;
function cleanupAtExit(dir: string): void {
  live.add(dir);
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const d of live) rmSync(d, { recursive: true, force: true });
  });
}

/**
 * A scratch file of tensor bytes (64-byte aligned offsets). Space is reused: each tensor keeps the regions it was
 * written to, and a new write goes to one of them that is neither the tensor's current data nor pinned by a live
 * snapshot (PrunableModel.snapshotWeight), else to a new region at the end. Pruning, restoring and pruning again (the
 * faithful search) therefore ping-pongs between two regions per tensor instead of growing the file.
 */
export class WeightSpill {
  private dir?: string;
  private fd = -1;
  private offset = 0;
  private readonly regions = new Map<string, { offset: number; length: number }[]>();
  private readonly pins = new Map<number, number>();
  /** Absolute path of the scratch file (created on the first write). */
  file = '';

  /** Offset of `t`'s data when it lives in this scratch file, else undefined. */
  offsetOf(t: TensorProto): number | undefined {
    if (!this.file || !isExternal(t)) return undefined;
    const info = externalInfo(t);
    return info.location === this.file ? info.offset : undefined;
  }

  /** Keep the region `t`'s data is in now from being reused until the returned function is called. */
  pin(t: TensorProto): () => void {
    const at = this.offsetOf(t);
    if (at === undefined) return () => {};
    this.pins.set(at, (this.pins.get(at) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.pins.get(at) ?? 1) - 1;
      if (n > 0) this.pins.set(at, n);
      else this.pins.delete(at);
    };
  }

  /** Bytes written so far (the scratch file's size). */
  get bytes(): number {
    return this.offset;
  }

  /** Write `bytes` and point `tensors` at them (external data, absolute location); their inline data fields are dropped. */
  store(tensors: TensorProto[], bytes: Uint8Array): void {
    if (this.fd < 0) {
      this.dir = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-weights-'));
      cleanupAtExit(this.dir);
      this.file = path.join(this.dir, 'pruned.onnx_data');
      this.fd = openSync(this.file, 'w+');
    }
    const key = tensors[0]?.name ?? '';
    const current = tensors[0] ? this.offsetOf(tensors[0]) : undefined;
    const own = this.regions.get(key) ?? [];
    let at = own.find((r) => r.length === bytes.length && r.offset !== current && !this.pins.has(r.offset))?.offset;
    if (at === undefined) {
      this.offset += (64 - (this.offset % 64)) % 64;
      at = this.offset;
      this.offset = at + bytes.length;
      own.push({ offset: at, length: bytes.length });
      this.regions.set(key, own);
    }
    try {
      writeAll(this.fd, bytes, at);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new DsaPruneError(`cannot write pruned weights to the scratch file ${this.file}: ${code ?? (e as Error).message}`, {
        hint: code === 'ENOSPC'
          ? `The temp folder needs about as much free space as the pruned linears (${(this.offset / 2 ** 30).toFixed(2)} GB so far); free space there or point TMPDIR at a larger disk.`
          : 'Check that the OS temp folder (TMPDIR) is writable.',
        cause: e,
      });
    }
    for (const t of tensors) pointAtExternal(t, this.file, at, bytes.length);
  }

  /** Delete the scratch file now (tensors still pointing at it become unreadable). */
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    if (this.dir) {
      rmSync(this.dir, { recursive: true, force: true });
      live.delete(this.dir);
    }
  }
}

/**
 * A folder onnxruntime can load `m` from without copying weights through the JS heap: `model.onnx` (inline tensors
 * stay inline) and each external file `m` refers to (relative to `baseDir`, or absolute: a scratch file) hard-linked
 * next to it as `data<k>.onnx_data`, copied by the OS when a link is impossible. Returns the model path and a cleanup.
 */
export function sessionFolder(m: ModelProto, baseDir: string): { onnxPath: string; dispose: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-commit-'));
  try {
    const local = new Map<string, string>();
    const initializer = m.graph.initializer.map((t) => {
      if (!isExternal(t)) return t;
      const info = externalInfo(t);
      const abs = path.resolve(baseDir, info.location);
      let name = local.get(abs);
      if (!name) {
        name = `data${local.size}.onnx_data`;
        const to = path.join(dir, name);
        try {
          linkSync(abs, to);
        } catch {
          copyFileSync(abs, to);
        }
        local.set(abs, name);
      }
      const c: TensorProto = { ...t, external_data: (t.external_data ?? []).map((e) => (e.key === 'location' ? { key: 'location', value: name } : e)) };
      return c;
    });
    const onnxPath = path.join(dir, 'model.onnx');
    const fd = openSync(onnxPath, 'w');
    try {
      writeFileSync(fd, encodeModel({ ...m, graph: { ...m.graph, initializer } } as ModelProto));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return { onnxPath, dispose: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
