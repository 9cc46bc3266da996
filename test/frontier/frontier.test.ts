/**
 * `dsa-prune frontier` on stories260k (small grid, magnitude so no calibration): every point's bytes are its file on
 * disk, its ppl is what plain from_pretrained on that file gives, sparse q4 equals q4 (same codes), the Pareto flags
 * match a naive recomputation, the page and JSON are written. A Wanda grid with GPTQ points: same bytes as q4, other
 * codes, pruned weights exactly 0 (decoded here), sparse GPTQ = GPTQ ppl. Plus paretoFront / recommend on hand-made
 * points.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryIo } from '../../src/cli/io.js';
import { run } from '../../src/cli/commands/frontier.js';
import { frontier, paretoFront, recommend, type FrontierPoint, type FrontierResult } from '../../src/frontier.js';
import { readModelFile, tensorBytes, tensorToFloat32 } from '../../src/model/onnx.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-frontier-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const pt = (name: string, sparsity: number, format: string, bytes: number, ppl: number): FrontierPoint => ({
  name, sparsity, format, dtype: format, dir: '', file: '', bytes, ppl, ppls: [{ file: '', ppl }], tokensPerSecond: 0, loadMs: 0, pareto: false,
});

describe('paretoFront / recommend', () => {
  it('marks exactly the non-dominated points; recommends the smallest within tolerance', () => {
    const pts = [pt('dense fp32', 0, 'fp32', 100, 10), pt('dense q4', 0, 'q4', 20, 10.2), pt('50% q4', 0.5, 'q4', 20, 12), pt('50% sparse q4', 0.5, 'sparse-q4', 15, 12), pt('70% sparse q4', 0.7, 'sparse-q4', 12, 30), pt('dup', 0.7, 'q4', 12, 30)];
    expect(paretoFront(pts)).toEqual([true, true, false, true, true, true]);
    expect(recommend(pts, 0.05).name).toBe('dense q4');
    expect(recommend(pts, 0.05).sentence).toMatch(/^Ship dense q4 \(0\.00 MB, ppl 10\.20, \+2\.0 % vs dense fp32 10\.00\): pruning does not pay/);
    expect(recommend(pts, 0.25).name).toBe('50% sparse q4');
  });
});

describe('dsa-prune frontier (stories260k)', () => {
  it('writes the grid, JSON and page; sizes and ppl are re-measurable', async () => {
    const text = path.join(work, 'eval.txt');
    writeFileSync(text, readFileSync(path.join(repoRoot, 'data/tinystories/tinystories_eval.txt'), 'utf8').slice(0, 8000));
    const out = path.join(work, 'fr');
    const io = memoryIo();
    const code = await run([path.join(repoRoot, 'models/stories260k'), '--method', 'magnitude', '--sparsities', '0,0.6', '--ppl', text, '--ppl-seqlen', '128', '--windows', '2', '--out', out, '--json'], io);
    expect(code).toBe(0);
    const r = JSON.parse(io.stdoutText) as FrontierResult & { page: string };
    expect(r.points.map((p) => p.name).sort()).toEqual(['60% q4', '60% sparse q4', 'dense fp32', 'dense q4', 'dense q8']);
    for (const p of r.points) expect(p.bytes).toBe(statSync(path.join(out, p.dir, p.file)).size);
    const by = new Map(r.points.map((p) => [p.name, p]));
    expect(by.get('60% sparse q4')!.bytes).toBeLessThan(by.get('60% q4')!.bytes);
    expect(by.get('60% sparse q4')!.ppl).toBe(by.get('60% q4')!.ppl); // same codes
    expect(by.get('dense q4')!.bytes).toBe(by.get('60% q4')!.bytes); // plain q4 does not shrink with pruning
    // Pareto flags = naive recomputation.
    for (const p of r.points) {
      const dominated = r.points.some((q) => q !== p && q.bytes <= p.bytes && q.ppl <= p.ppl && (q.bytes < p.bytes || q.ppl < p.ppl));
      expect(p.pareto).toBe(!dominated);
    }
    // ppl of one point again, by plain transformers.js on the file.
    const tf = await import('@huggingface/transformers');
    const { perplexity } = await import('../../src/eval/index.js');
    const { tokenizeText } = await import('../../src/data/text.js');
    const sq = by.get('60% sparse q4')!;
    const model = await tf.AutoModelForCausalLM.from_pretrained(path.join(out, sq.dir), { dtype: 'q4', local_files_only: true });
    const tok = await tf.AutoTokenizer.from_pretrained(path.join(out, sq.dir), { local_files_only: true });
    const again = await perplexity(model as never, tokenizeText(tok as never, readFileSync(text, 'utf8')), { seqlen: 128, limitWindows: 2 });
    await (model as { dispose: () => Promise<unknown> }).dispose();
    expect(again.ppl).toBe(sq.ppl);
    // JSON on disk and the page.
    expect(JSON.parse(readFileSync(path.join(out, 'frontier.json'), 'utf8')).points.length).toBe(5);
    expect(existsSync(r.page)).toBe(true);
    const html = readFileSync(r.page, 'utf8');
    expect(html).toContain('<svg');
    expect(html).toContain(r.recommendation.sentence.replace(/&/g, '&amp;').slice(0, 40));
    expect(r.recommendation.sentence).toMatch(/^Ship /);
  }, 300_000);

  it('bad input: no --ppl, a bad sparsity list, wanda without calibration', async () => {
    const m = path.join(repoRoot, 'models/stories260k');
    await expect(run([m, '--out', path.join(work, 'x')], memoryIo())).rejects.toThrow(/--ppl/);
    await expect(run([m, '--ppl', 'x.txt', '--sparsities', '0,a'], memoryIo())).rejects.toThrow(/sparsities/);
    const t = path.join(work, 't.txt');
    writeFileSync(t, 'hello');
    await expect(run([m, '--ppl', t, '--sparsities', '0,0.5', '--out', path.join(work, 'y')], memoryIo())).rejects.toThrow(/calibration/);
    expect(existsSync(path.join(work, 'y'))).toBe(false);
  });
});

describe('dsa-prune frontier with structured variants (stories260k)', () => {
  it('--structured and --structured-search: q4 files of the smaller model, their widths in the file, every text measured', async () => {
    const m = path.join(repoRoot, 'models/stories260k');
    const full = readFileSync(path.join(repoRoot, 'data/tinystories/tinystories_eval.txt'), 'utf8');
    const t1 = path.join(work, 'eval-s1.txt');
    const t2 = path.join(work, 'eval-s2.txt');
    writeFileSync(t1, full.slice(0, 6000));
    writeFileSync(t2, full.slice(6000, 12000));
    // A hand-made structured search result for this model (blocks have equal parameters: mean share 0.2).
    const { loadModelDir } = await import('../../src/model/index.js');
    const { prunable } = await loadModelDir(m, { threads: 1 });
    const res = path.join(work, 'ss.json');
    const shares = [0.1, 0.3, 0.2, 0.15, 0.25];
    writeFileSync(res, JSON.stringify({ method: 'structured', structured: { target: 'ffn', score: 'magnitude' }, sparsity: 0.2, spec: { modelHash: prunable.modelHash(), method: 'structured', structured: { target: 'ffn', score: 'magnitude' } }, best: { blockSparsity: shares } }));
    const out = path.join(work, 'frs');
    const io = memoryIo();
    expect(await run([m, '--method', 'magnitude', '--sparsities', '0', '--structured', '0.2,0.3', '--structured-score', 'magnitude', '--structured-search', `@${res}`,
      '--ppl', t1, '--ppl', t2, '--ppl-seqlen', '128', '--windows', '2', '--out', out, '--json'], io)).toBe(0);
    const r = JSON.parse(io.stdoutText) as FrontierResult;
    const by = new Map(r.points.map((p) => [p.name, p]));
    expect([...by.keys()].sort()).toEqual(['dense fp32', 'dense q4', 'dense q8', 'ffn 20% q4', 'ffn 20% searched q4', 'ffn 30% q4']);
    expect(r.perplexity.files).toEqual([t1, t2]);
    const dq4 = by.get('dense q4')!;
    const tf = await import('@huggingface/transformers');
    const { perplexity } = await import('../../src/eval/index.js');
    const { tokenizeText } = await import('../../src/data/text.js');
    for (const name of ['ffn 20% q4', 'ffn 20% searched q4', 'ffn 30% q4']) {
      const p = by.get(name)!;
      expect(p.format).toBe('structured-q4');
      expect(p.bytes).toBe(statSync(path.join(out, p.dir, p.file)).size);
      expect(p.bytes).toBeLessThan(dq4.bytes); // channels removed: the q4 file itself is smaller
      // The widths recorded are the down projections' K in the q4 file (MatMulNBits), block by block.
      const q4 = readModelFile(path.join(out, p.dir, 'onnx/model_q4.onnx'));
      const ks = q4.graph.node.filter((n) => n.op_type === 'MatMulNBits' && /mlp.*down|w2/.test(n.name ?? n.output[0]!)).map((n) => Number(n.attribute.find((a) => a.name === 'K')!.i));
      expect(ks).toEqual(p.structured!.ffnWidths);
      // Both texts, re-measured by plain transformers.js on the file.
      const model = await tf.AutoModelForCausalLM.from_pretrained(path.join(out, p.dir), { dtype: 'q4', local_files_only: true });
      const tok = await tf.AutoTokenizer.from_pretrained(path.join(out, p.dir), { local_files_only: true });
      for (const [k, t] of [t1, t2].entries()) {
        const again = await perplexity(model as never, tokenizeText(tok as never, readFileSync(t, 'utf8')), { seqlen: 128, limitWindows: 2 });
        expect(p.ppls[k]).toEqual({ file: t, ppl: again.ppl });
      }
      await (model as { dispose: () => Promise<unknown> }).dispose();
      expect(p.ppl).toBe(p.ppls[0]!.ppl);
      expect(p.tokensPerSecond).toBeGreaterThan(0);
    }
    const u = by.get('ffn 20% q4')!.structured!;
    const sr = by.get('ffn 20% searched q4')!.structured!;
    expect(u.score).toBe('magnitude');
    expect(sr.allocator).toBe('search');
    // Same budget (exact to one channel over the model), other widths per block.
    const sum = (w: number[]) => w.reduce((a, b) => a + b, 0);
    expect(sum(sr.ffnWidths)).toBe(sum(u.ffnWidths));
    expect(Math.max(...u.ffnWidths) - Math.min(...u.ffnWidths)).toBeLessThanOrEqual(1);
    expect(new Set(sr.ffnWidths).size).toBeGreaterThan(2);
    expect(sum(by.get('ffn 30% q4')!.structured!.ffnWidths)).toBeLessThan(sum(u.ffnWidths));
    // The page has a column per text.
    expect(readFileSync(path.join(out, 'frontier.html'), 'utf8')).toContain('ppl eval-s2.txt');
  }, 300_000);

  it('bad structured input: a bad list, a result that is not a structured search, wanda-sp without calibration; nothing written', async () => {
    const m = path.join(repoRoot, 'models/stories260k');
    const t = path.join(work, 't3.txt');
    writeFileSync(t, 'hello');
    await expect(run([m, '--ppl', t, '--method', 'magnitude', '--sparsities', '0', '--structured', '0.2,x', '--out', path.join(work, 'z')], memoryIo())).rejects.toThrow(/--structured 0.2,x/);
    const u = path.join(work, 'u.json');
    writeFileSync(u, JSON.stringify({ best: { expression: 'W:(NO_OP)-(MEAN)-(NO_OP)', lambda: 0.1 }, method: 'wanda' }));
    await expect(run([m, '--ppl', t, '--method', 'magnitude', '--sparsities', '0', '--structured-search', `@${u}`, '--out', path.join(work, 'z')], memoryIo())).rejects.toThrow(/not a structured search result/);
    await expect(run([m, '--ppl', t, '--method', 'magnitude', '--sparsities', '0', '--structured', '0.2', '--out', path.join(work, 'z')], memoryIo())).rejects.toThrow(/structured wanda-sp needs calibration/);
    await expect(run([m, '--ppl', t, '--method', 'magnitude', '--sparsities', '0', '--structured', '1.2', '--structured-score', 'magnitude', '--out', path.join(work, 'z')], memoryIo())).rejects.toThrow(/outside \(0, 1\)/);
    expect(existsSync(path.join(work, 'z'))).toBe(false);
  });
});

describe('dsa-prune frontier with GPTQ points (stories260k, Wanda)', () => {
  const calib = path.join(repoRoot, 'data/tinystories/tinystories_calibration.txt');
  const nib = (b: Uint8Array, i: number): number => (i & 1 ? b[i >> 1] >> 4 : b[i >> 1] & 15);

  it('GPTQ q4 and sparse GPTQ q4 per sparsity: same bytes as q4, other codes, pruned weights exactly 0', async () => {
    const text = path.join(work, 'eval-g.txt');
    writeFileSync(text, readFileSync(path.join(repoRoot, 'data/tinystories/tinystories_eval.txt'), 'utf8').slice(0, 6000));
    const out = path.join(work, 'frg');
    const io = memoryIo();
    const code = await run([path.join(repoRoot, 'models/stories260k'), '--calibration', calib, '--nsamples', '4', '--seqlen', '64', '--sparsities', '0,0.5', '--ppl', text, '--ppl-seqlen', '128', '--windows', '2', '--out', out, '--json'], io);
    expect(code).toBe(0);
    const r = JSON.parse(io.stdoutText) as FrontierResult;
    const by = new Map(r.points.map((p) => [p.name, p]));
    expect([...by.keys()].sort()).toEqual(['50% GPTQ q4', '50% q4', '50% sparse GPTQ q4', '50% sparse q4', 'dense fp32', 'dense q4', 'dense q8']);
    const g = by.get('50% GPTQ q4')!;
    const rtn = by.get('50% q4')!;
    expect(g.format).toBe('gptq-q4');
    expect(g.bytes).toBe(rtn.bytes); // same layout, same size
    expect(by.get('50% sparse GPTQ q4')!.ppl).toBe(g.ppl); // same codes
    expect(by.get('50% sparse GPTQ q4')!.bytes).toBeLessThan(g.bytes);
    const manifest = JSON.parse(readFileSync(path.join(out, g.dir, 'pruning.json'), 'utf8'));
    expect(manifest.quantization.q4.method).toBe('gptq');
    expect(manifest.quantization.q4.calibration.reused).toBe(true); // the windows pruning used
    // Decode every MatMulNBits of the GPTQ file here: 0 wherever the pruned fp32 weight is 0; codes differ from RTN.
    const fp = readModelFile(path.join(out, rtn.dir, 'onnx/model.onnx'));
    const fpInit = new Map(fp.graph.initializer.map((t) => [t.name!, t]));
    const fpW = new Map(fp.graph.node.filter((n) => n.op_type === 'MatMul' && fpInit.has(n.input[1])).map((n) => [n.output[0], tensorToFloat32(fpInit.get(n.input[1])!)]));
    const gq = readModelFile(path.join(out, g.dir, 'onnx/model_q4.onnx'));
    const rq = readModelFile(path.join(out, rtn.dir, 'onnx/model_q4.onnx'));
    const inits = (m: typeof gq) => new Map(m.graph.initializer.map((t) => [t.name!, t]));
    const gi = inits(gq);
    const ri = inits(rq);
    let zeros = 0;
    let wrong = 0;
    let differ = 0;
    for (const n of gq.graph.node.filter((x) => x.op_type === 'MatMulNBits')) {
      const w = fpW.get(n.output[0]);
      if (!w) continue;
      const K = Number(n.attribute.find((a) => a.name === 'K')!.i);
      const N = Number(n.attribute.find((a) => a.name === 'N')!.i);
      const nb = Math.ceil(K / 32);
      const B = tensorBytes(gi.get(n.input[1])!);
      const S = tensorToFloat32(gi.get(n.input[2])!);
      const Z = tensorBytes(gi.get(n.input[3])!);
      const rn = rq.graph.node.find((x) => x.op_type === 'MatMulNBits' && x.output[0] === n.output[0])!;
      if (!Buffer.from(B).equals(Buffer.from(tensorBytes(ri.get(rn.input[1])!)))) differ++;
      for (let r = 0; r < N; r++) {
        for (let k = 0; k < K; k++) {
          if (w[k * N + r] !== 0) continue;
          zeros++;
          const b = Math.floor(k / 32);
          const v = (nib(B, (r * nb + b) * 32 + (k % 32)) - nib(Z, r * 2 * Math.ceil(nb / 2) + b)) * S[r * nb + b];
          if (v !== 0) wrong++;
        }
      }
    }
    expect(zeros).toBeGreaterThan(10_000);
    expect(wrong).toBe(0);
    expect(differ).toBeGreaterThan(0);
  }, 600_000);

  it('bad input: GPTQ points asked for without calibration text; nothing written', async () => {
    const out = path.join(work, 'frg-bad');
    const text = path.join(work, 't2.txt');
    writeFileSync(text, 'hello');
    await expect(frontier(path.join(repoRoot, 'models/stories260k'), { method: 'magnitude', sparsities: [0, 0.5], ppl: text, out, gptq: true })).rejects.toThrow(/GPTQ points need calibration/);
    expect(existsSync(out)).toBe(false);
  });
});
