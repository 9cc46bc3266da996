import * as ort from 'onnxruntime-node';
import { readFileSync, writeFileSync } from 'node:fs';
import { quantizeModel } from '/work/wt-sparseq4/src/compress/index.js';
import { sparseQ4Model } from '/work/wt-sparseq4/src/compress/sparse-q4.js';
import { readModelFile, encodeModel, decodeModel, tensorToFloat32, setTensorFloat32, tensorDims, DataType } from '/work/wt-sparseq4/src/model/onnx.js';
const m = readModelFile('/work/wt-sparseq4/models/stories260k/onnx/model.onnx');
// zero 60% of each MatMul weight (small magnitude)
const mm = new Set(m.graph.node.filter(n => n.op_type === 'MatMul').map(n => n.input[1]));
for (const t of m.graph.initializer) if (mm.has(t.name!) && t.data_type === DataType.FLOAT && tensorDims(t).length === 2) {
  const w = tensorToFloat32(t); const s = Array.from(w).map(Math.abs).sort((a, b) => a - b); const th = s[Math.floor(s.length * 0.6)];
  for (let i = 0; i < w.length; i++) if (Math.abs(w[i]) < th) w[i] = 0; setTensorFloat32(t, w);
}
const q = quantizeModel(m, 'q4').model;
const t0 = performance.now();
const { model: sq, report } = sparseQ4Model(q);
console.log('encode ms', performance.now() - t0, report.bytesBefore, report.bytesAfter, report.skipped.slice(0, 3));
const a = encodeModel(q), b = encodeModel(sq);
console.log('file', a.length, b.length, b.length / a.length);
writeFileSync('/tmp/sq4/sq.onnx', b);
const s1 = await ort.InferenceSession.create(a);
const s2 = await ort.InferenceSession.create(b, { optimizedModelFilePath: '/tmp/sq4/opt.onnx' });
const opt = decodeModel(readFileSync('/tmp/sq4/opt.onnx'));
console.log('opt nodes with prefix', opt.graph.node.filter(n => (n.name ?? '').startsWith('dsa_prune_sparseq/')).length, 'total nodes', opt.graph.node.length, 'ops', [...new Set(opt.graph.node.map(n => n.op_type))].join(','));
console.log(s1.inputNames);
const feeds: Record<string, ort.Tensor> = {};
const T = 5;
for (const name of s1.inputNames) {
  if (name === 'input_ids') feeds[name] = new ort.Tensor('int64', BigInt64Array.from([1n, 50n, 100n, 7n, 300n]), [1, T]);
  else if (name === 'attention_mask') feeds[name] = new ort.Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 1n, 1n]), [1, T]);
  else if (name === 'position_ids') feeds[name] = new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n, 4n]), [1, T]);
  else { const md = s1.inputMetadata.find((x: any) => x.name === name) as any; const shape = md.shape.map((d: any) => typeof d === 'number' ? d : (String(d).includes('batch') ? 1 : 0)); feeds[name] = new ort.Tensor('float32', new Float32Array(0), shape); }
}
const o1 = await s1.run(feeds), o2 = await s2.run(feeds);
const l1 = o1.logits.data as Float32Array, l2 = o2.logits.data as Float32Array;
let diff = 0; for (let i = 0; i < l1.length; i++) diff = Math.max(diff, Math.abs(l1[i] - l2[i]));
console.log('max logit diff', diff, l1.length);
