// sizes + load time: plain q4 vs sparse q4 of a pruned folder (writes <dir>-sparse next to it)
import { cpSync, rmSync, statSync } from 'node:fs';
import { sparseQ4Model, writeModelAtomic } from '../src/compress/index.js';
import { readModelFile } from '../src/model/onnx.js';
import * as ort from 'onnxruntime-node';
const dir = process.argv[2];
const out = dir + '-sparse';
rmSync(out, { recursive: true, force: true });
cpSync(dir, out, { recursive: true });
const t0 = performance.now();
const { model, report } = sparseQ4Model(readModelFile(`${dir}/onnx/model_q4.onnx`));
const encMs = performance.now() - t0;
writeModelAtomic(model, `${out}/onnx/model_q4.onnx`);
const plain = statSync(`${dir}/onnx/model_q4.onnx`).size, sparse = statSync(`${out}/onnx/model_q4.onnx`).size;
console.log(JSON.stringify({ plain, sparse, ratio: sparse / plain, encMs: Math.round(encMs), groups: report.weights.length, skipped: report.skipped.length, kept: report.weights.reduce((a, w) => a + w.keptBlocks!, 0), blocks: report.weights.reduce((a, w) => a + w.blocks!, 0) }));
for (let rep = 0; rep < 3; rep++) for (const f of [`${dir}/onnx/model_q4.onnx`, `${out}/onnx/model_q4.onnx`]) {
  const t = performance.now(); const s = await ort.InferenceSession.create(f); const ms = performance.now() - t; await s.release();
  console.log(rep, f.includes('-sparse') ? 'sparse' : 'plain', 'session create ms', Math.round(ms));
}
