import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/cli/commands/search.js';
import { memoryIo } from '../../src/cli/io.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const model = path.join(repo, 'models/stories260k');
let dir: string;
let calib: string;
let evalFile: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'dsa-search-cli-'));
  // a short calibration file keeps tokenization fast
  calib = path.join(dir, 'calib.txt');
  writeFileSync(calib, readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8').slice(0, 25000));
  evalFile = path.join(dir, 'eval.txt');
  writeFileSync(evalFile, readFileSync(path.join(repo, 'data/tinystories/tinystories_eval.txt'), 'utf8').slice(0, 25000));
});

const base = () => ['--sparsity', '0.6', '--calibration', calib, '--nsamples', '4', '--seqlen', '128', '--search-windows', '2', '--workers', '1', '--population', '4'];

describe('dsa-prune search', () => {
  it('--json prints only the result JSON; --out writes it and an SVG chart; the best is re-applied faithfully', async () => {
    const io = memoryIo();
    const out = path.join(dir, 'r.json');
    const code = await run([model, ...base(), '--evals', '6', '--seed', '3', '--random', '--out', out, '--json'], io);
    expect(code).toBe(0);
    const j = JSON.parse(io.stdoutText);
    expect(Object.keys(j)).toEqual(expect.arrayContaining(['best', 'history', 'evaluations', 'random']));
    expect(j.evaluations).toBe(6);
    expect(j.history).toHaveLength(6);
    expect(j.random).toHaveLength(6);
    expect(j.best.expression).toMatch(/^W:\(/);
    expect(j.best.blockSparsity).toHaveLength(5);
    // exact budget: parameter-weighted mean of the block sparsities = 0.6 (stories260k blocks are equal in size)
    const mean = j.best.blockSparsity.reduce((a: number, b: number) => a + b, 0) / 5;
    expect(mean).toBeCloseTo(0.6, 6);
    expect(j.best.fitness).toBe(Math.min(...j.history.map((h: { fitness: number }) => h.fitness)));
    expect(j.best.faithful.fitness).toBeGreaterThan(1);
    expect(io.stderrText).toBe('');
    expect(JSON.parse(readFileSync(out, 'utf8')).best).toEqual(j.best);
    expect(readFileSync(out.replace(/\.json$/, '.svg'), 'utf8')).toMatch(/^<svg/);
    expect(existsSync(out.replace(/\.json$/, '.checkpoint.json'))).toBe(true);
  });

  it('--resume continues a stopped search to the same result as a straight run', async () => {
    const ckA = path.join(dir, 'a.ckpt.json');
    const short = memoryIo();
    await run([model, ...base(), '--evals', '4', '--seed', '5', '--no-final', '--checkpoint', ckA, '--json'], short);
    const resumed = memoryIo();
    await run([model, ...base(), '--evals', '10', '--seed', '5', '--no-final', '--resume', ckA, '--json'], resumed);
    const straight = memoryIo();
    await run([model, ...base(), '--evals', '10', '--seed', '5', '--no-final', '--checkpoint', path.join(dir, 'b.ckpt.json'), '--json'], straight);
    const a = JSON.parse(resumed.stdoutText);
    const b = JSON.parse(straight.stdoutText);
    expect(a.history).toEqual(b.history);
    expect(a.best).toEqual(b.best);
  });

  it('refuses a search text that is an evaluation file, before loading anything', async () => {
    await expect(run([model, ...base(), '--search-text', evalFile, '--eval-text', evalFile], memoryIo())).rejects.toMatchObject({ name: 'DsaPruneError', code: 'refused' });
    await expect(run([model, '--evals', '3'], memoryIo())).rejects.toThrow(/--calibration/);
  });
});
