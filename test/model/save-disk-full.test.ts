/**
 * A disk that fills up while saving. `node:fs` is mocked for the modules under test: writeFileSync, copyFileSync and
 * writeSync draw from a byte budget and, once it runs out, write the bytes that still fit and throw ENOSPC like the
 * kernel does. For every file a save writes, the budget is set to run out in the middle of that file; the save must
 * then throw the disk-full DsaPruneError, leave neither the output folder nor a temp folder, leave the source
 * untouched, and the model must still run and save elsewhere. Covers savePruned of src/model (plain weights), the
 * public savePruned with --quantize / --compress (files written by src/compress), compressFolder replacing a model with
 * external data in place, and `dsa-prune prune` (exit code 3).
 */
import type * as NodeFs from 'node:fs';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { AutoModelForCausalLM } from '@huggingface/transformers';
import { hashTree, maxAbsDiff } from './helpers.js';
import { DsaPruneError, EXIT } from '../../src/errors.js';
import { installLoadingHook, savePruned as saveModel } from '../../src/model/index.js';
import { savePruned } from '../../src/save.js';
import { compressFolder } from '../../src/compress/index.js';
import { pruneModel } from '../../src/prune.js';
import { main } from '../../src/cli/main.js';
import { memoryIo } from '../../src/cli/io.js';

/** The simulated disk: bytes still free, and every write made (path, bytes) while `log` is on. */
const disk = vi.hoisted(() => ({ free: Infinity, log: [] as { file: string; bytes: number }[], fds: new Map<number, string>() }));

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof NodeFs>();
  const enospc = (syscall: string, file: string) =>
    Object.assign(new Error(`ENOSPC: no space left on device, ${syscall} '${file}'`), { code: 'ENOSPC', errno: -28, syscall, path: file });
  /** Bytes of a write of `n` that fit; records the write. */
  const take = (file: string, n: number): number => {
    const ok = Math.max(0, Math.min(n, disk.free));
    disk.free -= ok;
    disk.log.push({ file, bytes: n });
    return ok;
  };
  const asBytes = (data: unknown): Uint8Array =>
    typeof data === 'string' ? Buffer.from(data) : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(String(data));
  const writeFileSync = ((file: NodeFs.PathOrFileDescriptor, data: unknown, opts?: NodeFs.WriteFileOptions) => {
    const bytes = asBytes(data);
    const ok = take(String(file), bytes.length);
    if (ok < bytes.length) {
      fs.writeFileSync(file, bytes.subarray(0, ok));
      throw enospc('write', String(file));
    }
    return fs.writeFileSync(file, data as string, opts);
  }) as typeof fs.writeFileSync;
  const copyFileSync = ((from: NodeFs.PathLike, to: NodeFs.PathLike, mode?: number) => {
    const size = fs.statSync(from).size;
    const ok = take(String(to), size);
    if (ok < size) {
      fs.writeFileSync(to, fs.readFileSync(from).subarray(0, ok));
      throw enospc('copyfile', String(to));
    }
    return fs.copyFileSync(from, to, mode);
  }) as typeof fs.copyFileSync;
  const openSync = ((file: NodeFs.PathLike, ...rest: unknown[]) => {
    const fd = (fs.openSync as (...a: unknown[]) => number)(file, ...rest);
    disk.fds.set(fd, String(file));
    return fd;
  }) as typeof fs.openSync;
  // The (fd, buffer, offset, length, position) form: the one src/model/external.ts uses.
  const writeSync = ((fd: number, buffer: Uint8Array, offset: number, length: number, position?: number | null) => {
    const ok = take(disk.fds.get(fd) ?? `fd ${fd}`, length);
    if (ok < length) {
      if (ok > 0) fs.writeSync(fd, buffer, offset, ok, position);
      throw enospc('write', disk.fds.get(fd) ?? `fd ${fd}`);
    }
    return fs.writeSync(fd, buffer, offset, length, position);
  }) as unknown as typeof fs.writeSync;
  const patched = { writeFileSync, copyFileSync, openSync, writeSync };
  return { ...fs, ...patched, default: { ...fs, ...patched } };
});

installLoadingHook();

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-diskfull-'));
const src = path.join(work, 'src-model');
const ids = { input_ids: BigInt64Array.from([1n, 403n, 2n, 150n, 33n, 7n]) };


// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function logits(model: any): Promise<Float32Array> {
  const { Tensor } = await import('@huggingface/transformers');
  const t = new Tensor('int64', ids.input_ids, [1, ids.input_ids.length]);
  const m = new Tensor('int64', new BigInt64Array(ids.input_ids.length).fill(1n), [1, ids.input_ids.length]);
  return (await model({ input_ids: t, attention_mask: m })).logits.data as Float32Array;
}

/**
 * Writes of a successful save, grouped by file (relative to the output folder, temp prefix removed), in order;
 * `before` = bytes written before the file's first write.
 */
