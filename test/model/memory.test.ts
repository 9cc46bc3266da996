/**
 * Memory: the estimate made before any work, the refusal (API maxMemoryGB, CLI --max-memory) with nothing changed
 * and nothing written, and calibration sized by nsamples × seqlen whatever the model's context length.
 * On the stories260k model shipped in the repository (fast); the estimate's terms are recomputed by hand here.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelDir, planPrune, pruneModel } from '../../src/index.js';
import { memoryIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { DsaPruneError } from '../../src/errors.js';
import { checkMemory, estimatePeakMemory, RUNTIME_BYTES, solverBytes, SPARSEGPT_SLACK } from '../../src/model/memory.js';

const MODEL = path.resolve('models/stories260k');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-memory-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const ids = Int32Array.from({ length: 4 * 32 }, (_, i) => (i * 31 + 5) % 512);
/** Highest peak RSS measured at SmolLM2-135M, 32 × 512 (docs/scale.md, "The peak"): Wanda after the session-7 fix; SparseGPT session 6 (its highest, a full run). */
const MEASURED_PEAK_MIB = { wanda: 1108, sparsegpt: 1260 };

describe('memory', () => {
  it('estimate: runtime + weights at rest + max(session build, calibration working set) (hand-computed)', () => {
    const base = { weightBytes: 1000, hidden: 64, nsamples: 128, seqlen: 512, heads: 4, ffn: 172, batch: 8, blockBytes: 300, gramDim: 172 };
    const e = estimatePeakMemory(base);
    const activations = 8 * 512 * (2 * 4 * 512 + 3 * 172) * 4;
    // SparseGPT: the Gram matrix in float64 + float32; Hinv n², Gemm buffers (n²/2 + 256n float64, r·128 + 128n + 2rn
    // float32), sweep buffers 21 · r · 128 (n = r = 172)
    const solver = 8 * 172 * 172 + 8 * (172 * 172 / 2 + 256 * 172) + 4 * (172 * 128 + 128 * 172 + 2 * 172 * 172) + 21 * 172 * 128;
    expect(solverBytes(172, 172)).toBe(solver);
    const slack = Math.round(SPARSEGPT_SLACK.fixed + SPARSEGPT_SLACK.factor * (172 * 172 * 12 + solver));
    const working = 2 * 128 * 512 * 64 * 4 + activations + 900 + 172 * 172 * 12 + solver + slack; // 900: 3 × blockBytes
    expect(e.terms).toEqual({
      runtime: RUNTIME_BYTES, weights: 1000, sessionBuild: 180, hiddenStates: 2 * 128 * 512 * 64 * 4, activations, blockWorkingSet: 900,
      gram: 172 * 172 * 12, solver, slack, blockSession: 0,
    });
    // blockWeights 'initializers': one block session's copy of its weights (1.45 × their stored bytes) on top.
    const init = estimatePeakMemory({ ...base, blockSessionWeightBytes: 300 });
    expect(init.terms.blockSession).toBe(Math.round(1.45 * 300));
    expect(init.peakBytes - e.peakBytes).toBe(Math.round(1.45 * 300));
    // q/k/v and gate/up share an input: a SmolLM2 block has four Gram matrices (576 × 3, 1536); the solver is sized
    // by the widest input and output
    const smol = estimatePeakMemory({ ...base, gramDim: 1536, gramDims: [576, 576, 576, 1536], maxDOut: 1536 });
    expect(smol.terms.gram).toBe((3 * 576 * 576 + 1536 * 1536) * 12);
    expect(smol.terms.solver).toBe(solverBytes(1536, 1536));
    // Wanda: neither term
    expect(estimatePeakMemory({ ...base, gramDim: 0 }).terms).toMatchObject({ gram: 0, solver: 0, slack: 0 });
    expect(e.peakBytes).toBe(RUNTIME_BYTES + 1000 + working);
    // Big weights, no calibration: the session build is the peak. Inline weights: the graph's copy too.
    expect(estimatePeakMemory({ ...base, weightBytes: 2 ** 30, nsamples: 0, gramDim: 0 }).peakBytes).toBe(RUNTIME_BYTES + 2 ** 30 + Math.round(0.18 * 2 ** 30));
    expect(estimatePeakMemory({ ...base, external: false }).terms).toMatchObject({ weights: 2000, sessionBuild: 2000 });
    // Fewer samples than the batch: one run holds nsamples sequences; no calibration: no activations.
    expect(estimatePeakMemory({ ...base, nsamples: 2 }).terms.activations).toBe(2 * 512 * (2 * 4 * 512 + 3 * 172) * 4);
    expect(estimatePeakMemory({ ...base, nsamples: 0 }).terms.activations).toBe(0);
    // The refusal names the dominant term's flag.
    expect(() => checkMemory(e, 0.001)).toThrow(`needs about ${(e.peakBytes / 2 ** 30).toFixed(2)} GB, --max-memory allows 0.00 GB; nothing was changed`);
    expect((e.peakBytes / 2 ** 30).toFixed(2)).toBe('0.39');
    try {
      checkMemory(e, 0.001);
    } catch (err) {
      expect((err as DsaPruneError).hint).toMatch(/lower --batch-size or --seqlen/);
    }
    try {
      checkMemory(estimatePeakMemory({ ...base, heads: 0, ffn: 0 }), 0.001);
    } catch (err) {
      expect((err as DsaPruneError).hint).toMatch(/lower --nsamples or --seqlen/);
    }
    try {
      checkMemory(estimatePeakMemory({ ...base, weightBytes: 2 ** 31 }), 0.001);
    } catch (err) {
      expect((err as DsaPruneError).hint).toMatch(/the weights alone take 2\.00 GB/);
    }
    expect(() => checkMemory(e, 1)).not.toThrow();
  });

  it('estimate at the SmolLM2-135M shape (32 × 512) is not below the parts measured there (docs/scale.md, session 7)', () => {
    // What memoryOf (src/prune.ts) passes for the fixture: 651306240 weight bytes in external data, hidden 576, 9 heads,
    // ffn 1536, one block's linears 3 538 944 floats; SparseGPT: inputs 576 (q/k/v), 576 (o), 576 (gate/up), 1536.
    const MiB = 2 ** 20;
    const smol = { weightBytes: 651306240, hidden: 576, heads: 9, ffn: 1536, batch: 8, nsamples: 32, seqlen: 512, blockBytes: 3538944 * 4 };
    const wanda = estimatePeakMemory({ ...smol, gramDim: 0 });
    const sgpt = estimatePeakMemory({ ...smol, gramDim: 1536, gramDims: [576, 576, 576, 1536], maxDOut: 1536 });
    // Measured (bench/scale.bench.ts --trace): RSS after loading 876 MiB, high-water mark during the load 984 MiB.
    expect((wanda.terms.runtime + wanda.terms.weights) / MiB).toBeGreaterThanOrEqual(876);
    expect((wanda.terms.runtime + wanda.terms.weights + wanda.terms.sessionBuild) / MiB).toBeGreaterThanOrEqual(984);
    // Measured peaks with the weight feeds released after each pass (highest of the runs in docs/scale.md).
    expect(wanda.peakBytes / MiB).toBeGreaterThanOrEqual(MEASURED_PEAK_MIB.wanda);
    expect(sgpt.peakBytes / MiB).toBeGreaterThanOrEqual(MEASURED_PEAK_MIB.sparsegpt);
  });

  it('API: maxMemoryGB below the estimate refuses before any work, weights unchanged', async () => {
    const { model, prunable } = await loadModelDir(MODEL);
    const before = prunable.linears.map((l) => prunable.readWeight(l));
    const opts = { method: 'sparsegpt' as const, sparsity: 0.5, calibration: { ids }, nsamples: 4, seqlen: 32 };
    const plan = await planPrune(model, opts);
    await expect(pruneModel(model, { ...opts, maxMemoryGB: (plan.memory.peakBytes * 0.5) / 2 ** 30 })).rejects.toThrow(/not enough memory: this prune needs about/);
    prunable.linears.forEach((l, i) => expect(prunable.readWeight(l)).toEqual(before[i]));
    // Just above the estimate it runs.
    const r = await pruneModel(model, { ...opts, maxMemoryGB: (plan.memory.peakBytes * 1.01) / 2 ** 30 });
    expect(r.realizedSparsity).toBeCloseTo(0.5, 6);
  }, 120_000);

  it('CLI: --max-memory too small → one clear line, nothing written', async () => {
    const out = path.join(work, 'refused');
    const calib = path.join(work, 'c.txt');
    writeFileSync(calib, 'Once upon a time there was a cat. '.repeat(50));
    const io = memoryIo();
    const code = await main(['prune', MODEL, '--out', out, '--calibration', calib, '--nsamples', '4', '--seqlen', '32', '--max-memory', '0.0001', '--quiet'], io);
    expect(code).not.toBe(0);
    const lines = io.stderrText.split('\n').filter((l) => l.startsWith('error:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/not enough memory: this prune needs about [\d.]+ GB, --max-memory allows 0\.00 GB/);
    expect(io.stderrText).toMatch(/--max-memory <GB> overrides/);
    expect(existsSync(out)).toBe(false);
  }, 120_000);

  it('calibration is sized by nsamples × seqlen, not by the context length (128k context = same plan, same result)', async () => {
    const long = path.join(work, 'long-context');
    cpSync(MODEL, long, { recursive: true });
    const cfg = JSON.parse(readFileSync(path.join(long, 'config.json'), 'utf8'));
    writeFileSync(path.join(long, 'config.json'), JSON.stringify({ ...cfg, max_position_embeddings: 131072 }));
    const opts = { method: 'wanda' as const, sparsity: 0.5, calibration: { ids }, nsamples: 4, seqlen: 32 };
    const a = await loadModelDir(MODEL);
    const b = await loadModelDir(long);
    const pa = await planPrune(a.model, opts);
    const pb = await planPrune(b.model, opts);
    expect(pb.memory.peakBytes).toBe(pa.memory.peakBytes);
    const hidden = 64;
    expect(pb.memory.peakBytes - RUNTIME_BYTES).toBeLessThan(2 * 131072 * hidden * 4); // what context-sized buffers alone would take
    const ra = await pruneModel(a.model, opts);
    const rb = await pruneModel(b.model, opts);
    expect(rb.calibration).toMatchObject({ nsamples: 4, seqlen: 32, tokens: ra.calibration!.tokens });
    b.prunable.linears.forEach((l, i) => expect(b.prunable.readWeight(l)).toEqual(a.prunable.readWeight(a.prunable.linears[i]!)));
  }, 120_000);
});
