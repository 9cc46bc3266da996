/**
 * `search --method structured` (per-block FFN widths) on stories260k: the fast fitness against the faithful structured
 * prune (channels removed, one-shot) for the same shares, worker threads against the serial fitness, checkpoint/resume
 * against a straight run, the CLI end to end (search → prune --allocator @result), and the refusals.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { tmpdir } from 'node:os';
import { attachModel, loadModelDir, type PrunableModel } from '../../src/model/index.js';
import { tokens } from '../structured/helpers.js';
import { computeDense, createFitness, idsSha256, type DenseData } from '../../src/search/fitness.js';
import { searchSpace } from '../../src/search/space.js';
import { createPool } from '../../src/search/pool.js';
import { Rng } from '../../src/search/random.js';
import { tokenizeText } from '../../src/data/text.js';
import { pruneModel } from '../../src/prune.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { searchedShares } from '../../src/search/structured-fitness.js';
import { run as searchCli } from '../../src/cli/commands/search.js';
import { run as pruneCli } from '../../src/cli/commands/prune.js';
import { memoryIo } from '../../src/cli/io.js';
import { isDsaPruneError } from '../../src/errors.js';
import type { Candidate, SearchSpec } from '../../src/search/types.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const modelDir = path.join(repo, 'models/stories260k');
const NS = 8;
const SEQ = 128;
const WIN = 4;
const S = 0.2;

let pm: PrunableModel;
let cal: Int32Array;
let search: Int32Array;
let spec: SearchSpec;
let dense: DenseData;
let dir: string;
let calib: string;
const candidates: Candidate[] = [];

beforeAll(async () => {
  const loaded = await loadModelDir(modelDir, { threads: 1 });
  pm = loaded.prunable;
  const text = readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 30000);
  const ids = tokenizeText(loaded.tokenizer, text);
  cal = ids.slice(0, NS * SEQ);
  search = ids.slice(NS * SEQ, NS * SEQ + WIN * SEQ);
  spec = {
    method: 'structured', structured: { target: 'ffn', score: 'wanda-sp' }, sparsity: S, budget: 'exact', mode: 'fast',
    calibration: { nsamples: NS, seqlen: SEQ, sha256: idsSha256(cal) }, search: { windows: WIN, seqlen: SEQ, sha256: idsSha256(search) },
    seed: 1, modelHash: pm.modelHash(),
  };
  dense = await computeDense(pm, spec, cal, 1);
  const sp = searchSpace(dense.blocks, S, 'exact');
  const rng = new Rng(7);
  while (candidates.length < 3) {
    const c = sp.sample(rng);
    if (sp.check(c).ok) candidates.push(c);
  }
  dir = mkdtempSync(path.join(tmpdir(), 'dsa-ssearch-'));
  calib = path.join(dir, 'calib.txt');
  writeFileSync(calib, text.slice(0, 25000));
});

afterAll(() => undefined);

/** The faithful structured prune (channels removed) of a fresh copy with the given shares, and its perplexity. */
async function faithful(shares: number[], score: 'wanda-sp' | 'magnitude' | 'flap', mode: 'oneshot' | 'sequential', biasCompensation?: boolean) {
  const { model } = await loadModelDir(modelDir, { threads: 1 });
  const report = await pruneModel(model, {
    method: 'structured', target: ['ffn'], score, sparsity: S, allocator: searchedShares(shares), mode, ...(biasCompensation === undefined ? {} : { biasCompensation }),
    calibration: { ids: cal }, nsamples: NS, seqlen: SEQ, source: modelDir, threads: 1,
  });
  const { ppl } = await perplexity(model as never, search, { seqlen: SEQ, batchSize: 2 });
  await (model as { dispose(): Promise<unknown> }).dispose();
  return { report, ppl };
}

