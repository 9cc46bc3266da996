/**
 * Where the bytes of a q4 file go (docs/compression.md, "Where the bytes go"):
 *   npx tsx bench/q4-bytes.bench.ts <file.onnx> [<file.onnx> …]
 * For each plain or sparse q4 file: bytes of the embedding table, of the lm_head (the MatMulNBits whose output is
 * `logits`; a tied embedding reads its initializers), of the block linears' codes / scales / zero points (plain) or
 * block mask / element mask / non-zero codes / scales (sparse), other initializers, and the graph itself (file size
 * minus all initializer payloads: node and value names, attributes, protobuf framing).
 */
import { statSync } from 'node:fs';
import { readModelFile, tensorBytes } from '../src/model/onnx.js';
import { SPARSE_Q_PREFIX } from '../src/compress/index.js';

for (const file of process.argv.slice(2)) {
  const m = readModelFile(file);
  const g = m.graph;
  const lm = g.node.find((n) => n.op_type === 'MatMulNBits' && g.output.some((o) => o.name === n.output[0]));
  const lmInputs = new Set(lm ? lm.input.slice(1) : []);
  const embTables = new Set(g.node.filter((n) => n.op_type === 'Gather' || n.op_type === 'GatherBlockQuantized' || n.op_type === 'DequantizeLinear').flatMap((n) => n.input));
  const nbits = g.node.filter((n) => n.op_type === 'MatMulNBits');
  const role = new Map<string, string>();
  for (const n of nbits) {
    if (n === lm) continue;
    role.set(n.input[1], 'block linears: B (codes)');
    role.set(n.input[2], 'block linears: scales');
    role.set(n.input[3], 'block linears: zero points');
  }
  const bytes = new Map<string, number>();
  let payload = 0;
  for (const t of g.initializer) {
    const b = tensorBytes(t).length;
    payload += b;
    const name = t.name!;
    let cat: string;
    if (lmInputs.has(name)) cat = 'lm_head (codes, scales, zero points)';
    else if (name.startsWith(`${SPARSE_Q_PREFIX}h/`)) cat = 'lm_head / dense weights: fp16 scales';
    else if (name.startsWith(SPARSE_Q_PREFIX)) {
      const part = name.split('/').pop()!;
      cat = ['bmask', 'emask', 'codes', 'scales'].includes(part) ? `sparse: ${part}` : 'sparse: decoder constants (shapes, offsets)';
    }
    else if (role.has(name)) cat = role.get(name)!;
    else if (embTables.has(name) || name.includes('embed')) cat = 'embedding table (tied: only its Reshape shapes)';
    else cat = 'other initializers';
    bytes.set(cat, (bytes.get(cat) ?? 0) + b);
  }
  const size = statSync(file).size;
  bytes.set('graph (nodes, names, attributes, framing)', size - payload);
  console.log(`\n${file}: ${size.toLocaleString('en-US')} bytes, ${g.node.length} nodes, embedding via ${g.node.some((n) => n.op_type === 'GatherBlockQuantized') ? 'GatherBlockQuantized (4-bit)' : 'DequantizeLinear (int8)'}`);
  console.log('| part | bytes | share |\n|---|---:|---:|');
  for (const [k, v] of [...bytes].sort((a, b) => b[1] - a[1])) console.log(`| ${k} | ${v.toLocaleString('en-US')} | ${((100 * v) / size).toFixed(1)} % |`);
}
