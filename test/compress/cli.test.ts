/** `dsa-prune prune --quantize q4 --quantize q8 --compress`: files written, sizes and ratios reported match the disk. */
import { cpSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryIo } from '../../src/cli/io.js';
import { run } from '../../src/cli/commands/prune.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-compress-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('prune --quantize / --compress', () => {
  it('writes model_q4.onnx, model_quantized.onnx and a compressed model.onnx and reports their sizes', async () => {
    const src = path.join(work, 'src');
    cpSync(path.join(repoRoot, 'models/stories260k'), src, { recursive: true });
    const denseBytes = statSync(path.join(src, 'onnx/model.onnx')).size;
    const out = path.join(work, 'out');
    const io = memoryIo();
    const code = await run([src, '--out', out, '--method', 'magnitude', '--sparsity', '0.7', '--quantize', 'q4', '--quantize', 'q8', '--compress', '--json'], io);
    expect(code).toBe(0);
    const res = JSON.parse(io.stdoutText) as { denseBytes: number; files: { file: string; kind: string; bytes: number; ratio: number }[] };
    expect(res.denseBytes).toBe(denseBytes);
    expect(res.files.map((f) => f.kind).sort()).toEqual(['compressed', 'q4', 'q8']);
    for (const f of res.files) {
      const size = statSync(path.join(out, f.file)).size;
      expect(f.bytes).toBe(size);
      expect(f.ratio).toBeCloseTo(size / denseBytes, 10);
      expect(f.ratio).toBeLessThan(0.6);
    }
  }, 120_000);

  it('rejects an unknown --quantize value', async () => {
    const io = memoryIo();
    await expect(run([path.join(repoRoot, 'models/stories260k'), '--out', path.join(work, 'x'), '--quantize', 'q3'], io)).rejects.toThrow(/q3|quantize/);
  });
});
