// onnxruntime session creation time (default options, as transformers.js) of plain vs sparse q4; median of 3, same run.
import * as ort from 'onnxruntime-node';
for (const s of ['0.5', '0.7']) {
  const res: Record<string, number[]> = { plain: [], sparse: [] };
  for (let rep = 0; rep < 3; rep++) for (const [k, f] of [['plain', `scratch/out/wanda${s}/onnx/model_q4.onnx`], ['sparse', `scratch/out/wanda${s}-sparse/onnx/model_q4.onnx`]]) {
    const t = performance.now(); const sess = await ort.InferenceSession.create(f); res[k].push(performance.now() - t); await sess.release();
  }
  const med = (a: number[]) => a.sort((x, y) => x - y)[1];
  console.log(s, 'plain ms', Math.round(med(res.plain)), 'sparse ms', Math.round(med(res.sparse)), 'ratio', (med(res.sparse) / med(res.plain)).toFixed(2));
}