function filesWritten(log: { file: string; bytes: number }[]): { file: string; before: number; bytes: number }[] {
  const out: { file: string; before: number; bytes: number }[] = [];
  let total = 0;
  for (const w of log) {
    const rel = w.file.replace(/^.*?(\.tmp-[^/]+|-ok)\//, '');
    const last = out[out.length - 1];
    if (last && last.file === rel) last.bytes += w.bytes;
    else out.push({ file: rel, before: total, bytes: w.bytes });
    total += w.bytes;
  }
  return out.filter((f) => f.bytes > 0);
}

function leftovers(): string[] {
  return readdirSync(work).filter((f) => f.includes('.tmp-'));
}

describe('a full disk during savePruned', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let model: any;
  let srcHashes: Record<string, string>;
  let pruned: Float32Array;

  beforeAll(async () => {
    cpSync(path.join(repoRoot, 'models/stories260k'), src, { recursive: true });
    srcHashes = hashTree(src);
    model = await AutoModelForCausalLM.from_pretrained(src, { dtype: 'fp32' });
    const dense = await logits(model);
    await pruneModel(model, { method: 'magnitude', sparsity: 0.5 });
    pruned = await logits(model);
    expect(maxAbsDiff(dense, pruned)).toBeGreaterThan(0);
  });
  beforeEach(() => {
    disk.free = Infinity;
    disk.log = [];
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** Run `save` once with room to spare, then once per written file with the disk filling in its middle. */
  async function fillEachFile(label: string, save: (out: string) => Promise<unknown>, expectFiles: RegExp[]): Promise<void> {
    await save(path.join(work, `${label}-ok`));
    const files = filesWritten(disk.log);
    for (const re of expectFiles) expect(files.some((f) => re.test(f.file)), `${label} writes ${re}`).toBe(true);
    for (const f of files) {
      const out = path.join(work, `${label}-full`);
      disk.free = f.before + Math.floor(f.bytes / 2);
      disk.log = [];
      const err = await save(out).then(() => undefined, (e: unknown) => e);
      expect(err, `disk full in ${f.file}`).toBeInstanceOf(DsaPruneError);
      const e = err as DsaPruneError;
      expect(e.message).toBe(`the disk filled up while saving to ${out}; nothing was written`);
      expect(e.hint).toMatch(/free disk space/i);
      expect(e.code).toBe('write-failed');
      expect(e.exitCode).toBe(EXIT.io);
      expect((e.cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
      // The budget ran out inside this file: everything before it was written, so the failure really was midway.
      expect(disk.log.at(-1)!.file.endsWith(f.file), `failed in ${f.file}`).toBe(true);
      expect(existsSync(out)).toBe(false);
      expect(leftovers()).toEqual([]);
    }
    expect(hashTree(src)).toEqual(srcHashes);
  }

  it('src/model savePruned (plain weights): no folder, no temp folder, source unchanged, the model still saves', async () => {
    await fillEachFile('plain', (out) => saveModel(model, out), [/^config\.json$/, /^tokenizer\.json$/, /^onnx\/model\.onnx$/, /^pruning\.json$/]);
    disk.free = Infinity;
    expect(maxAbsDiff(await logits(model), pruned)).toBe(0);
    const good = path.join(work, 'plain-good');
    await saveModel(model, good);
    const reloaded = await AutoModelForCausalLM.from_pretrained(good, { dtype: 'fp32' });
    expect(maxAbsDiff(await logits(reloaded), pruned)).toBe(0);
  }, 60_000);

  it('public savePruned with quantize q8 and compress: the quantized and compressed files fail atomically too', async () => {
    await fillEachFile('post', (out) => savePruned(model, out, { quantize: 'q8', compress: true }), [
      /^onnx\/model\.onnx$/, /^onnx\/\.model_quantized\.onnx\.tmp-\d+$/, /^onnx\/\.model\.onnx\.tmp-\d+$/,
    ]);
    disk.free = Infinity;
    const good = path.join(work, 'post-good');
    const res = await savePruned(model, good, { quantize: 'q8', compress: true });
    expect(res!.files.map((f) => f.kind).sort()).toEqual(['compressed', 'sparse-q8'] /* q8 with compress is stored sparse too */);
    expect(readdirSync(path.join(good, 'onnx')).sort()).toEqual(['model.onnx', 'model_quantized.onnx']);
    const reloaded = await AutoModelForCausalLM.from_pretrained(good, { dtype: 'fp32' });
    expect(maxAbsDiff(await logits(reloaded), pruned)).toBe(0);
  }, 90_000);

  it('compressFolder on an existing folder with external data: the old model.onnx + model.onnx_data stay intact', async () => {
    const dir = path.join(work, 'external');
    await saveModel(model, dir, { externalData: true });
    expect(readdirSync(path.join(dir, 'onnx')).sort()).toEqual(['model.onnx', 'model.onnx_data']);
    const before = hashTree(dir);
    disk.free = 1000;
    const err = (() => {
      try {
        compressFolder(dir);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(DsaPruneError);
    expect((err as DsaPruneError).message).toMatch(/^writing .*model\.onnx failed: ENOSPC/);
    expect(hashTree(dir)).toEqual(before);
    expect((err as DsaPruneError).code).toBe('write-failed');
    expect((err as DsaPruneError).exitCode).toBe(EXIT.io);
    disk.free = Infinity;
    const reloaded = await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'fp32', use_external_data_format: true });
    expect(maxAbsDiff(await logits(reloaded), pruned)).toBe(0);
  }, 60_000);

  it('dsa-prune prune --out on a full disk: one error line, a hint, exit code 3, no output folder', async () => {
    const out = path.join(work, 'cli-out');
    disk.free = 200_000; // the copied tokenizer and config fit, model.onnx (1.3 MB) does not
    const io = memoryIo();
    const code = await main(['prune', src, '--out', out, '--method', 'magnitude', '--sparsity', '0.5'], io);
    expect(code).toBe(EXIT.io);
    const errors = io.stderrText.split('\n').filter((l) => l.startsWith('error:'));
    expect(errors).toEqual([`error: the disk filled up while saving to ${out}; nothing was written`]);
    expect(io.stderrText).toMatch(/^hint: Free disk space/m);
    expect(io.stderrText).not.toMatch(/\n\s+at /); // no stack trace
    expect(existsSync(out)).toBe(false);
    expect(leftovers()).toEqual([]);
    expect(hashTree(src)).toEqual(srcHashes);
  }, 60_000);
});
