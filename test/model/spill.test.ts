/**
 * Pruned weights of an external-data model are spilled to a scratch file, never held in the heap, and the result is
 * the same, bit for bit, as pruning the same model stored inline (whose write-back keeps the bytes in the graph, the
 * path before spilling existed). The committed session (built from hard-linked files after the old one was freed)
 * gives the logits of an independent onnxruntime session over the inline prune's saved folder; the saved external
 * folder holds the same weights.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelDir, pruneModel, savePruned } from '../../src/index.js';
import { writeWithExternalData } from '../../src/model/external.js';
import { buildFeeds } from '../../src/model/feeds.js';
import { externalInfo, isExternal, readModelFile } from '../../src/model/onnx.js';

const MODEL = path.resolve('models/stories260k');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-spill-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const N = 4;
const T = 32;
const ids = Int32Array.from({ length: N * T }, (_, i) => (i * 37 + 11) % 512);

/** stories260k as onnx/model.onnx + model.onnx_data (every initializer ≥ 1 KB external). */
function externalCopy(): string {
  const dir = path.join(work, 'external');
  rmSync(dir, { recursive: true, force: true });
  cpSync(MODEL, dir, { recursive: true });
  rmSync(path.join(dir, 'onnx'), { recursive: true });
  mkdirSync(path.join(dir, 'onnx'));
  writeWithExternalData(readModelFile(path.join(MODEL, 'onnx/model.onnx')), path.join(MODEL, 'onnx'), path.join(dir, 'onnx/model.onnx'),
    path.join(dir, 'onnx/model.onnx_data'), 'model.onnx_data');
  const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, 'transformers.js_config': { use_external_data_format: true } }));
  return dir;
}

async function logits(s: ort.InferenceSession, config: Record<string, unknown>): Promise<Float32Array> {
  const out = await s.run(buildFeeds(s as never, ids, N, T, { config }), ['logits']);
  return out.logits!.data as Float32Array;
}

describe('spilled write-back (external data)', () => {
  it('prunes to the same bits as the inline model, holds no pruned bytes in the graph, and the session and save agree', async () => {
    const opts = { method: 'wanda' as const, sparsity: 0.5, calibration: { ids }, nsamples: N, seqlen: T };
    const inline = await loadModelDir(MODEL);
    const ext = await loadModelDir(externalCopy());
    expect(ext.prunable.proto.graph.initializer.some(isExternal)).toBe(true);
    const ra = await pruneModel(inline.model, opts);
    const rb = await pruneModel(ext.model, opts);
    expect(rb.realizedSparsity).toBe(ra.realizedSparsity);

    // Bit for bit, every linear.
    for (const [i, l] of ext.prunable.linears.entries()) {
      const a = inline.prunable.readWeight(inline.prunable.linears[i]!);
      const b = ext.prunable.readWeight(l);
      expect(new Uint32Array(b.buffer)).toEqual(new Uint32Array(a.buffer));
    }
    // The external graph holds references into one scratch file outside the model folder, no bytes.
    const files = new Set<string>();
    for (const l of ext.prunable.linears) {
      const t = ext.prunable.proto.graph.initializer.find((x) => x.name === l.weight)!;
      expect(t.raw_data?.length ?? 0).toBe(0);
      expect(isExternal(t)).toBe(true);
      files.add(externalInfo(t).location);
    }
    expect(files.size).toBe(1);
    const scratch = [...files][0]!;
    expect(path.isAbsolute(scratch) && existsSync(scratch)).toBe(true);
    expect(scratch.startsWith(ext.prunable.source.dir)).toBe(false);

    // Saved: the inline prune's folder, read by a plain onnxruntime session, is the reference for both.
    const outA = path.join(work, 'saved-inline');
    const outB = path.join(work, 'saved-external');
    await savePruned(inline.model, outA);
    await savePruned(ext.model, outB);
    expect(readdir(outB)).toEqual(['model.onnx', 'model.onnx_data']);
    const config = ext.prunable.config;
    const ref = await ort.InferenceSession.create(path.join(outA, 'onnx/model.onnx'), { logSeverityLevel: 3 });
    const savedB = await ort.InferenceSession.create(path.join(outB, 'onnx/model.onnx'), { logSeverityLevel: 3 });
    const expected = await logits(ref, config);
    expect(await logits(savedB, config)).toEqual(expected);
    // The committed in-place session of the external model (the old one was released before it was built).
    expect(await logits(ext.model.sessions.model, config)).toEqual(expected);
    const dense = await loadModelDir(MODEL);
    expect(await logits(dense.model.sessions.model, config)).not.toEqual(expected);
    await Promise.all([ref.release(), savedB.release()]);
  }, 120_000);
});

describe('scratch file space', () => {
  it('prune → restore → prune again reuses the regions (the file stops growing); an aborted prune restores every bit', async () => {
    const opts = { method: 'wanda' as const, sparsity: 0.5, calibration: { ids }, nsamples: N, seqlen: T };
    const ext = await loadModelDir(externalCopy2());
    const pm = ext.prunable;
    const originals = pm.linears.map((l) => pm.readWeight(l));
    const linearBytes = pm.linears.reduce((a, l) => a + l.dIn * l.dOut * 4, 0);
    const scratchOf = (): string => externalInfo(pm.proto.graph.initializer.find((t) => t.name === pm.linears[0]!.weight)!).location;
    const sizes: number[] = [];
    let pruned: Float32Array[] = [];
    for (let round = 0; round < 3; round++) {
      await pruneModel(ext.model, { ...opts, sparsity: round === 1 ? 0.6 : 0.5 });
      if (round === 0) pruned = pm.linears.map((l) => pm.readWeight(l));
      if (round === 2) pm.linears.forEach((l, i) => expect(pm.readWeight(l)).toEqual(pruned[i])); // same as round 0
      pm.linears.forEach((l, i) => pm.writeWeight(l, originals[i]!)); // what the faithful search does
      await pm.commit();
      sizes.push(statSync(scratchOf()).size);
    }
    // Two regions per linear (pruned, restored), 64-byte aligned: no growth after the first round.
    expect(sizes[0]).toBeLessThanOrEqual(2 * linearBytes + 64 * 2 * pm.linears.length);
    expect(sizes[2]).toBe(sizes[0]);
    pm.linears.forEach((l, i) => expect(pm.readWeight(l)).toEqual(originals[i]));

    // An abort after some blocks were written: every weight back, bit for bit, although regions are reused.
    const ac = new AbortController();
    await expect(pruneModel(ext.model, { ...opts, signal: ac.signal, onProgress: (p) => { if (p.phase === 'output' && p.block === 2) ac.abort(); } }))
      .rejects.toMatchObject({ code: 'aborted' });
    pm.linears.forEach((l, i) => expect(new Uint32Array(pm.readWeight(l).buffer)).toEqual(new Uint32Array(originals[i]!.buffer)));
    expect(statSync(scratchOf()).size).toBe(sizes[0]);
  }, 180_000);
});

function externalCopy2(): string {
  const dir = externalCopy();
  const other = path.join(work, 'external-2');
  rmSync(other, { recursive: true, force: true });
  cpSync(dir, other, { recursive: true });
  return other;
}

function readdir(out: string): string[] {
  return readdirSync(path.join(out, 'onnx')).sort();
}
