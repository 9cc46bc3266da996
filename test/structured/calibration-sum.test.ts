/**
 * The calibration engine's Σx (needs.sum, added for FLAP) against a float64 sum of the same tensors captured from the
 * whole dense model in one plain onnxruntime run (every linear input exposed as an extra graph output).
 */
import path from 'node:path';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { denseStatistics, planGraph } from '../../src/calibration/index.js';
import { buildFeeds } from '../../src/eval/forward.js';
import { encodeModel, readModelFile } from '../../src/model/onnx.js';
import { loadFixture, repoRoot } from '../calibration/fixture.js';

const dir = path.join(repoRoot, 'models/stories260k');
const N = 3;
const T = 20;
const windows = Int32Array.from({ length: N * T }, (_, i) => 3 + ((i * 7919) % 500));

describe('calibration Σx', () => {
  it('equals a float64 sum of the captured linear inputs; absent unless asked for', async () => {
    const m = loadFixture(dir);
    const stats = await denseStatistics(m, windows, { nsamples: N, seqlen: T, batchSize: 2, needs: { sq: true, gram: false, sum: true } });
    const plain = await denseStatistics(m, windows, { nsamples: N, seqlen: T, batchSize: 2, needs: { sq: true, gram: false } });
    expect([...plain.values()].every((s) => s.sum === undefined)).toBe(true);
    const plan = planGraph(m.proto, m.linears);
    const inputs = plan.statsInputs.flat();
    const proto = readModelFile(path.join(dir, 'onnx/model.onnx'));
    for (const s of inputs) proto.graph.output.push({ name: s.tensor });
    const session = await ort.InferenceSession.create(encodeModel(proto), { logSeverityLevel: 3 });
    const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const out = await session.run(buildFeeds(session as never, windows, N, T, { config }), inputs.map((s) => s.tensor));
    for (const s of inputs) {
      const x = out[s.tensor]!.data as Float32Array;
      const want = new Float64Array(s.dIn);
      for (let t = 0; t < x.length / s.dIn; t++) for (let j = 0; j < s.dIn; j++) want[j] += x[t * s.dIn + j]!;
      const got = stats.get(s.linears[0]!)!.sum!;
      const scale = Math.max(...want.map(Math.abs));
      for (let j = 0; j < s.dIn; j++) expect(Math.abs(got[j]! - want[j]!)).toBeLessThanOrEqual(1e-5 * scale + 1e-6);
    }
  }, 300_000);
});
