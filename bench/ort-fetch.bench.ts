/**
 * Does onnxruntime skip nodes a run does not fetch? (It does not: the calibration block graphs are built around that,
 * docs/calibration.md "Each pass runs only what it needs".) A graph x → ReduceSumSquare (cheap) and x → three chained
 * 1024² MatMuls (expensive), x = 2048 × 1024: ms per run fetching only the cheap output, only the expensive one, the
 * same cheap output from a graph holding only the reduction, and from an If whose taken branch is the reduction (the
 * MatMuls in the branch not taken).
 *
 *   npx tsx bench/ort-fetch.bench.ts
 */
import * as ort from 'onnxruntime-node';
import { createNode, createTensor, DataType, encodeModel, type GraphProto, type ModelProto, type NodeProto } from '../src/model/onnx.js';
import { record } from './harness.js';

const D = 1024;
const ROWS = 2048;
const REPEAT = 5;

const w = new Float32Array(D * D).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
const weight = createTensor({ name: 'w', dims: [D, D], data_type: DataType.FLOAT, raw_data: new Uint8Array(w.buffer) });
const keep0 = { name: 'keepdims', type: 2, i: 0 };
const cheap = createNode({ op_type: 'ReduceSumSquare', name: 'cheap', input: ['x'], output: ['c'], attribute: [keep0] });
const mms = [
  createNode({ op_type: 'MatMul', name: 'mm1', input: ['x', 'w'], output: ['y1'] }),
  createNode({ op_type: 'MatMul', name: 'mm2', input: ['y1', 'w'], output: ['y2'] }),
  createNode({ op_type: 'MatMul', name: 'mm3', input: ['y2', 'w'], output: ['y3'] }),
];

function model(node: NodeProto[], outputs: string[], extraInputs: GraphProto['input'] = []): Uint8Array {
  const m: ModelProto = {
    ir_version: 8, opset_import: [{ domain: '', version: 17 }], producer_name: 'ort-fetch bench',
    graph: {
      name: 'g', node, initializer: [weight], value_info: [], output: outputs.map((name) => ({ name })),
      input: [{ name: 'x', type: { tensor_type: { elem_type: DataType.FLOAT, shape: { dim: [{ dim_value: ROWS }, { dim_value: D }] } } } }, ...extraInputs],
    },
  };
  return encodeModel(m);
}

const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2, logSeverityLevel: 3, enableMemPattern: false };
const x = new ort.Tensor('float32', new Float32Array(ROWS * D).fill(0.01), [ROWS, D]);

async function time(name: string, s: ort.InferenceSession, feeds: Record<string, ort.Tensor>, fetch: string[]): Promise<void> {
  await s.run(feeds, fetch); // warm-up
  const t = performance.now();
  for (let i = 0; i < REPEAT; i++) await s.run(feeds, fetch);
  record({ name, seconds: (performance.now() - t) / 1000 / REPEAT, notes: `per run, mean of ${REPEAT}` });
}

const both = await ort.InferenceSession.create(model([cheap, ...mms], ['c', 'y3']), opts);
await time('graph with both, fetch the reduction only', both, { x }, ['c']);
await time('graph with both, fetch the last MatMul only', both, { x }, ['y3']);
const only = await ort.InferenceSession.create(model([cheap], ['c']), opts);
await time('graph with the reduction only', only, { x }, ['c']);
// If(gate): then = the reduction, else = the MatMuls reduced the same way; only the taken branch runs.
const branch = (name: string, node: NodeProto[], out: string): GraphProto => ({ name, node, initializer: [], input: [], value_info: [], output: [{ name: out }] });
const gated = createNode({
  op_type: 'If', name: 'gate', input: ['gate'], output: ['c'],
  attribute: [
    { name: 'then_branch', type: 5, g: branch('cheap', [{ ...cheap, output: ['c_then'] }], 'c_then') },
    { name: 'else_branch', type: 5, g: branch('expensive', [...mms, createNode({ op_type: 'ReduceSumSquare', name: 'r', input: ['y3'], output: ['c_else'], attribute: [keep0] })], 'c_else') },
  ],
});
const ifs = await ort.InferenceSession.create(model([gated], ['c'], [{ name: 'gate', type: { tensor_type: { elem_type: DataType.BOOL, shape: { dim: [] } } } }]), opts);
await time('If, reduction branch taken', ifs, { x, gate: new ort.Tensor('bool', new Uint8Array([1]), []) }, ['c']);
await time('If, MatMul branch taken', ifs, { x, gate: new ort.Tensor('bool', new Uint8Array([0]), []) }, ['c']);
