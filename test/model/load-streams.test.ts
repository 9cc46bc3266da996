/**
 * transformers.js's FileResponse reads every local file it serves into an unconsumed stream (see
 * closingFileResponseStreams in src/model/load.ts): after loadModelDir returns, the read of the external-data file
 * must be stopped, not left to queue the whole file in memory. Spies on fs.createReadStream (the function the
 * FileResponse calls) and checks, after the event loop had time to finish any read still running, that the stream of
 * `model.onnx_data` was destroyed having read less than the file (without the fix it reads all of it).
 */
import fs, { mkdtempSync, rmSync, statSync, type ReadStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { closingFileResponseStreams, loadModelDir } from '../../src/model/load.js';
import { buildCommunityModel, COMMUNITY_SHAPES } from '../fixtures/community.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-load-streams-'));
const dir = path.join(work, 'm');
beforeAll(() => {
  // ≈ 40 MB of external data: more than a background read finishes while the load runs
  buildCommunityModel(dir, { ...COMMUNITY_SHAPES['smollm2-135m']!, blocks: 1, hidden: 256, inter: 512, heads: 4, kvHeads: 2, headDim: 64, vocab: 20000 }, { readme: false, fp16: false });
}, 120_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('loading stops the file reads transformers.js leaves running', () => {
  it('the external-data stream is destroyed before it has read the file', async () => {
    const data = path.join(dir, 'onnx/model.onnx_data');
    const size = statSync(data).size;
    expect(size).toBeGreaterThan(30 * 2 ** 20);
    const spy = vi.spyOn(fs, 'createReadStream');
    try {
      await loadModelDir(dir, { dtype: 'fp32' });
      const streams = spy.mock.results.map((r) => r.value as ReadStream).filter((s) => String(s.path) === data);
      expect(streams.length).toBeGreaterThanOrEqual(1);
      await new Promise((r) => setTimeout(r, 1500));
      for (const s of streams) {
        expect(s.destroyed).toBe(true);
        expect(s.bytesRead).toBeLessThan(size);
      }
    } finally {
      spy.mockRestore();
    }
  }, 120_000);

  it('streams created outside a FileResponse are left alone, and fs.createReadStream is restored', async () => {
    const before = fs.createReadStream;
    let other: ReadStream | undefined;
    await closingFileResponseStreams(async () => {
      other = fs.createReadStream(path.join(dir, 'onnx/model.onnx'));
      other.pause();
    });
    expect(other!.destroyed).toBe(false);
    await new Promise<void>((resolve) => other!.destroy().once('close', () => resolve()));
    expect(fs.createReadStream).toBe(before);
  });
});
