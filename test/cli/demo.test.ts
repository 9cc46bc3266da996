/**
 * The demo end to end on the embedded stories260k with small settings (a few seconds of work): saved folder,
 * pruning.json with the measured perplexities, report.html, and a realised sparsity equal to the zeros counted
 * independently in the saved ONNX weights would be the model area's test — here: the summary agrees with the files.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'dsa-demo-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('dsa-prune demo', () => {
  it('prunes stories260k, saves, measures and writes the report (small settings)', async () => {
    const out = path.join(tmp, 'pruned');
    const io = memoryIo();
    const code = await main(['demo', '--out', out, '--nsamples', '4', '--seqlen', '128', '--windows', '4', '--json', '--threads', '2'], io);
    expect(io.stderrText).toBe('');
    expect(code).toBe(0);
    const summary = JSON.parse(io.stdoutText) as {
      ppl: { dense: number; pruned: number };
      realizedSparsity: number;
      blockSparsity: number[];
      owlBlockSparsity: number[];
      report: string;
    };
    // a pruned model is worse than the dense one, and both are sane perplexities for a 512-token vocabulary
    expect(summary.ppl.dense).toBeGreaterThan(1);
    expect(summary.ppl.dense).toBeLessThan(50);
    expect(summary.ppl.pruned).toBeGreaterThan(summary.ppl.dense);
    expect(Math.abs(summary.realizedSparsity - 0.5)).toBeLessThan(1e-3);
    expect(summary.blockSparsity.length).toBe(5);
    // OWL keeps the budget: parameter-weighted mean of the blocks ≈ target (all blocks have equal size here)
    const mean = summary.owlBlockSparsity.reduce((a, b) => a + b, 0) / 5;
    expect(Math.abs(mean - 0.5)).toBeLessThan(5e-3);
    const manifest = JSON.parse(readFileSync(path.join(out, 'pruning.json'), 'utf8')) as {
      quality: { dense: { ppl: number }; pruned: { ppl: number } };
    };
    expect(manifest.quality.dense.ppl).toBe(summary.ppl.dense);
    expect(manifest.quality.pruned.ppl).toBe(summary.ppl.pruned);
    expect(existsSync(path.join(out, 'onnx/model.onnx'))).toBe(true);
    const html = readFileSync(summary.report, 'utf8');
    expect((html.match(/<rect class="bar"/g) ?? []).length).toBe(5 * 2); // OWL + this model
    expect(html).toContain(summary.ppl.pruned.toPrecision(4).replace(/\.?0+$/, ''));
  }, 300_000); // ~10 s of CPU; the budget is for a busy shared machine
});
