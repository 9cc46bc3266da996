import { quantizeModel, sparseQ4Model } from '../src/compress/index.js';
import { readModelFile } from '../src/model/onnx.js';
import { inlinedModel } from '../src/model/external.js';
import { readdirSync } from 'node:fs';
for (const l of readdirSync('../shared/models/layouts')) {
  const f = `../shared/models/layouts/${l}/onnx/model.onnx`;
  try {
    const m = inlinedModel(readModelFile(f), `../shared/models/layouts/${l}/onnx`);
    const q = quantizeModel(m, 'q4');
    const s = sparseQ4Model(q.model);
    console.log(l, 'q4 matmuls', q.report.matmuls.length, 'sparse groups', s.report.weights.length, 'skipped', s.report.skipped.length, s.report.skipped[0]?.reason);
  } catch (e) { console.log(l, 'ERR', (e as Error).message.slice(0, 200)); }
}
