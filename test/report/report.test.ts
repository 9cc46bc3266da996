import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { DsaPruneError } from '../../src/errors.js';
import { renderReport } from '../../src/report/html.js';
import { parseReportInput, validatePrunedManifest, validateSearchResult } from '../../src/report/types.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const prunedFixture = path.join(here, 'fixtures/pruning-stories260k.json');
const searchFixture = path.join(here, 'fixtures/search-bench12l.json');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'dsa-report-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function err(fn: () => unknown): DsaPruneError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DsaPruneError);
    return e as DsaPruneError;
  }
  throw new Error('expected an error');
}

describe('input validation', () => {
  const good = JSON.parse(readFileSync(prunedFixture, 'utf8')) as Record<string, unknown>;

  it('names the file and the missing field', () => {
    const { blockSparsity: _omit, ...noBlocks } = good;
    expect(err(() => validatePrunedManifest(noBlocks, 'out/x/pruning.json')).message).toBe(
      'out/x/pruning.json: missing field "blockSparsity" (an array of numbers, one per block)',
    );
    expect(err(() => validatePrunedManifest({ ...good, sparsity: '0.5' }, 'p.json')).message).toBe(
      'p.json: field "sparsity" must be a number, got "0.5"',
    );
    expect(err(() => validatePrunedManifest({ ...good, blockSparsity: [0.5, 'x'] }, 'p.json')).message).toBe(
      'p.json: field "blockSparsity[1]" must be a number, got "x"',
    );
    expect(err(() => validateSearchResult({ history: [] }, 's.json')).message).toMatch(/^s\.json: missing field "best"/);
    expect(err(() => validateSearchResult({ best: { expression: 'x', fitness: 1 }, history: [{ evaluation: 0 }] }, 's.json')).message).toMatch(
      /^s\.json: missing field "history\[0\]\.fitness"/,
    );
    expect(err(() => validatePrunedManifest([], 'a.json')).exitCode).toBe(2);
  });

  it('null in per-block arrays stands for NaN; detection of the input kind', () => {
    const m = validatePrunedManifest({ method: 'wanda', sparsity: 0.5, blockSparsity: [0.5, null] }, 'p.json');
    expect(Number.isNaN(m.blockSparsity[1])).toBe(true);
    expect(parseReportInput(JSON.parse(readFileSync(searchFixture, 'utf8')), 's').kind).toBe('search');
    expect(parseReportInput(good, 'p').kind).toBe('pruned');
  });
});

describe('renderReport', () => {
  it('pruned: one offline page, every allocation charted, quality deltas computed', () => {
    const m = validatePrunedManifest(JSON.parse(readFileSync(prunedFixture, 'utf8')), prunedFixture);
    const html = renderReport({ kind: 'pruned', manifest: m });
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).not.toMatch(/<script|<link|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect((html.match(/<rect class="bar"/g) ?? []).length).toBe(5 * 4);
    for (const n of ['uniform', 'OWL', 'DSA', 'this model (OWL)']) expect(html).toContain(`>${n}</text>`);
    // Δ of perplexity = pruned − dense computed independently here
    const d = m.quality!.dense!.ppl!;
    const p = m.quality!.pruned!.ppl!;
    expect(html).toContain(`>${Number((p - d).toPrecision(4))}</td>`);
    expect(html).toBe(renderReport({ kind: 'pruned', manifest: m })); // deterministic
  });

  it('search: curve with one dot per valid candidate and the baselines as lines', () => {
    const r = validateSearchResult(JSON.parse(readFileSync(searchFixture, 'utf8')), searchFixture);
    const html = renderReport({ kind: 'search', result: r });
    const valid = [...r.history, ...(r.random ?? [])].filter((h) => h.fitness !== null).length;
    expect((html.match(/<circle class="point"/g) ?? []).length).toBe(valid);
    // best-so-far lines of the evolution and of the random baseline
    expect((html.match(/<path class="line"/g) ?? []).length).toBe(2);
    expect(html).toContain('uniform 178');
    expect(html).toContain('OWL 170.9');
    expect(html).toContain(r.best.expression.replace(/&/g, '&amp;'));
  });

  it('accepts the JSON written by a real `dsa-prune search --random` run (stories260k, 12 evaluations)', () => {
    const file = path.join(here, 'fixtures/search-stories260k-real.json');
    const raw = JSON.parse(readFileSync(file, 'utf8')) as { history: { fitness: number | null }[]; random: { fitness: number | null }[] };
    const input = parseReportInput(raw, file);
    expect(input.kind).toBe('search');
    const html = renderReport(input);
    const valid = [...raw.history, ...raw.random].filter((h) => h.fitness !== null).length;
    expect((html.match(/<circle class="point"/g) ?? []).length).toBe(valid);
    expect((html.match(/<rect class="bar"/g) ?? []).length).toBe(5);
    expect(html).toContain('softplus(l1_norm(tanh(sigmoid(z))))');
  });

  it('escapes hostile text from the data', () => {
    const html = renderReport({
      kind: 'pruned',
      manifest: { method: '<img src=x onerror=alert(1)>', sparsity: 0.5, blockSparsity: [0.5], model: '"><script>x</script>' },
    });
    expect(html).not.toContain('<img');
    expect(html).not.toContain('<script>');
  });
});