describe('structured fast fitness (stories260k)', () => {
  it('equals the perplexity of the one-shot structured prune with the channels removed, for the same shares (wanda-sp and magnitude)', async () => {
    for (const score of ['wanda-sp', 'magnitude'] as const) {
      const sspec: SearchSpec = { ...spec, structured: { target: 'ffn', score } };
      const f = await createFitness(pm, sspec, { calibrationIds: cal, searchIds: search }, { dense }) as Awaited<ReturnType<typeof createFitness>> & { kept(b: number[]): Int32Array[] };
      try {
        for (const shares of [[0.12, 0.28, 0.2, 0.15, 0.25], f.allocation(candidates[0]!)]) {
          const ev = await f.evaluateAllocation!(shares);
          const { report, ppl } = await faithful(shares, score, 'oneshot');
          // The same channels: the fast path's one-shot selection = the pipeline's, block by block.
          const kept = f.kept(shares);
          report.structured!.blocks.forEach((b, i) => expect(Array.from(kept[i]!)).toEqual(b.kept));
          expect(report.structured!.blocks.some((b) => b.ffnAfter !== report.structured!.blocks[0]!.ffnAfter)).toBe(true);
          // fp32: the zeroed full-width MatMul and the sliced one sum in different orders.
          expect(Math.abs(ev.fitness - ppl) / ppl).toBeLessThan(1e-5);
        }
      } finally {
        await f.close();
      }
    }
  });

  it('flap: the fast fitness with the compensated down biases equals the one-shot FLAP prune with the channels removed', async () => {
    const fspec: SearchSpec = { ...spec, structured: { target: 'ffn', score: 'flap' } };
    const fdense = await computeDense(pm, fspec, cal, 1);
    const before = { nodes: pm.proto.graph.node.length, inits: pm.proto.graph.initializer.length, outs: pm.proto.graph.node.map((n) => n.output.join(',')).join(';') };
    const f = await createFitness(pm, fspec, { calibrationIds: cal, searchIds: search }, { dense: fdense }) as Awaited<ReturnType<typeof createFitness>> & { kept(b: number[]): Int32Array[] };
    // The model's own graph is unchanged: the biases were added for the session only.
    expect({ nodes: pm.proto.graph.node.length, inits: pm.proto.graph.initializer.length, outs: pm.proto.graph.node.map((n) => n.output.join(',')).join(';') }).toEqual(before);
    try {
      for (const shares of [[0.12, 0.28, 0.2, 0.15, 0.25], f.allocation(candidates[0]!)]) {
        const ev = await f.evaluateAllocation!(shares);
        const { report, ppl } = await faithful(shares, 'flap', 'oneshot');
        expect(report.structured!.biasCompensation).toBe(true);
        const kept = f.kept(shares);
        report.structured!.blocks.forEach((b, i) => expect(Array.from(kept[i]!)).toEqual(b.kept));
        expect(Math.abs(ev.fitness - ppl) / ppl).toBeLessThan(1e-5);
        // The compensation matters here: the same channels without it give another perplexity.
        const plain = await faithful(shares, 'flap', 'oneshot', false);
        expect(Math.abs(plain.ppl - ppl) / ppl).toBeGreaterThan(1e-3);
      }
      // A candidate after another: the biases are recomputed from the dense ones, not accumulated.
      const shares = [0.12, 0.28, 0.2, 0.15, 0.25];
      const a = (await f.evaluateAllocation!(shares)).fitness;
      await f.evaluateAllocation!([0.25, 0.15, 0.2, 0.28, 0.12]);
      expect((await f.evaluateAllocation!(shares)).fitness).toBe(a);
    } finally {
      await f.close();
    }
  });

  it('scores listed windows (levels --level-sampling resample): equal to a fitness whose search split is those windows', async () => {
    const picked = new Int32Array(2 * SEQ);
    picked.set(search.subarray(3 * SEQ, 4 * SEQ), 0);
    picked.set(search.subarray(SEQ, 2 * SEQ), SEQ);
    const shares = [0.12, 0.28, 0.2, 0.15, 0.25];
    const all = await createFitness(pm, spec, { calibrationIds: cal, searchIds: search }, { dense, batchSize: 1 });
    const two = await createFitness(pm, { ...spec, search: { windows: 2, seqlen: SEQ, sha256: idsSha256(picked) } }, { calibrationIds: cal, searchIds: picked }, { dense, batchSize: 1 });
    try {
      const a = (await all.evaluateLinears!({ blockSparsity: shares }, { windowIndices: [3, 1] })).fitness;
      const b = (await two.evaluateLinears!({ blockSparsity: shares })).fitness;
      expect(Math.abs(a - b) / b).toBeLessThan(1e-12);
      // the listed windows are really used, not the first two
      expect((await all.evaluateLinears!({ blockSparsity: shares }, { windows: 2 })).fitness).not.toBe(a);
    } finally {
      await all.close();
      await two.close();
    }
  });

  it('a candidate is evaluated on its dsa allocation; a share that would empty a block is fitness Infinity, not an error', async () => {
    const f = await createFitness(pm, spec, { calibrationIds: cal, searchIds: search }, { dense });
    try {
      const ev = await f.evaluate(candidates[1]!);
      expect(ev.blockSparsity).toEqual(f.allocation(candidates[1]!));
      const again = await f.evaluateAllocation!(ev.blockSparsity);
      expect(again.fitness).toBe(ev.fitness);
      // stories260k: the FFN is 2/3 of a block's linear parameters, so a 0.9 share empties it.
      const bad = await f.evaluateAllocation!([0.9, 0.025, 0.025, 0.025, 0.025]);
      expect(bad.fitness).toBe(Infinity);
    } finally {
      await f.close();
    }
  });

  it('worker threads give the serial fitness bit for bit', async () => {
    const f = await createFitness(pm, spec, { calibrationIds: cal, searchIds: search }, { dense });
    const serial: number[] = [];
    try {
      for (const c of candidates) serial.push((await f.evaluate(c)).fitness);
    } finally {
      await f.close();
    }
    const pool = await createPool({ modelDir, spec, calibrationIds: cal, searchIds: search, dense, workers: 2, threads: 1 });
    try {
      const evs = await pool.evaluate(candidates);
      expect(evs.map((e) => e.fitness)).toEqual(serial);
      expect(new Set(evs.map((e) => e.worker)).size).toBeGreaterThanOrEqual(1);
    } finally {
      await pool.close();
    }
  }, 120_000);
});

