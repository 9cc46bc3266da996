/**
 * float16 graphs: the statistics nodes cast X to float32 before reducing, and fp16 weights are fed back as fp16.
 * A hand-built two-block fp16 graph (embedding → per block: up MatMul, Relu, down MatMul, residual Add) checked
 * against a float64 computation in JS.
 */
import { describe, expect, it } from 'vitest';
import { runCalibration, type CalibrationModel } from '../../src/calibration/index.js';
import { createNode, createTensor, DataType, float32ToFp16, fp16ToFloat32, tensorToFloat32, setTensorFloat32, type ModelProto, type TensorProto } from '../../src/model/onnx.js';
import type { LinearInfo } from '../../src/types.js';

const V = 11;
const D = 6;
const L = 2;

function fp16Tensor(name: string, dims: number[], values: Float32Array): TensorProto {
  return createTensor({ name, dims, data_type: DataType.FLOAT16, raw_data: new Uint8Array(float32ToFp16(values).buffer) });
}

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let a = seed;
  for (let i = 0; i < n; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = (a / 2 ** 32 - 0.5) * 2;
  }
  return fp16ToFloat32(float32ToFp16(out));
}

function buildModel(): { model: CalibrationModel & { write(name: string, v: Float32Array): void }; embed: Float32Array } {
  const embed = values(V * D, 1);
  const inits: TensorProto[] = [fp16Tensor('embed', [V, D], embed)];
  const nodes = [createNode({ op_type: 'Gather', name: '/model/embed_tokens/Gather', input: ['embed', 'input_ids'], output: ['h0'] })];
  const linears: LinearInfo[] = [];
  for (let b = 0; b < L; b++) {
    const s = `/model/layers.${b}`;
    for (const [role, w] of [['up', `up_${b}`], ['down', `down_${b}`]] as const) {
      inits.push(fp16Tensor(w, [D, D], values(D * D, 10 + b * 2 + (role === 'up' ? 0 : 1))));
      linears.push({ name: `model.layers.${b}.mlp.${role}_proj`, block: b, role, dIn: D, dOut: D, dtype: 'float16', node: `${s}/mlp/${role}_proj/MatMul`, weight: w });
    }
    nodes.push(
      createNode({ op_type: 'MatMul', name: `${s}/mlp/up_proj/MatMul`, input: [`h${b}`, `up_${b}`], output: [`${s}/u`] }),
      createNode({ op_type: 'Relu', name: `${s}/mlp/act/Relu`, input: [`${s}/u`], output: [`${s}/r`] }),
      createNode({ op_type: 'MatMul', name: `${s}/mlp/down_proj/MatMul`, input: [`${s}/r`, `down_${b}`], output: [`${s}/d`] }),
      createNode({ op_type: 'Add', name: `${s}/Add`, input: [`h${b}`, `${s}/d`], output: [`h${b + 1}`] }),
    );
  }
  nodes.push(createNode({ op_type: 'Cast', name: '/model/norm/Cast', input: [`h${L}`], output: ['logits'], attribute: [{ name: 'to', type: 2, i: DataType.FLOAT }] }));
  const proto: ModelProto = {
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    graph: {
      name: 'fp16', node: nodes, initializer: inits, value_info: [],
      input: [{ name: 'input_ids', type: { tensor_type: { elem_type: DataType.INT64, shape: { dim: [{ dim_param: 'b' }, { dim_param: 't' }] } } } }],
      output: [{ name: 'logits', type: { tensor_type: { elem_type: DataType.FLOAT } } }],
    },
  };
  const byName = new Map(inits.map((t) => [t.name!, t]));
  return {
    embed,
    model: {
      proto, linears,
      readInitializer: (n) => tensorToFloat32(byName.get(n)!),
      write: (n, v) => setTensorFloat32(byName.get(n)!, v),
    },
  };
}

describe('float16 graphs', () => {
  it('statistics in float32 or better from an fp16 graph, pruned fp16 weights picked up sequentially', async () => {
    const { model, embed } = buildModel();
    const nsamples = 3;
    const seqlen = 5;
    const ids = Int32Array.from({ length: nsamples * seqlen }, (_, i) => (i * 7) % V);
    const got = new Map<string, Float64Array>();
    await runCalibration(model, ids, { nsamples, seqlen, batchSize: 2, needs: { sq: true, gram: true } }, (b, stats) => {
      for (const [k, v] of stats) got.set(k, v.sq);
      const g = stats.get(`model.layers.${b}.mlp.up_proj`)!.gram!;
      for (let j = 0; j < D; j++) expect(g[j * D + j]).toBeCloseTo(stats.get(`model.layers.${b}.mlp.up_proj`)!.sq[j]!, 3);
      // "Prune": zero block 0's up projection entirely, so block 1 sees h1 = h0 (down of relu(0) = 0).
      if (b === 0) model.write('up_0', new Float32Array(D * D));
    });
    // Block 0 up input = the embedding rows (exact in fp16): Σx² in float64.
    const want0 = new Float64Array(D);
    for (const t of ids) for (let j = 0; j < D; j++) want0[j] += embed[t * D + j]! ** 2;
    const up0 = got.get('model.layers.0.mlp.up_proj')!;
    for (let j = 0; j < D; j++) expect(Math.abs(up0[j]! - want0[j]!)).toBeLessThanOrEqual(1e-6 * want0[j]!);
    // After pruning block 0 to zero, block 1's input is the embedding again.
    const up1 = got.get('model.layers.1.mlp.up_proj')!;
    for (let j = 0; j < D; j++) expect(Math.abs(up1[j]! - want0[j]!)).toBeLessThanOrEqual(1e-6 * want0[j]!);
  });
});
