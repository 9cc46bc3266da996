/**
 * What do the calibration block sessions lose by taking their weights as graph inputs? onnxruntime pre-packs the B of
 * a MatMul only when B is a constant initializer; the canonical block sessions (docs/calibration.md) feed every weight
 * as an input so that one session serves all identical blocks. One MatMul at SmolLM2's gate/up size (4096 tokens ×
 * 576 → 1536), B as an input vs as an initializer, alternated twice: ms per run and GFLOP/s.
 *
 *   npx tsx bench/ort-prepack.bench.ts
 */
import * as ort from 'onnxruntime-node';
import { createNode, createTensor, DataType, encodeModel, type ModelProto } from '../src/model/onnx.js';
import { record } from './harness.js';

const M = 4096;
const K = 576;
const N = 1536;
const REPEAT = 10;

const b = new Float32Array(K * N).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
const a = new Float32Array(M * K).map((_, i) => ((i * 104729) % 1000) / 1000 - 0.5);
const info = (name: string, dims: number[]) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } });

function model(initializer: boolean): Uint8Array {
  const m: ModelProto = {
    ir_version: 8, opset_import: [{ domain: '', version: 17 }], producer_name: 'ort-prepack bench',
    graph: {
      name: 'g', node: [createNode({ op_type: 'MatMul', name: 'mm', input: ['A', 'B'], output: ['Y'] })],
      input: initializer ? [info('A', [M, K])] : [info('A', [M, K]), info('B', [K, N])],
      initializer: initializer ? [createTensor({ name: 'B', dims: [K, N], data_type: DataType.FLOAT, raw_data: new Uint8Array(b.buffer) })] : [],
      value_info: [], output: [{ name: 'Y' }],
    },
  };
  return encodeModel(m);
}

const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2, graphOptimizationLevel: 'all', logSeverityLevel: 3, enableMemPattern: false };
for (const initializer of [false, true, false, true]) {
  const s = await ort.InferenceSession.create(model(initializer), opts);
  const feeds: Record<string, ort.Tensor> = { A: new ort.Tensor('float32', a, [M, K]) };
  if (!initializer) feeds.B = new ort.Tensor('float32', b, [K, N]);
  await s.run(feeds); // warm-up
  const t = performance.now();
  for (let i = 0; i < REPEAT; i++) await s.run(feeds);
  const seconds = (performance.now() - t) / 1000 / REPEAT;
  record({ name: `MatMul ${M}×${K}·${K}×${N}, B as ${initializer ? 'an initializer' : 'an input'}`, seconds, notes: `${((2 * M * K * N) / seconds / 1e9).toFixed(1)} GFLOP/s, mean of ${REPEAT}` });
  await s.release();
}
