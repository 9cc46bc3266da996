/**
 * pruneModel's undo after a failure: every weight is back bit for bit, without a copy of the weights (the tensor holds
 * its old bytes / external-data reference again), and a prune after the failed one gives the same weights as a prune
 * of a fresh model. stories260k (inline weights) and a toy folder with external data.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AutoModelForCausalLM, env } from '@huggingface/transformers';
import * as ort from 'onnxruntime-node';
import '../../src/index.js';
import { attachModel, pruneModel, wanda, type PruningMethod, type PrunableModel } from '../../src/index.js';
import { isExternal } from '../../src/model/onnx.js';
import { buildToyDecoder, writeToyFolder } from '../fixtures/graphs.js';

env.allowRemoteModels = false;
const LONG = 300_000;
const repo = path.resolve(import.meta.dirname, '../..');
const modelDir = path.join(repo, 'models/stories260k');
const calibration = readFileSync(path.join(repo, 'data/tinystories/tinystories_calibration.txt'), 'utf8');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-rollback-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Wanda that throws on its (after + 1)-th linear: blocks before it are pruned when the failure hits. */
function failingAfter(after: number): PruningMethod {
  let n = 0;
  return {
    name: 'wanda-then-fail', needs: wanda.needs,
    prune: (ctx) => {
      if (++n > after) throw new Error('injected failure');
      return wanda.prune(ctx);
    },
  };
}

const weights = (pm: PrunableModel) => pm.linears.map((l) => pm.readWeight(l));
const tensorOf = (pm: PrunableModel, name: string) => pm.proto.graph.initializer.find((t) => t.name === name)!;

function expectSameBits(got: Float32Array[], want: Float32Array[]): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    expect(Buffer.compare(Buffer.from(got[i]!.buffer, got[i]!.byteOffset, got[i]!.byteLength), Buffer.from(want[i]!.buffer, want[i]!.byteOffset, want[i]!.byteLength)), `linear ${i}`).toBe(0);
  }
}

const load = () => AutoModelForCausalLM.from_pretrained(modelDir, { dtype: 'fp32' });
const opts = { sparsity: 0.5, calibration, nsamples: 8, seqlen: 128 };

describe('pruneModel undo after a failure', () => {
  it('stories260k: weights back bit for bit (also after an earlier prune), same tensors, then the same prune as a fresh model', async () => {
    const fresh = await load();
    await pruneModel(fresh, { method: 'wanda', ...opts });
    const expected = weights(await attachModel(fresh));

    const model = await load();
    const pm = await attachModel(model);
    const before = weights(pm);
    const rawBefore = pm.linears.map((l) => tensorOf(pm, l.weight).raw_data);
    const e = await pruneModel(model, { method: failingAfter(20), ...opts }).catch((x) => x);
    expect(String(e?.message)).toMatch(/injected failure/);
    expectSameBits(weights(pm), before);
    // The undo put the very same bytes back (nothing was copied to be able to).
    pm.linears.forEach((l, i) => expect(tensorOf(pm, l.weight).raw_data).toBe(rawBefore[i]));

    await pruneModel(model, { method: 'wanda', ...opts });
    const pruned = weights(pm);
    expectSameBits(pruned, expected);
    // A failing second prune returns to the first prune's weights (inline edits, not the source file).
    await pruneModel(model, { method: failingAfter(30), ...opts, sparsity: 0.7 }).catch(() => undefined);
    expectSameBits(weights(pm), pruned);
  }, LONG);

  it('external data: failed linears point at the data file again, weights bit for bit', async () => {
    const toy = buildToyDecoder({ blocks: 3, hidden: 16, inter: 24, vocab: 32 });
    const onnxPath = writeToyFolder(path.join(work, 'toy'), toy, { external: 'one' });
    const model = { sessions: { model: await ort.InferenceSession.create(onnxPath, { logSeverityLevel: 3 }) } };
    const pm = await attachModel(model);
    const before = weights(pm);
    expect(pm.linears.every((l) => isExternal(tensorOf(pm, l.weight)))).toBe(true);
    const ids = Int32Array.from({ length: 4 * 16 }, (_, i) => (i * 7) % 32);
    const e = await pruneModel(model, { method: failingAfter(10), sparsity: 0.5, calibration: { ids }, nsamples: 4, seqlen: 16 }).catch((x) => x);
    expect(String(e?.message)).toMatch(/injected failure/);
    expect(pm.linears.every((l) => isExternal(tensorOf(pm, l.weight)))).toBe(true);
    expectSameBits(weights(pm), before);
  }, LONG);
});
