/**
 * Σx² over the rows of [n × d] float32: ReduceSumSquare (axis 0) against Mul(x, x) + ReduceSum (axis 0), opset 17
 * and 18, on 8 shapes: mismatches of each against a JS loop summing the float32 squares row after row, and CPU ms
 * per run (same process, alternated). docs/scale.md, "Where the passes' time goes".
 *
 *   npx tsx bench/sq-reduce-probe.ts [threads, default 2]
 */
import * as ort from 'onnxruntime-node';
import { DataType, createNode, createTensor, encodeModel, type ModelProto } from '../src/model/onnx.js';
const io = (name: string) => ({ name, type: { tensor_type: { elem_type: DataType.FLOAT } } });
const c64 = (n: string, v: number[]) => createNode({ op_type: 'Constant', name: n, output: [n], attribute: [{ name: 'value', type: 4, t: createTensor({ dims: [v.length], data_type: DataType.INT64, raw_data: new Uint8Array(BigInt64Array.from(v.map(BigInt)).buffer) }) }] });
function model(kind: 'rss' | 'mulsum', opset: number): Uint8Array {
  const node = kind === 'rss'
    ? opset >= 18 ? [c64('ax', [0]), createNode({ op_type: 'ReduceSumSquare', name: 'r', input: ['x', 'ax'], output: ['y'], attribute: [{ name: 'keepdims', type: 2, i: 0 }] })]
      : [createNode({ op_type: 'ReduceSumSquare', name: 'r', input: ['x'], output: ['y'], attribute: [{ name: 'axes', type: 7, ints: [0] }, { name: 'keepdims', type: 2, i: 0 }] })]
    : [createNode({ op_type: 'Mul', name: 'm', input: ['x', 'x'], output: ['x2'] }), c64('ax', [0]), createNode({ op_type: 'ReduceSum', name: 'r', input: ['x2', 'ax'], output: ['y'], attribute: [{ name: 'keepdims', type: 2, i: 0 }] })];
  return encodeModel({ ir_version: 8, opset_import: [{ domain: '', version: opset }], producer_name: 'p', graph: { name: 'g', initializer: [], input: [io('x')], output: [io('y')], value_info: [], node } } as ModelProto);
}
let seed = 1;
const rnd = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32; };
const threads = Number(process.argv[2] ?? 2);
const so = { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential' as const, graphOptimizationLevel: 'all' as const, enableMemPattern: false, logSeverityLevel: 3 as const };
for (const opset of [17, 18]) {
  const a = await ort.InferenceSession.create(model('rss', opset), so);
  const b = await ort.InferenceSession.create(model('mulsum', opset), so);
  for (const [n, d] of [[4096, 576], [4096, 1536], [1000, 577], [1, 64], [3, 5], [100000, 8], [2560, 896], [4096, 8192]] as const) {
    const x = new Float32Array(n * d);
    for (let i = 0; i < x.length; i++) x[i] = (rnd() - 0.5) * 2 * (1 + (i % 7)) * (rnd() < 0.01 ? 100 : 1);
    const t = new ort.Tensor('float32', x, [n, d]);
    const js = new Float32Array(d);
    for (let r = 0; r < n; r++) for (let j = 0; j < d; j++) { const v = x[r * d + j]!; js[j] = js[j]! + Math.fround(v * v); }
    const ya = (await a.run({ x: t })).y!.data as Float32Array;
    const yb = (await b.run({ x: t })).y!.data as Float32Array;
    let dA = 0, dB = 0;
    for (let j = 0; j < d; j++) { if (ya[j] !== js[j]) dA++; if (yb[j] !== js[j]) dB++; }
    const time = async (s: ort.InferenceSession, k: number) => { const c = process.cpuUsage(); for (let i = 0; i < k; i++) await s.run({ x: t }); const u = process.cpuUsage(c); return (u.user + u.system) / 1e3 / k; };
    const k = Math.max(2, Math.floor(2e8 / x.length / 10));
    const ta = await time(a, k), tb = await time(b, k), ta2 = await time(a, k), tb2 = await time(b, k);
    console.log(`opset ${opset} threads ${threads} [${n}x${d}]: rss≠js ${dA}, mulsum≠js ${dB}; CPU ms/run rss ${((ta + ta2) / 2).toFixed(2)} mulsum ${((tb + tb2) / 2).toFixed(2)}`);
  }
}