const base = () => ['--method', 'structured', '--target', 'ffn', '--sparsity', String(S), '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--search-windows', '2', '--population', '4'];

describe('dsa-prune search --method structured (CLI)', () => {
  it('search → faithful re-application → prune --allocator @result keeps the same widths and perplexity', async () => {
    const out = path.join(dir, 's.json');
    const io = memoryIo();
    expect(await searchCli([modelDir, ...base(), '--evals', '6', '--workers', '2', '--threads', '1', '--seed', '2', '--out', out, '--json'], io)).toBe(0);
    const j = JSON.parse(io.stdoutText);
    expect(j.method).toBe('structured');
    expect(j.structured).toEqual({ target: 'ffn', score: 'wanda-sp' });
    expect(j.history).toHaveLength(6);
    expect(j.best.fitness).toBe(Math.min(...j.history.map((h: { fitness: number }) => h.fitness)));
    expect(j.best.ffnWidths).toHaveLength(5);
    const pio = memoryIo();
    const pruned = path.join(dir, 'p');
    expect(await pruneCli([modelDir, '--method', 'structured', '--target', 'ffn', '--sparsity', String(S), '--allocator', `@${out}`,
      '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--out', pruned, '--json'], pio)).toBe(0);
    const p = JSON.parse(pio.stdoutText);
    expect(p.structured.blocks.map((b: { ffnAfter: number }) => b.ffnAfter)).toEqual(j.best.ffnWidths);
    expect(p.targetBlockSparsity).toEqual(j.best.blockSparsity);
    // The search's faithful fitness is the perplexity of exactly this pruned model on the search split.
    const { model, tokenizer } = await loadModelDir(pruned, { threads: 1 });
    const sids = tokenizeText(tokenizer!, readFileSync(calib, 'utf8')).subarray(4 * 128, 4 * 128 + 2 * 128);
    const { ppl } = await perplexity(model as never, sids, { seqlen: 128, batchSize: 2 });
    expect(Math.abs(ppl - j.best.faithful.fitness) / ppl).toBeLessThan(1e-5);
  }, 120_000);

  it('--score flap: worker threads search, the result re-applies with prune --method structured --score flap to the same perplexity', async () => {
    const out = path.join(dir, 'sf.json');
    const io = memoryIo();
    expect(await searchCli([modelDir, ...base(), '--score', 'flap', '--evals', '4', '--workers', '2', '--threads', '1', '--seed', '3', '--out', out, '--json'], io)).toBe(0);
    const j = JSON.parse(io.stdoutText);
    expect(j.structured).toEqual({ target: 'ffn', score: 'flap' });
    expect(j.history).toHaveLength(4);
    const pio = memoryIo();
    const pruned = path.join(dir, 'pf');
    expect(await pruneCli([modelDir, '--method', 'structured', '--target', 'ffn', '--score', 'flap', '--sparsity', String(S), '--allocator', `@${out}`,
      '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--out', pruned, '--json'], pio)).toBe(0);
    const p = JSON.parse(pio.stdoutText);
    expect(p.structured.blocks.map((b: { ffnAfter: number }) => b.ffnAfter)).toEqual(j.best.ffnWidths);
    expect(JSON.parse(readFileSync(path.join(pruned, 'pruning.json'), 'utf8')).structured.biasCompensation).toBe(true);
    const { model, tokenizer } = await loadModelDir(pruned, { threads: 1 });
    const sids = tokenizeText(tokenizer!, readFileSync(calib, 'utf8')).subarray(4 * 128, 4 * 128 + 2 * 128);
    const { ppl } = await perplexity(model as never, sids, { seqlen: 128, batchSize: 2 });
    expect(Math.abs(ppl - j.best.faithful.fitness) / ppl).toBeLessThan(1e-5);
  }, 120_000);

  it('--resume continues a stopped structured search to the straight run\'s result', async () => {
    const ck = path.join(dir, 'a.ckpt.json');
    await searchCli([modelDir, ...base(), '--workers', '1', '--evals', '4', '--seed', '5', '--no-final', '--checkpoint', ck, '--json'], memoryIo());
    const resumed = memoryIo();
    await searchCli([modelDir, ...base(), '--workers', '1', '--evals', '10', '--seed', '5', '--no-final', '--resume', ck, '--json'], resumed);
    const straight = memoryIo();
    await searchCli([modelDir, ...base(), '--workers', '1', '--evals', '10', '--seed', '5', '--no-final', '--checkpoint', path.join(dir, 'b.ckpt.json'), '--json'], straight);
    const a = JSON.parse(resumed.stdoutText);
    const b = JSON.parse(straight.stdoutText);
    expect(a.history).toEqual(b.history);
    expect(a.best).toEqual(b.best);
    // A checkpoint of a structured search is refused by an unstructured one (signature differs).
    await expect(searchCli([modelDir, '--sparsity', String(S), '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--search-windows', '2', '--population', '4',
      '--workers', '1', '--evals', '10', '--seed', '5', '--no-final', '--resume', ck, '--json'], memoryIo())).rejects.toThrow(/structured/);
  }, 120_000);

  it('the levels strategy searches per-block widths too, and its result applies with prune --method structured', async () => {
    const out = path.join(dir, 'lv.json');
    const io = memoryIo();
    expect(await searchCli([modelDir, ...base(), '--strategy', 'levels', '--fitness', 'ppl', '--workers', '1', '--evals', '6', '--offspring', '2', '--out', out, '--json'], io)).toBe(0);
    const j = JSON.parse(io.stdoutText);
    expect(j.strategy).toBe('levels');
    expect(j.granularity).toBe('block');
    expect(j.structured).toEqual({ target: 'ffn', score: 'wanda-sp' });
    const pio = memoryIo();
    expect(await pruneCli([modelDir, '--method', 'structured', '--sparsity', String(S), '--allocator', `@${out}`, '--calibration', calib,
      '--nsamples', '4', '--seqlen', '128', '--out', path.join(dir, 'plv'), '--json'], pio)).toBe(0);
    expect(JSON.parse(pio.stdoutText).targetBlockSparsity).toEqual(j.best.blockSparsity);
  }, 120_000);

  it('refuses bad input with a code, before any work', async () => {
    const code = async (argv: string[], cli = searchCli) => {
      try {
        await cli(argv, memoryIo());
      } catch (e) {
        expect(isDsaPruneError(e)).toBe(true);
        return [(e as { code: string }).code, (e as Error).message] as const;
      }
      throw new Error(`not refused: ${argv.join(' ')}`);
    };
    const common = [modelDir, '--method', 'structured', '--sparsity', '0.2', '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--evals', '2'];
    expect(await code([...common, '--target', 'heads'])).toEqual(['invalid-input', expect.stringMatching(/same KV-group count in every block/)]);
    expect(await code([...common, '--target', 'ffn,heads'])).toEqual(['invalid-input', expect.stringMatching(/--target ffn,heads/)]);
    expect(await code([...common, '--target', 'depth'])).toEqual(['invalid-input', expect.stringMatching(/depth ranks sub-layers globally/)]);
    expect(await code([...common, '--score', 'snip'])).toEqual(['invalid-input', expect.stringMatching(/unknown structured score "snip"/)]);
    expect(await code([...common, '--mode', 'faithful'])).toEqual(['invalid-input', expect.stringMatching(/fast fitness only/)]);
    expect(await code([...common, '--granularity', 'linear'])).toEqual(['invalid-input', expect.stringMatching(/one FFN width per block/)]);
    expect((await code([modelDir, '--score', 'wanda-sp', '--calibration', calib]))[1]).toMatch(/--method structured only/);

    // prune --allocator @result: another model, an unstructured result, another score.
    const res = path.join(dir, 's.json');
    const raw = JSON.parse(readFileSync(res, 'utf8'));
    const other = path.join(dir, 'other.json');
    writeFileSync(other, JSON.stringify({ ...raw, spec: { ...raw.spec, modelHash: 'f'.repeat(64) } }));
    const prune = (alloc: string, extra: string[] = []) => [modelDir, '--method', 'structured', '--sparsity', '0.2', '--allocator', alloc, '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--out', path.join(dir, 'never'), ...extra];
    expect(await code(prune(`@${other}`), pruneCli)).toEqual(['invalid-input', expect.stringMatching(/searched on another model/)]);
    expect(await code(prune(`@${res}`, ['--score', 'magnitude']), pruneCli)).toEqual(['invalid-input', expect.stringMatching(/--score wanda-sp/)]);
    const unstructured = path.join(dir, 'u.json');
    writeFileSync(unstructured, JSON.stringify({ best: { expression: 'W:(NO_OP)-(MEAN)-(NO_OP)', lambda: 0.1, fitness: 1 }, history: [], method: 'wanda' }));
    expect(await code(prune(`@${unstructured}`), pruneCli)).toEqual(['invalid-input', expect.stringMatching(/unstructured search/)]);
  }, 60_000);
});

