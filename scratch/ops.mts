import { readModelFile, tensorDims } from '../src/model/onnx.js';
const m = readModelFile('../shared/models/layouts/gpt2/onnx/model.onnx');
const ops = new Map<string, number>(); for (const n of m.graph.node) ops.set(n.op_type!, (ops.get(n.op_type!) ?? 0) + 1);
console.log([...ops].join(' '));
console.log(m.graph.node.filter(n => n.op_type === 'Gemm' || n.op_type === 'MatMul').slice(0, 4).map(n => n.op_type + ' ' + n.input.join(',')));
console.log(m.graph.initializer.filter(t => tensorDims(t).length === 2).slice(0, 5).map(t => t.name + ' ' + tensorDims(t)));
