import { readModelFile, tensorBytes, encodeModel } from '../src/model/onnx.js';
const m = readModelFile(process.argv[2]);
const groups = new Map<string, number>();
let tot = 0;
for (const t of m.graph.initializer) { const b = tensorBytes(t).length; tot += b; const key = t.name!.replace(/^dsa_prune_sparseq\/\d+\//, 'SQ/').replace(/.*\//, (x) => x); groups.set(key.startsWith('SQ/') ? key : key.split('/').pop()!, (groups.get(key.startsWith('SQ/') ? key : key.split('/').pop()!) ?? 0) + b); }
console.log('file', encodeModel(m).length, 'inits', tot, 'nodes', m.graph.node.length);
console.log([...groups].sort((a, b) => b[1] - a[1]).slice(0, 12));
const nodesOnly = encodeModel({ ...m, graph: { ...m.graph, initializer: [] } }).length; console.log('without inits', nodesOnly);