const layoutsDir = path.resolve(repo, '../shared/models/layouts');
const hasLayouts = existsSync(layoutsDir);
describe.skipIf(!hasLayouts)('flap fast fitness on ../shared/models/layouts (skipped when ../shared is absent)', () => {
  // gpt2 / opt: the down projection has its own bias (GPT-2 exports may share it across blocks); llama-hf: none.
  for (const name of ['gpt2', 'opt', 'llama-hf']) {
    it(`${name}: fast flap fitness = one-shot FLAP prune with the channels removed`, async () => {
      const dir = mkdtempSync(path.join(tmpdir(), `dsa-ssflap-${name}-`));
      cpSync(path.join(layoutsDir, name), dir, { recursive: true });
      const onnxPath = path.join(dir, 'onnx/model.onnx');
      const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      const vocab = Number(config.vocab_size);
      const seq = 16;
      const lcal = tokens(4 * seq, vocab, 5);
      const lsearch = tokens(2 * seq, vocab, 6);
      const open = async () => {
        const model = { sessions: { model: await ort.InferenceSession.create(onnxPath, { logSeverityLevel: 3 }) }, config };
        return { model, pm: await attachModel(model, { source: dir }) };
      };
      const { pm: lpm } = await open();
      const lspec: SearchSpec = {
        method: 'structured', structured: { target: 'ffn', score: 'flap' }, sparsity: 0.2, budget: 'exact', mode: 'fast',
        calibration: { nsamples: 4, seqlen: seq, sha256: idsSha256(lcal) }, search: { windows: 2, seqlen: seq, sha256: idsSha256(lsearch) },
        seed: 1, modelHash: lpm.modelHash(),
      };
      const ldense = await computeDense(lpm, lspec, lcal, 1);
      const f = await createFitness(lpm, lspec, { calibrationIds: lcal, searchIds: lsearch }, { dense: ldense, batchSize: 1 });
      try {
        const B = lpm.blocks;
        // Different widths per block, mean 0.2 (blocks have equal parameters): ±0.08 in pairs, an odd last block at 0.2.
        const shares = Array.from({ length: B }, (_, b) => (b === B - 1 && B % 2 ? 0.2 : b % 2 ? 0.28 : 0.12));
        const ev = await f.evaluateAllocation!(shares);
        const { model } = await open();
        const report = await pruneModel(model, {
          method: 'structured', target: ['ffn'], score: 'flap', sparsity: 0.2, allocator: searchedShares(shares), mode: 'oneshot',
          calibration: { ids: lcal }, nsamples: 4, seqlen: seq, threads: 1,
        });
        expect(report.structured!.blocks.some((b) => b.ffnAfter < b.ffnBefore)).toBe(true);
        const { ppl } = await perplexity(model as never, lsearch, { seqlen: seq, batchSize: 1 });
        expect(Math.abs(ev.fitness - ppl) / ppl, `${name}: fast ${ev.fitness} vs faithful ${ppl}`).toBeLessThan(1e-5);
      } finally {
        await f.close();
      }
    }, 120_000);
  }
});
