/**
 * Sparse q4 sizes and load time (docs/compression.md):
 *   npx tsx bench/sparse-q4.bench.ts <prunedDir> [<prunedDir> …]
 * Each folder must hold onnx/model_q4.onnx (plain q4, e.g. `dsa-prune prune … --quantize q4`). Its sparse q4 form is
 * written to a temporary folder; prints both sizes, the ratio, and onnxruntime session creation time (default options,
 * as transformers.js uses them) of both files, median of 3 in the same run, and the ratio.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { sparseQ4Model, writeModelAtomic } from '../src/compress/index.js';
import { readModelFile } from '../src/model/onnx.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'dsa-sq4-bench-'));
try {
  console.log('| folder | plain q4 bytes | sparse q4 bytes | ratio | plain load ms | sparse load ms | load ratio |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const [i, dir] of process.argv.slice(2).entries()) {
    const plain = path.join(dir, 'onnx/model_q4.onnx');
    const sparse = path.join(tmp, `${i}.onnx`);
    writeModelAtomic(sparseQ4Model(readModelFile(plain)).model, sparse);
    const times: Record<string, number[]> = { plain: [], sparse: [] };
    for (let rep = 0; rep < 3; rep++) {
      for (const [k, f] of [['plain', plain], ['sparse', sparse]] as const) {
        const t = performance.now();
        const s = await ort.InferenceSession.create(f);
        times[k].push(performance.now() - t);
        await s.release();
      }
    }
    const med = (a: number[]): number => [...a].sort((x, y) => x - y)[1];
    const a = statSync(plain).size;
    const b = statSync(sparse).size;
    console.log(`| ${dir} | ${a.toLocaleString('en-US')} | ${b.toLocaleString('en-US')} | ${(b / a).toFixed(3)} | ${Math.round(med(times.plain))} | ${Math.round(med(times.sparse))} | ${(med(times.sparse) / med(times.plain)).toFixed(2)} |`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
