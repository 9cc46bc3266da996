/** `dsa-prune search --strategy levels` and re-applying its result with `prune --allocator @file` (stories260k). */
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run as search } from '../../src/cli/commands/search.js';
import { run as prune } from '../../src/cli/commands/prune.js';
import { memoryIo } from '../../src/cli/io.js';
import { DsaPruneError } from '../../src/errors.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const model = path.join(repo, 'models/stories260k');
let dir: string;
let calib: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'dsa-levels-cli-'));
  calib = path.join(dir, 'calib.txt');
  writeFileSync(calib, readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 25000));
});

describe('dsa-prune search --strategy levels', () => {
  it('writes a per-linear result and its profile chart; prune re-applies it on this model and refuses it on another', async () => {
    const out = path.join(dir, 'levels.json');
    const io = memoryIo();
    const code = await search([
      model, '--strategy', 'levels', '--granularity', 'linear', '--fitness', 'kl', '--kl-top-k', '32', '--sparsity', '0.6', '--calibration', calib,
      '--nsamples', '4', '--seqlen', '128', '--search-windows', '4', '--offspring', '4', '--evals', '6', '--seed', '2', '--out', out, '--json',
    ], io);
    expect(code).toBe(0);
    const j = JSON.parse(io.stdoutText);
    expect(j.strategy).toBe('levels');
    expect(Object.keys(j.best.linearSparsity)).toHaveLength(35); // 5 blocks × 7 linears
    expect(j.evaluations).toBeLessThanOrEqual(6);
    expect(readFileSync(out.replace(/\.json$/, '.svg'), 'utf8')).toMatch(/^<svg/);

    const pio = memoryIo();
    expect(await prune([model, '--out', path.join(dir, 'pruned'), '--sparsity', '0.6', '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--allocator', `@${out}`, '--json'], pio)).toBe(0);
    const r = JSON.parse(pio.stdoutText);
    expect(Math.abs(r.realizedSparsity - 0.6)).toBeLessThan(1e-3);
    for (const l of r.linears) expect(Math.abs(l.sparsity - j.best.linearSparsity[l.name])).toBeLessThan(1e-6);
    // Counted from the saved weights (the written model loaded back, zeros counted per linear): the target within 1e-3,
    // and every linear at the sparsity the search found for it.
    const { loadModelDir } = await import('../../src/model/index.js');
    const saved = (await loadModelDir(path.join(dir, 'pruned'), { threads: 1 })).prunable;
    let zeros = 0;
    let total = 0;
    for (const l of saved.linears.filter((x) => x.block >= 0 && x.role !== 'lm_head')) {
      const w = saved.readWeight(l);
      let z = 0;
      for (let i = 0; i < w.length; i++) if (w[i] === 0) z++;
      expect(Math.abs(z / w.length - j.best.linearSparsity[l.name]), l.name).toBeLessThan(1e-3);
      zeros += z;
      total += w.length;
    }
    expect(total).toBeGreaterThan(0);
    expect(Math.abs(zeros / total - 0.6)).toBeLessThan(1e-3);

    // The same result claimed for another model (its hash): refused before pruning, with the reason.
    const other = path.join(dir, 'other.json');
    writeFileSync(other, JSON.stringify({ ...j, modelHash: 'sha256:0000000000000000' }));
    const e = await prune([model, '--out', path.join(dir, 'pruned2'), '--sparsity', '0.6', '--calibration', calib, '--allocator', `@${other}`], memoryIo()).catch((x) => x);
    expect(e).toBeInstanceOf(DsaPruneError);
    expect((e as DsaPruneError).message).toMatch(/found on another model.*applies only to the model it was searched on/);
  }, 600_000);

  it('takes the compute options: --level-sampling resample, --level-switches, --level-stages, --level-start (a levels result from this model); refuses bad stages', async () => {
    const first = path.join(dir, 'levels-start.json');
    const common = [model, '--strategy', 'levels', '--granularity', 'linear', '--fitness', 'kl', '--kl-top-k', '32', '--sparsity', '0.6', '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--search-windows', '4', '--offspring', '4', '--json'];
    expect(await search([...common, '--evals', '4', '--seed', '3', '--out', first], memoryIo())).toBe(0);
    const started = JSON.parse(readFileSync(first, 'utf8'));
    const io = memoryIo();
    const code = await search([...common, '--evals', '3', '--level-sampling', 'resample', '--level-switches', 'evopress', '--level-stages', '1:2,2:1', '--level-start', `@${first}`, '--out', path.join(dir, 'levels-opt.json')], io);
    expect(code).toBe(0);
    const j = JSON.parse(io.stdoutText);
    expect(j.search).toEqual({ sampling: 'resample', switchDistribution: 'evopress', maxSwitches: 3, start: expect.stringMatching(/levels/) });
    expect(j.stages).toEqual([{ windows: 1, keep: 2 }, { windows: 2, keep: 1 }]);
    // Started from the first result's genome (the same grid: it is already on it, exact).
    expect(j.history[0].generation).toBe(0);
    const zero = JSON.parse((await (async () => {
      const z = memoryIo();
      await search([...common, '--evals', '1', '--level-sampling', 'resample', '--level-stages', '1:2,2:1', '--level-start', `@${first}`], z);
      return z;
    })()).stdoutText);
    expect(zero.best.genome).toEqual(started.best.genome);
    await expect(search([...common, '--evals', '3', '--level-stages', '1:2,9:1'], memoryIo())).rejects.toThrow(/stage 2 scores 9 windows/);
    await expect(search([...common, '--evals', '3', '--level-stages', '1-2'], memoryIo())).rejects.toThrow(/not <windows>:<keep>/);
  }, 600_000);
});
