/**
 * loadModelDir: the CLI's loader — a folder or a model id from transformers.js's local model path, the tokenizer,
 * the attached PrunableModel, and one clear DsaPruneError per bad folder.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { env } from '@huggingface/transformers';
import { DsaPruneError } from '../../src/errors.js';
import { loadModelDir, validateModelFolder } from '../../src/model/index.js';
import { buildToyDecoder, writeToyFolder } from '../fixtures/graphs.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const stories = path.join(repoRoot, 'models/stories260k');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-load-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function rejection(p: Promise<unknown>): Promise<DsaPruneError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(DsaPruneError);
  return e as DsaPruneError;
}

describe('loadModelDir', () => {
  it('loads stories260k: model, tokenizer, 35 linears; never remote', async () => {
    const { model, tokenizer, prunable } = await loadModelDir(stories, { threads: 1 });
    expect(env.allowRemoteModels).toBe(false);
    expect(prunable.linears).toHaveLength(35);
    expect(prunable.source.sessionOptions).toMatchObject({ intraOpNumThreads: 1 });
    const ids = tokenizer('Once upon a time');
    const out = await model.generate({ ...ids, max_new_tokens: 3, do_sample: false });
    expect(out.dims[1]).toBe(ids.input_ids.dims[1] + 3);
  });

  it('accepts a model id found under env.localModelPath (no download)', async () => {
    const root = path.join(work, 'local-models');
    cpSync(stories, path.join(root, 'tiny-org/stories'), { recursive: true });
    const previous = env.localModelPath;
    env.localModelPath = root;
    try {
      const folder = await validateModelFolder('tiny-org/stories');
      expect(folder.dir).toBe(path.join(root, 'tiny-org/stories'));
      expect(folder.dtype).toBe('fp32');
      const { prunable } = await loadModelDir('tiny-org/stories');
      expect(prunable.source.dir).toBe(path.join(root, 'tiny-org/stories'));
    } finally {
      env.localModelPath = previous;
    }
    const e = await rejection(loadModelDir('nobody/nothing-here'));
    expect(e.code).toBe('not-found');
    expect(e.hint).toMatch(/--allow-remote/); // an id-shaped name: the hint says how to load it from a hub
  });

  it('picks the dtype file: fp32 first, fp16 when only that exists, the one asked for', async () => {
    const d = path.join(work, 'fp16only');
    cpSync(stories, d, { recursive: true });
    cpSync(path.join(d, 'onnx/model.onnx'), path.join(d, 'onnx/model_fp16.onnx'));
    expect((await validateModelFolder(d)).dtype).toBe('fp32');
    expect((await validateModelFolder(d, { dtype: 'fp16' })).onnxPath).toBe(path.join(d, 'onnx/model_fp16.onnx'));
    rmSync(path.join(d, 'onnx/model.onnx'));
    expect((await validateModelFolder(d)).dtype).toBe('fp16');
    expect((await rejection(validateModelFolder(d, { dtype: 'q4' }))).message).toMatch(/no onnx\/model_q4\.onnx for dtype q4/);
    expect((await rejection(validateModelFolder(d, { dtype: 'fp64' }))).message).toMatch(/unknown dtype/);
  });

  it('bad folders: config JSON, model_type missing, unsupported architecture, missing external data', async () => {
    const bad = (name: string, config: string): string => {
      const d = path.join(work, name);
      cpSync(stories, d, { recursive: true });
      writeFileSync(path.join(d, 'config.json'), config);
      return d;
    };
    expect((await rejection(loadModelDir(bad('badjson', '{"model_type": ')))).message).toMatch(/config\.json is not valid JSON/);
    expect((await rejection(loadModelDir(bad('notype', '{"architectures": ["LlamaForCausalLM"]}')))).message).toMatch(/has no model_type/);
    const e = await rejection(loadModelDir(bad('bert', '{"model_type": "bert", "hidden_size": 64}')));
    expect(e.message).toMatch(/not a causal language model transformers\.js can load/);

    // An ONNX file that names an external data file which is not there.
    const d = path.join(work, 'missing-data');
    mkdirSync(d);
    cpSync(stories, d, { recursive: true });
    writeToyFolder(d, buildToyDecoder({}), { external: 'one' });
    rmSync(path.join(d, 'onnx/model.onnx_data'));
    const m = await rejection(loadModelDir(d));
    expect(m.message).toMatch(/model\.onnx_data, which is missing/);
  });
});