describe('dsa-prune report', () => {
  it('writes the page for a pruned folder (default <folder>/report.html) and for a search JSON (--out)', async () => {
    const folder = path.join(tmp, 'pruned');
    mkdirSync(folder);
    writeFileSync(path.join(folder, 'pruning.json'), readFileSync(prunedFixture));
    const io = memoryIo();
    expect(await main(['report', folder, '--json'], io)).toBe(0);
    const out = JSON.parse(io.stdoutText) as { report: string };
    expect(out.report).toBe(path.join(folder, 'report.html'));
    expect(readFileSync(out.report, 'utf8')).toContain('Sparsity per block');

    const io2 = memoryIo();
    const target = path.join(tmp, 'deep/search.html');
    expect(await main(['report', searchFixture, '--out', target], io2)).toBe(0);
    expect(io2.stdoutText).toBe(`report written to ${target}\n`);
    expect(readFileSync(target, 'utf8')).toContain('Search curve');
  });

  it('--eval (eval --json with --compare) fills the quality table; --compare name=path adds allocations', async () => {
    const folder = path.join(tmp, 'bare');
    mkdirSync(folder);
    writeFileSync(path.join(folder, 'pruning.json'), JSON.stringify({ method: 'wanda', sparsity: 0.5, blockSparsity: [0.5, 0.5, 0.5] }));
    const owlDir = path.join(tmp, 'owl');
    mkdirSync(owlDir);
    writeFileSync(path.join(owlDir, 'pruning.json'), JSON.stringify({ method: 'wanda', sparsity: 0.5, blockSparsity: [0.4, 0.5, 0.6] }));
    const evalFile = path.join(tmp, 'eval.json');
    writeFileSync(
      evalFile,
      JSON.stringify({
        ppl: 24.77,
        perplexity: { windows: 385, seqlen: 512 },
        tasks: { copa: { acc: 0.61, n: 100 } },
        compare: { model: 'models/stories260k', ppl: 5.8163, tasks: { copa: { acc: 0.65, n: 100 } } },
        delta: { ppl: 18.95, tasks: { copa: { acc: -0.04 } } },
      }),
    );
    const target = path.join(tmp, 'merged.html');
    const io = memoryIo();
    const code = await main(['report', folder, '--eval', evalFile, '--compare', `owl=${owlDir}`, '--out', target], io);
    expect(io.stderrText).toBe('');
    expect(code).toBe(0);
    const html = readFileSync(target, 'utf8');
    expect((html.match(/<rect class="bar"/g) ?? []).length).toBe(3 * 2); // this model + owl
    expect(html).toContain('<title>OWL · block 2: 0.6</title>');
    expect(html).toMatch(/perplexity ↓<\/td><td[^>]*>5\.816<\/td><td[^>]*>24\.77<\/td><td[^>]*>18\.95<\/td>/);
    expect(html).toMatch(/copa acc ↑<\/td><td[^>]*>0\.65<\/td><td[^>]*>0\.61<\/td><td[^>]*>-0\.04<\/td>/);
    const io2 = memoryIo();
    expect(await main(['report', folder, '--compare', 'owl'], io2)).toBe(2);
    expect(io2.stderrText).toContain('--compare must be name=<path>, got "owl"');
    const io3 = memoryIo();
    expect(await main(['report', folder, '--compare', `dsa=${searchFixture}`], io3)).toBe(2);
    expect(io3.stderrText).toContain(`${searchFixture} has 12 blocks, the model of the report has 3`);
  });

  it('bad input: missing path, folder without pruning.json, invalid JSON → exit 2 naming the file', async () => {
    const io = memoryIo();
    expect(await main(['report', path.join(tmp, 'nope')], io)).toBe(2);
    expect(io.stderrText).toContain('nope: no such file or folder');
    const empty = path.join(tmp, 'empty');
    mkdirSync(empty);
    const io2 = memoryIo();
    expect(await main(['report', empty], io2)).toBe(2);
    expect(io2.stderrText).toContain('folder has no pruning.json');
    const broken = path.join(tmp, 'broken.json');
    writeFileSync(broken, '{"method": ');
    const io3 = memoryIo();
    expect(await main(['report', broken], io3)).toBe(2);
    expect(io3.stderrText).toContain(`${broken}: not valid JSON`);
    const io4 = memoryIo();
    expect(await main(['report'], io4)).toBe(2);
    expect(io4.stderrText).toContain("error: 'dsa-prune report' needs <prunedFolder | run.json>");
  });
});
