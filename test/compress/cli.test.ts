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
    expect(res.files.map((f) => f.kind).sort()).toEqual(['compressed', 'sparse-q4', 'sparse-q8']);
    for (const f of res.files) {
      const size = statSync(path.join(out, f.file)).size;
      expect(f.bytes).toBe(size);
      expect(f.ratio).toBeCloseTo(size / denseBytes, 10);
      expect(f.ratio).toBeLessThan(0.6);
    }
  }, 120_000);

  it('eval --dtype measures the file transformers.js loads for that dtype (ppl = plain from_pretrained on the same file)', async () => {
    const out = path.join(work, 'out');
    const { readFileSync, writeFileSync } = await import('node:fs');
    const textFile = path.join(work, 'eval.txt');
    writeFileSync(textFile, readFileSync(path.join(repoRoot, 'data/tinystories/tinystories_eval.txt'), 'utf8').slice(0, 12_000));
    const { run: evalRun } = await import('../../src/cli/commands/eval.js');
    const tf = await import('@huggingface/transformers');
    const { perplexity } = await import('../../src/eval/index.js');
    const { tokenizeText } = await import('../../src/data/text.js');
    for (const [dtype, file] of [['q4', 'onnx/model_q4.onnx'], ['q8', 'onnx/model_quantized.onnx'], ['fp32', 'onnx/model.onnx']] as const) {
      const io = memoryIo();
      expect(await evalRun([out, '--dtype', dtype, '--ppl', textFile, '--seqlen', '128', '--windows', '3', '--json'], io)).toBe(0);
      const r = JSON.parse(io.stdoutText) as { ppl: number; file: string; dtype: string; bytes: number };
      expect(r.file).toBe(path.join(...file.split('/')));
      expect(r.dtype).toBe(dtype);
      expect(r.bytes).toBe(statSync(path.join(out, file)).size);
      const model = await tf.AutoModelForCausalLM.from_pretrained(out, { dtype, local_files_only: true });
      const tok = await tf.AutoTokenizer.from_pretrained(out, { local_files_only: true });
      const direct = await perplexity(model as never, tokenizeText(tok as never, readFileSync(textFile, 'utf8')), { seqlen: 128, limitWindows: 3 });
      await (model as { dispose: () => Promise<unknown> }).dispose();
      expect(r.ppl).toBe(direct.ppl);
    }
    const io = memoryIo();
    await expect(evalRun([path.join(repoRoot, 'models/stories260k'), '--dtype', 'q4', '--ppl', textFile], io)).rejects.toThrow(/no onnx\/model_q4\.onnx for dtype q4/);
  }, 180_000);

  it('--q4-embedding: 4-bit GatherBlockQuantized by default, int8 DequantizeLinear with q8 (and a smaller file with q4)', async () => {
    const { readModelFile } = await import('../../src/model/onnx.js');
    const sizes: Record<string, number> = {};
    for (const e of ['q4', 'q8']) {
      const out = path.join(work, `emb-${e}`);
      expect(await run([path.join(repoRoot, 'models/stories260k'), '--out', out, '--method', 'magnitude', '--sparsity', '0.5', '--quantize', 'q4', '--q4-embedding', e, '--json'], memoryIo())).toBe(0);
      const m = readModelFile(path.join(out, 'onnx/model_q4.onnx'));
      expect(m.graph.node.some((n) => n.op_type === 'GatherBlockQuantized')).toBe(e === 'q4');
      expect(m.graph.node.some((n) => n.op_type === 'DequantizeLinear')).toBe(e === 'q8');
      sizes[e] = statSync(path.join(out, 'onnx/model_q4.onnx')).size;
    }
    expect(sizes.q4).toBeLessThan(sizes.q8);
    await expect(run([path.join(repoRoot, 'models/stories260k'), '--out', path.join(work, 'emb-bad'), '--quantize', 'q4', '--q4-embedding', 'q2'], memoryIo())).rejects.toThrow(/q4-embedding/);
  }, 120_000);

  it('rejects an unknown --quantize value', async () => {
    const io = memoryIo();
    await expect(run([path.join(repoRoot, 'models/stories260k'), '--out', path.join(work, 'x'), '--quantize', 'q3'], io)).rejects.toThrow(/q3|quantize/);
  });
});
