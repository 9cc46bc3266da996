/**
 * `dsa-prune report` of a structured-pruned folder: pruning.json `structured.bytes` equals the sizes of the files on
 * disk (source and saved ONNX file), and the page shows those bytes, the parameters before/after and every block's
 * kept FFN width (chart bars and table rows).
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { memoryIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';

const repo = path.resolve(import.meta.dirname, '../..');
const storiesDir = path.join(repo, 'models/stories260k');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-structured-report-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** model.onnx and its external data files, summed from a plain directory listing. */
function sizeOnDisk(dir: string): number {
  return readdirSync(dir).filter((f) => f === 'model.onnx' || f.startsWith('model.onnx_data')).reduce((a, f) => a + statSync(path.join(dir, f)).size, 0);
}

describe('report of a structured-pruned stories260k folder', () => {
  it('shows parameters and bytes before/after (= the files) and per-block kept widths', async () => {
    const out = path.join(tmp, 'ffn');
    const io = memoryIo();
    const code = await main(['prune', storiesDir, '--out', out, '--method', 'structured', '--target', 'ffn', '--score', 'magnitude',
      '--sparsity', '0.25', '--allocator', 'explicit:0.1,0.2,0.3,0.3,0.35', '--json'], io);
    expect(io.stderrText).toBe('');
    expect(code).toBe(0);
    const cli = JSON.parse(io.stdoutText) as { bytes: { before: number; after: number }; params: { before: number; after: number } };
    const manifest = JSON.parse(readFileSync(path.join(out, 'pruning.json'), 'utf8')) as {
      structured: { bytes: { before: number; after: number }; params: { before: number; after: number }; blocks: { block: number; ffnBefore: number; ffnAfter: number }[] };
    };
    const st = manifest.structured;
    const before = sizeOnDisk(path.join(storiesDir, 'onnx'));
    const after = sizeOnDisk(path.join(out, 'onnx'));
    expect(after).toBeLessThan(before);
    expect(st.bytes).toEqual({ before, after });
    expect(cli.bytes).toEqual(st.bytes);
    expect(cli.params).toEqual(st.params);
    expect(st.params.after).toBeLessThan(st.params.before);
    const widths = st.blocks.map((b) => b.ffnAfter);
    expect(new Set(widths).size).toBeGreaterThan(1);

    const io2 = memoryIo();
    expect(await main(['report', out, '--json'], io2)).toBe(0);
    const html = readFileSync((JSON.parse(io2.stdoutText) as { report: string }).report, 'utf8');
    const n = (x: number) => x.toLocaleString('en-US');
    expect(html).toContain(`${n(before)} → ${n(after)}`);
    expect(html).toContain(`${n(st.params.before)} → ${n(st.params.after)}`);
    expect(html).toContain('FFN channels per block');
    for (const b of st.blocks) {
      expect(html).toContain(`<title>FFN width kept · block ${b.block}: ${b.ffnAfter}</title>`);
      expect(html).toMatch(new RegExp(`<tr><td[^>]*>${b.block}</td><td[^>]*>${b.ffnBefore}</td><td[^>]*>${b.ffnAfter}</td>`));
    }
  }, 300_000);

  it('--target ffn,heads: the table shows the kept query / KV heads of every block', async () => {
    const out = path.join(tmp, 'heads');
    expect(await main(['prune', storiesDir, '--out', out, '--method', 'structured', '--target', 'ffn,heads', '--score', 'magnitude',
      '--sparsity', '0.3', '--quiet'], memoryIo())).toBe(0);
    const st = (JSON.parse(readFileSync(path.join(out, 'pruning.json'), 'utf8')) as {
      structured: { blocks: { block: number; headsBefore: number; headsAfter: number; kvHeadsBefore: number; kvHeadsAfter: number }[] };
    }).structured;
    expect(st.blocks[0]!.kvHeadsAfter).toBeLessThan(st.blocks[0]!.kvHeadsBefore);
    const io = memoryIo();
    expect(await main(['report', out, '--json'], io)).toBe(0);
    const html = readFileSync((JSON.parse(io.stdoutText) as { report: string }).report, 'utf8');
    for (const b of st.blocks) {
      expect(html).toMatch(new RegExp(`<tr><td[^>]*>${b.block}</td>.*<td[^>]*>${b.headsAfter} / ${b.headsBefore}</td><td[^>]*>${b.kvHeadsAfter} / ${b.kvHeadsBefore}</td></tr>`));
    }
  }, 300_000);
});
