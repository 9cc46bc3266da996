/**
 * Models loaded by id from a hub-like host: a static HTTP server on 127.0.0.1 with the hub's URL layout holds the
 * SmolLM2-135M-layout fixture (2 blocks; fp32 with external data, fp16 inline). Loaded by id (the user's own
 * `from_pretrained('org/name', { dtype })`, and the CLI with --allow-remote), pruned and saved, the result equals the
 * same folder pruned from disk, byte for byte. Bad input (unknown id, repository without onnx/, seqlen above the
 * context) gives one clear line and writes nothing.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AutoModelForCausalLM, env } from '@huggingface/transformers';
import { loadModelDir, pruneModel, savePruned } from '../../src/index.js';
import { memoryIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { buildCommunityModel } from '../fixtures/community.js';
import { startHubServer, type HubServer } from '../fixtures/hub-server.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-hub-'));
const ID = 'onnx-community/SmolLM2-135M-dsa-test';
const folder = path.join(work, 'repo');
let hub: HubServer;
const saved = { remoteHost: env.remoteHost, remotePathTemplate: env.remotePathTemplate, cacheDir: env.cacheDir, localModelPath: env.localModelPath, allowRemoteModels: env.allowRemoteModels };

beforeAll(async () => {
  buildCommunityModel(folder, 'smollm2-135m', { blocks: 2, tokenizerFrom: path.resolve('models/stories260k') });
  const noOnnx = path.join(work, 'no-onnx');
  mkdirSync(noOnnx);
  writeFileSync(path.join(noOnnx, 'config.json'), readFileSync(path.join(folder, 'config.json')));
  hub = await startHubServer({ [ID]: folder, 'onnx-community/config-only': noOnnx });
  env.remoteHost = hub.url;
  env.remotePathTemplate = '{model}/resolve/{revision}/';
  env.cacheDir = path.join(work, 'cache');
  env.localModelPath = path.join(work, 'no-local-models');
}, 120_000);
afterAll(async () => {
  Object.assign(env, saved);
  await hub?.close();
  rmSync(work, { recursive: true, force: true });
});

const ids = Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 7919 + 13) % 500);
const opts = { method: 'wanda' as const, sparsity: 0.5, calibration: { ids }, nsamples: 2, seqlen: 16 };

/** Every file under onnx/ of a saved folder, name → bytes. */
function onnxFiles(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(path.join(dir, 'onnx')).sort().map((f) => [f, readFileSync(path.join(dir, 'onnx', f))]));
}

function expectSameOnnx(a: string, b: string): void {
  const fa = onnxFiles(a), fb = onnxFiles(b);
  expect([...fa.keys()]).toEqual([...fb.keys()]);
  for (const [k, v] of fa) expect(v.equals(fb.get(k)!), k).toBe(true);
}

describe('hub: loaded by id from a loopback host', () => {
  for (const dtype of ['fp32', 'fp16'] as const) {
    it(`from_pretrained('${ID}', { dtype: '${dtype}' }) prunes to the same bytes as the folder on disk`, async () => {
      env.allowRemoteModels = true;
      const remote = await AutoModelForCausalLM.from_pretrained(ID, { dtype });
      await pruneModel(remote, opts);
      const outRemote = path.join(work, `out-remote-${dtype}`);
      await savePruned(remote, outRemote, { variants: false }); // the cache holds only what was downloaded
      expect(hub.requests.some((r) => r.endsWith(dtype === 'fp32' ? '/onnx/model.onnx_data' : '/onnx/model_fp16.onnx'))).toBe(true);

      const { model: local } = await loadModelDir(folder, { dtype });
      await pruneModel(local, opts);
      const outLocal = path.join(work, `out-local-${dtype}`);
      await savePruned(local, outLocal, { variants: false });
      expectSameOnnx(outRemote, outLocal);
      const files = [...onnxFiles(outRemote).keys()];
      expect(files).toEqual(dtype === 'fp32' ? ['model.onnx', 'model.onnx_data'] : ['model_fp16.onnx']);
      const a = JSON.parse(readFileSync(path.join(outRemote, 'pruning.json'), 'utf8'));
      const b = JSON.parse(readFileSync(path.join(outLocal, 'pruning.json'), 'utf8'));
      expect(a.linears).toEqual(b.linears);
      expect(a.source.sha256).toBe(b.source.sha256);
      expect(a.realizedSparsity).toBeCloseTo(0.5, 6);
    }, 180_000);
  }

  it('CLI: dsa-prune prune org/name --allow-remote --dtype fp16 = the same folder from disk', async () => {
    const calib = path.join(work, 'calib.txt');
    writeFileSync(calib, 'Once upon a time there was a little dog who liked to run in the park with his friends. '.repeat(20));
    const common = ['--method', 'wanda', '--sparsity', '0.5', '--calibration', calib, '--nsamples', '2', '--seqlen', '16', '--dtype', 'fp16', '--quiet'];
    const io1 = memoryIo();
    expect(await main(['prune', ID, '--allow-remote', '--out', path.join(work, 'cli-remote'), ...common], io1), io1.stderrText).toBe(0);
    const io2 = memoryIo();
    expect(await main(['prune', folder, '--out', path.join(work, 'cli-local'), ...common], io2), io2.stderrText).toBe(0);
    expectSameOnnx(path.join(work, 'cli-remote'), path.join(work, 'cli-local'));
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) expect(existsSync(path.join(work, 'cli-remote', f)), f).toBe(true);
  }, 180_000);

  const bad: [string, string[], RegExp][] = [
    ['a repository id the host does not have', ['onnx-community/no-such-model', '--allow-remote'], /model onnx-community\/no-such-model was not found on http:\/\/127\.0\.0\.1:\d+\/ \(no .*config\.json\)/],
    ['a repository without onnx/', ['onnx-community/config-only', '--allow-remote'], /model onnx-community\/config-only on http:\/\/127\.0\.0\.1:\d+\/ has no onnx\/model\.onnx \(dtype fp32\)/],
    ['an id without --allow-remote', ['onnx-community/no-such-model'], /model folder .* does not exist/],
    ['a context shorter than seqlen', [folder, '--seqlen', '9000'], /seqlen 9000 is above the model's context length 8192/],
  ];
  for (const [label, args, message] of bad) {
    it(`bad input: ${label} → one clear line, nothing written`, async () => {
      const out = path.join(work, `bad-${label.replace(/\W+/g, '-')}`);
      const io = memoryIo();
      const code = await main(['prune', ...args, '--out', out, '--method', 'magnitude', '--quiet'], io);
      expect(code).not.toBe(0);
      const errLines = io.stderrText.split('\n').filter((l) => l.startsWith('error:'));
      expect(errLines).toHaveLength(1);
      expect(errLines[0]).toMatch(message);
      expect(existsSync(out)).toBe(false);
    }, 60_000);
  }
});
