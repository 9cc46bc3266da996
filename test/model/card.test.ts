/**
 * savePruned's model card (README.md in the hub's conventions) and the rebuilt dtype variants, on the SmolLM2-135M
 * layout fixture at 2 blocks (onnx/model.onnx + model.onnx_data, onnx/model_fp16.onnx, a README with a license).
 * Checked against the prune report and against the source files read independently (raw bytes).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelDir, pruneModel, savePruned } from '../../src/index.js';
import { readFrontMatter } from '../../src/model/card.js';
import { decodeModel, type TensorProto } from '../../src/model/onnx.js';
import { buildCommunityModel, type CommunityModel } from '../fixtures/community.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-card-'));
let built: CommunityModel;
beforeAll(() => {
  built = buildCommunityModel(path.join(work, 'src'), 'smollm2-135m', { blocks: 2 });
}, 120_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

const ids = Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 104729 + 7) % 49152);

/** Raw bytes of every linear weight of an ONNX file (inline or in its external data file), by weight name. */
function rawWeights(file: string, names: string[]): Map<string, { type: number; bytes: Buffer }> {
  const m = decodeModel(new Uint8Array(readFileSync(file)));
  const out = new Map<string, { type: number; bytes: Buffer }>();
  const files = new Map<string, Buffer>();
  for (const t of m.graph.initializer as TensorProto[]) {
    if (!names.includes(t.name!)) continue;
    if (t.external_data?.length) {
      const kv = Object.fromEntries(t.external_data.map((e) => [e.key, e.value]));
      const f = path.join(path.dirname(file), kv.location!);
      if (!files.has(f)) files.set(f, readFileSync(f));
      const data = files.get(f)!;
      out.set(t.name!, { type: t.data_type!, bytes: data.subarray(Number(kv.offset), Number(kv.offset) + Number(kv.length)) });
    } else out.set(t.name!, { type: t.data_type!, bytes: Buffer.from(t.raw_data!) });
  }
  return out;
}

describe('model card and dtype variants', () => {
  it('fp32 source: README front matter + body from the report; model_fp16.onnx rebuilt with the same zeros', async () => {
    const { model } = await loadModelDir(built.dir, { dtype: 'fp32' });
    const report = await pruneModel(model, { method: 'wanda', sparsity: 0.5, calibration: { ids }, nsamples: 2, seqlen: 16 });
    const out = path.join(work, 'out32');
    await savePruned(model, out, { manifest: { perplexity: { dense: 41.5, pruned: 57.25 } } });
    const text = readFileSync(path.join(out, 'README.md'), 'utf8');
    const fm = readFrontMatter(text);
    expect(fm).toMatchObject({ base_model: 'HuggingFaceTB/SmolLM2-135M', library_name: 'transformers.js', pipeline_tag: 'text-generation', license: 'apache-2.0' });
    expect(fm.tags).toEqual(expect.arrayContaining(['pruned', 'dsa-prune', 'wanda', 'sparsity-50']));
    expect(text).toContain(`sha256 \`${report.calibration!.sha256}\``);
    expect(text).toContain('| perplexity (pruned) | 57.250 |');
    expect(text).toContain(`| realised sparsity | ${(report.realizedSparsity * 100).toFixed(3)} %`);
    for (let b = 0; b < 2; b++) expect(text).toContain(`| ${b} | ${(report.targetBlockSparsity[b]! * 100).toFixed(2)} % | ${(report.blockSparsity[b]! * 100).toFixed(2)} % |`);

    // Variants: every linear of model_fp16.onnx is zero exactly where the pruned fp32 weight is, and elsewhere
    // bit-equal to the source's fp16 file (Wanda keeps the surviving weights as they were).
    const names = built.linears.map((l) => l.weight);
    const p32 = rawWeights(path.join(out, 'onnx/model.onnx'), names);
    const p16 = rawWeights(path.join(out, 'onnx/model_fp16.onnx'), names);
    const s16 = rawWeights(path.join(built.dir, 'onnx/model_fp16.onnx'), names);
    let zeros = 0, bad = 0;
    for (const n of names) {
      const a = p32.get(n)!, b = p16.get(n)!, s = s16.get(n)!;
      expect(b.type).toBe(10); // FLOAT16 on disk
      for (let i = 0; i < a.bytes.length / 4; i++) {
        const z = a.bytes.readFloatLE(i * 4) === 0;
        const h = b.bytes.readUInt16LE(i * 2);
        if (z) zeros++;
        if (z ? (h & 0x7fff) !== 0 : h !== s.bytes.readUInt16LE(i * 2)) bad++;
      }
    }
    expect(zeros).toBeGreaterThan(0);
    expect(bad).toBe(0);
    const cfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(cfg['transformers.js_config'].use_external_data_format).toEqual({ 'model.onnx': 1 });
    // transformers.js loads the rebuilt fp16 variant and dsa-prune reads the same sparsity from it.
    const again = await loadModelDir(out, { dtype: 'fp16' });
    const pj = JSON.parse(readFileSync(path.join(out, 'pruning.json'), 'utf8'));
    expect(pj.variants).toEqual({ written: ['model_fp16.onnx'], skipped: [] });
    for (const l of again.prunable.linears) {
      const w = again.prunable.readInitializer(l.weight);
      const z = w.reduce((c, x) => c + (x === 0 ? 1 : 0), 0) / w.length;
      expect(z).toBeCloseTo(pj.linears.find((x: { name: string }) => x.name === l.name).sparsity, 6);
    }
  }, 240_000);

  it('fp16 source stays fp16 on disk; model.onnx rebuilt keeping the source fp32 values that survive', async () => {
    const { model } = await loadModelDir(built.dir, { dtype: 'fp16' });
    await pruneModel(model, { method: 'wanda', sparsity: 0.5, calibration: { ids }, nsamples: 2, seqlen: 16 });
    const out = path.join(work, 'out16');
    await savePruned(model, out);
    const names = built.linears.map((l) => l.weight);
    const p16 = rawWeights(path.join(out, 'onnx/model_fp16.onnx'), names);
    const p32 = rawWeights(path.join(out, 'onnx/model.onnx'), names);
    const s32 = rawWeights(path.join(built.dir, 'onnx/model.onnx'), names);
    let zeros = 0, bad = 0;
    for (const n of names) {
      const h = p16.get(n)!, f = p32.get(n)!, s = s32.get(n)!;
      expect(h.type).toBe(10);
      expect(f.type).toBe(1);
      for (let i = 0; i < h.bytes.length / 2; i++) {
        const z = (h.bytes.readUInt16LE(i * 2) & 0x7fff) === 0;
        if (z) zeros++;
        if (f.bytes.readFloatLE(i * 4) !== (z ? 0 : s.bytes.readFloatLE(i * 4))) bad++;
      }
    }
    expect(zeros).toBeGreaterThan(0);
    expect(bad).toBe(0);
    const fm = readFrontMatter(readFileSync(path.join(out, 'README.md'), 'utf8'));
    expect(fm.license).toBe('apache-2.0');
  }, 240_000);
});
