/**
 * `dsa-prune prune --method structured` through the CLI dispatcher on stories260k: the JSON (params and bytes
 * before/after, measured independently from the files), `inspect` showing the per-block widths, and bad input refused
 * with exit code ≠ 0 and one message.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { memoryIo } from '../../src/cli/io.js';

const repo = path.resolve(import.meta.dirname, '../..');
const stories = path.join(repo, 'models/stories260k');
const calib = path.join(repo, 'data/tinystories/tinystories_calibration.txt');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-structured-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = memoryIo();
  const code = await main(args, io);
  return { code, out: io.stdoutText, err: io.stderrText };
}
const onnxDirBytes = (d: string) => readdirSync(d).reduce((a, f) => a + statSync(path.join(d, f)).size, 0);

describe('dsa-prune prune --method structured', () => {
  it('writes a smaller model; --json has params and bytes before/after; inspect shows the widths', async () => {
    const out = path.join(work, 'flap25');
    const r = await cli(['prune', stories, '--out', out, '--method', 'structured', '--target', 'ffn', '--score', 'flap', '--sparsity', '0.25',
      '--allocator', 'owl', '--calibration', calib, '--nsamples', '8', '--seqlen', '128', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.method).toBe('structured');
    expect(j.bytes.before).toBe(onnxDirBytes(path.join(stories, 'onnx')));
    expect(j.bytes.after).toBe(onnxDirBytes(path.join(out, 'onnx')));
    expect(j.bytes.after).toBeLessThan(j.bytes.before);
    // 25 % of 5 × 45312 block parameters = 59 channels × 192 per block on average; FLAP adds a 64-value bias per block.
    const removed = j.structured.blocks.reduce((a: number, b: { ffnBefore: number; ffnAfter: number }) => a + b.ffnBefore - b.ffnAfter, 0);
    expect(removed).toBe(Math.round((0.25 * 5 * 45312) / 192));
    expect(j.params.before - j.params.after).toBe(removed * 192 - 5 * 64);
    const ins = await cli(['inspect', out]);
    expect(ins.code).toBe(0);
    expect(ins.out).toContain(`FFN width per block: ${j.structured.blocks.map((b: { ffnAfter: number }) => b.ffnAfter).join(' ')}`);
    const insJ = JSON.parse((await cli(['inspect', out, '--json'])).out);
    expect(insJ.ffnWidths).toEqual(j.structured.blocks.map((b: { ffnAfter: number }) => b.ffnAfter));
  }, 600_000);

  it('refuses bad input with one message', async () => {
    const base = ['prune', stories, '--out', path.join(work, 'bad'), '--calibration', calib, '--nsamples', '4', '--seqlen', '64'];
    const flapDepth = await cli([...base, '--method', 'structured', '--target', 'depth', '--score', 'flap']);
    expect(flapDepth.code).not.toBe(0);
    expect(flapDepth.err).toMatch(/--score flap.*--target depth/);
    const empty = await cli([...base, '--method', 'structured', '--target', 'ffn', '--score', 'magnitude', '--sparsity', '0.8']);
    expect(empty.code).not.toBe(0);
    expect(empty.err).toMatch(/would remove \d+ of its 172 FFN channels/);
    const unknown = await cli([...base, '--method', 'structured', '--target', 'attention']);
    expect(unknown.err).toMatch(/unknown structured target "attention"/);
    const wrongMethod = await cli([...base, '--method', 'wanda', '--score', 'flap']);
    expect(wrongMethod.err).toMatch(/--method structured only/);
    expect(() => statSync(path.join(work, 'bad'))).toThrow();
  }, 600_000);
});

describe('dsa-prune prune --method structured --target heads', () => {
  it('--json has the head counts per block, the config fields, params and bytes; inspect shows the attention widths', async () => {
    const out = path.join(work, 'heads');
    const r = await cli(['prune', stories, '--out', out, '--method', 'structured', '--target', 'heads', '--score', 'wanda-sp', '--sparsity', '0.07',
      '--calibration', calib, '--nsamples', '8', '--seqlen', '128', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.structured.blocks.map((b: { kvHeadsAfter: number }) => b.kvHeadsAfter)).toEqual([3, 3, 3, 3, 3]);
    expect(j.structured.config).toEqual({ num_attention_heads: 6, num_key_value_heads: 3, head_dim: 8 });
    // One KV group per block: 2 query heads + 1 KV head of q/k/v rows (8 × 64 each) and 16 o columns (× 64).
    expect(j.params.before - j.params.after).toBe(5 * (4 * 8 * 64 + 16 * 64));
    expect(j.bytes.before).toBe(onnxDirBytes(path.join(stories, 'onnx')));
    expect(j.bytes.after).toBe(onnxDirBytes(path.join(out, 'onnx')));
    expect(j.bytes.before - j.bytes.after).toBeGreaterThanOrEqual(4 * 5 * 3072);
    const ins = await cli(['inspect', out]);
    expect(ins.out).toContain('attention width per block (o inputs = heads × head_dim): 48 48 48 48 48; config: 6 heads, 3 KV heads, head_dim 8');
    const bad = await cli(['prune', stories, '--out', path.join(work, 'bad-heads'), '--method', 'structured', '--target', 'heads', '--score', 'magnitude', '--sparsity', '0.3']);
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/would remove 4 of the 4 KV groups/);
    expect(() => statSync(path.join(work, 'bad-heads'))).toThrow();
  }, 600_000);
});
