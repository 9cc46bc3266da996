/**
 * Sparse q4 (src/compress/sparse-q4.ts): block mask + bitmask + non-zero 4-bit codes rebuilt by standard ONNX ops.
 * Checked against an independent decoder in this file (reads the sparse file's initializers in float64), against the
 * plain q4 file (same codes: identical dequantized weights, identical logits in onnxruntime), against onnxruntime's
 * optimized graph (the decoder is constant-folded away), and loaded by plain transformers.js in a child process
 * (no plugin, no loading hook) with dtype 'q4'.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import {
  decodeSparseQ4, encodeSparseQ4, postProcessSaved, quantizeQ4, sparseQ4Model, SPARSE_Q_PREFIX, unpackZeroPoints,
} from '../../src/compress/index.js';
import { DsaPruneError } from '../../src/errors.js';
import {
  createNode, createTensor, DataType, decodeModel, encodeModel, readModelFile, tensorBytes, tensorToFloat32,
  type ModelProto, type NodeProto,
} from '../../src/model/onnx.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const stories = path.join(repoRoot, 'models/stories260k');
const bench12l = path.resolve(repoRoot, '../shared/models/bench-12l');

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** IEEE half → number, written out here (independent of src/model/onnx.ts). */
function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const attr = (n: NodeProto, name: string): number => Number(n.attribute.find((a) => a.name === name)!.i);
const bitAt = (bytes: Uint8Array, i: number): number => (bytes[i >> 3] >> (i & 7)) & 1;
const nibbleAt = (bytes: Uint8Array, i: number): number => (i & 1 ? bytes[i >> 1] >> 4 : bytes[i >> 1] & 15);

/** Dequantized weights [N × K] (float64) of every MatMulNBits of a plain q4 model, by output name. */
function plainDequant(m: ModelProto): Map<string, { N: number; K: number; w: Float64Array }> {
  const inits = new Map(m.graph.initializer.map((t) => [t.name!, t]));
  const out = new Map<string, { N: number; K: number; w: Float64Array }>();
  for (const n of m.graph.node.filter((x) => x.op_type === 'MatMulNBits')) {
    const K = attr(n, 'K');
    const N = attr(n, 'N');
    const bs = attr(n, 'block_size');
    const nb = Math.ceil(K / bs);
    const B = tensorBytes(inits.get(n.input[1])!);
    const S = tensorToFloat32(inits.get(n.input[2])!);
    const Z = tensorBytes(inits.get(n.input[3])!);
    const w = new Float64Array(N * K);
    for (let r = 0; r < N; r++) {
      for (let k = 0; k < K; k++) {
        const b = Math.floor(k / bs);
        const q = nibbleAt(B, (r * nb + b) * bs + (k % bs));
        const zp = nibbleAt(Z, r * 2 * Math.ceil(nb / 2) + b);
        w[r * K + k] = (q - zp) * S[r * nb + b];
      }
    }
    out.set(n.output[0], { N, K, w });
  }
  return out;
}

/**
 * Independent decoder of the sparse file: walks each group's block bits, element bits and nibble stream in order and
 * dequantizes every MatMulNBits that reads a group (offsets from its Slice bounds), in float64.
 */
function sparseDequant(m: ModelProto): Map<string, { N: number; K: number; w: Float64Array }> {
  const inits = new Map(m.graph.initializer.map((t) => [t.name!, t]));
  const producer = new Map<string, NodeProto>();
  for (const n of m.graph.node) for (const o of n.output) producer.set(o, n);
  const i64 = (name: string): number => Number(new BigInt64Array(new Uint8Array(tensorBytes(inits.get(name)!)).buffer)[0]);
  const out = new Map<string, { N: number; K: number; w: Float64Array }>();
  for (const n of m.graph.node.filter((x) => x.op_type === 'MatMulNBits')) {
    const K = attr(n, 'K');
    const N = attr(n, 'N');
    const bs = attr(n, 'block_size');
    const nb = Math.ceil(K / bs);
    const Z = tensorBytes(inits.get(n.input[3])!);
    const w = new Float64Array(N * K);
    const bNode = producer.get(n.input[1]); // sparse: B is rebuilt by the group's decoder (Reshape ← Slice)
    if (!bNode) {
      // A weight kept dense: its own B; scales either an initializer or Cast(fp16 initializer).
      const B = tensorBytes(inits.get(n.input[1])!);
      const cast = producer.get(n.input[2]);
      const S = cast
        ? Array.from(new Uint16Array(new Uint8Array(tensorBytes(inits.get(cast.input[0])!)).buffer), halfToNumber)
        : Array.from(tensorToFloat32(inits.get(n.input[2])!));
      if (cast) expect([cast.op_type, inits.get(cast.input[0])!.data_type]).toEqual(['Cast', DataType.FLOAT16]);
      for (let r = 0; r < N; r++) {
        for (let k = 0; k < K; k++) {
          const b = Math.floor(k / bs);
          w[r * K + k] = (nibbleAt(B, (r * nb + b) * bs + (k % bs)) - nibbleAt(Z, r * 2 * Math.ceil(nb / 2) + b)) * S[r * nb + b];
        }
      }
      out.set(n.output[0], { N, K, w });
      continue;
    }
    expect(bNode.name!.startsWith(SPARSE_Q_PREFIX)).toBe(true);
    const group = bNode.name!.split('/').slice(0, 2).join('/'); // dsa_prune_sparseq/<g>
    const slice = producer.get(bNode.input[0])!; // Reshape ← Slice(allB, st, en)
    const start = i64(slice.input[1]);
    expect(i64(slice.input[2]) - start).toBe(N * nb);
    const bmask = tensorBytes(inits.get(`${group}/bmask`)!);
    const emask = tensorBytes(inits.get(`${group}/emask`)!);
    const codes = tensorBytes(inits.get(`${group}/codes`)!);
    const st = inits.get(`${group}/scales`)!;
    const sraw = new Uint8Array(tensorBytes(st));
    const scales = st.data_type === DataType.FLOAT16
      ? Array.from(new Uint16Array(sraw.buffer), halfToNumber)
      : Array.from(new Float32Array(sraw.buffer));
    // Walk the group from its first block up to this weight's last.
    let kept = 0;
    let nib = 1;
    for (let blk = 0; blk < start + N * nb; blk++) {
      const keep = bitAt(bmask, blk);
      if (keep) kept++;
      const mine = blk >= start;
      const r = Math.floor((blk - start) / nb);
      const b = (blk - start) % nb;
      const zp = mine ? nibbleAt(Z, r * 2 * Math.ceil(nb / 2) + b) : 0;
      for (let j = 0; j < bs; j++) {
        let q = zp;
        if (keep && bitAt(emask, kept * bs + j)) q = nibbleAt(codes, nib++);
        const k = b * bs + j;
        if (mine && k < K) w[r * K + k] = (q - zp) * (keep ? scales[kept] : 0);
      }
    }
    out.set(n.output[0], { N, K, w });
  }
  return out;
}

describe('sparse q4 encoding', () => {
  it('encode → decode gives the plain B and scales back byte for byte; an all-zero block is skipped', () => {
    const n = 24;
    const k = 96;
    const rnd = rng(7);
    const w = new Float32Array(n * k).map(() => (rnd() < 0.6 ? 0 : rnd() - 0.5));
    for (let j = 32; j < 64; j++) w[5 * k + j] = 0; // row 5, block 1: all zero
    const p = quantizeQ4(w, n, k, 32);
    const zp = unpackZeroPoints(p.zeroPoints, n, p.nBlocks);
    const enc = encodeSparseQ4(p.packed, p.scales, zp, 32);
    expect(enc.blocks).toBe(n * p.nBlocks);
    expect(enc.keptBlocks).toBe(n * p.nBlocks - 1);
    let nz = 0;
    for (let i = 0; i < n * k; i++) {
      const r = Math.floor(i / k);
      const b = Math.floor((i % k) / 32);
      if (nibbleAt(p.packed, r * p.nBlocks * 32 + (i % k)) !== zp[r * p.nBlocks + b]) nz++;
    }
    expect(enc.nonZeros).toBe(nz);
    const back = decodeSparseQ4(enc, zp);
    expect(Buffer.from(back.B).equals(Buffer.from(p.packed))).toBe(true);
    expect(Buffer.from(back.scales.buffer).equals(Buffer.from(p.scales.buffer))).toBe(true);
  });

  it('q4 scales are fp16-representable (stored losslessly as fp16 by the sparse file)', () => {
    const rnd = rng(3);
    const w = new Float32Array(16 * 64).map(() => (rnd() - 0.5) * 0.2);
    const p = quantizeQ4(w, 16, 64, 32);
    for (const s of p.scales) {
      // Exactly representable in fp16 ⇔ at most 11 significant bits (normal range here).
      const e = Math.floor(Math.log2(s));
      expect(Number.isInteger(s / 2 ** (e - 10))).toBe(true);
    }
  });
});

/** y = Gemm(MatMul(x, W1), W2): the Gemm weight cannot become MatMulNBits. */
function gemmModel(): ModelProto {
  const k = 64;
  const rnd = rng(5);
  const sparse = (len: number) => new Float32Array(len).map(() => (rnd() < 0.5 ? 0 : rnd() - 0.5));
  const vi = (name: string, dims: number[]) => ({ name, type: { tensor_type: { elem_type: 1, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } });
  return {
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    graph: {
      name: 'g',
      node: [
        createNode({ op_type: 'MatMul', name: 'mm', input: ['x', 'W1'], output: ['h'] }),
        createNode({ op_type: 'Gemm', name: 'fc', input: ['h', 'W2'], output: ['y'] }),
      ],
      initializer: [
        createTensor({ name: 'W1', dims: [k, k], data_type: DataType.FLOAT, raw_data: new Uint8Array(sparse(k * k).buffer) }),
        createTensor({ name: 'W2', dims: [k, k], data_type: DataType.FLOAT, raw_data: new Uint8Array(sparse(k * k).buffer) }),
      ],
      input: [vi('x', [1, k])],
      output: [vi('y', [1, k])],
      value_info: [],
    },
  } as unknown as ModelProto;
}

describe('sparse q4: bad input', () => {
  it('a pruned weight MatMulNBits cannot take (Gemm): clear error, nothing written', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dsa-sq4-bad-'));
    try {
      mkdirSync(path.join(dir, 'onnx'));
      const bytes = encodeModel(gemmModel());
      writeFileSync(path.join(dir, 'onnx/model.onnx'), bytes);
      let err: unknown;
      try {
        postProcessSaved(dir, { quantize: ['q8', 'q4'], compress: true });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DsaPruneError);
      expect((err as Error).message).toMatch(/Gemm fc weight W2/);
      expect(readdirSync(path.join(dir, 'onnx'))).toEqual(['model.onnx']);
      expect(Buffer.from(readFileSync(path.join(dir, 'onnx/model.onnx'))).equals(Buffer.from(bytes))).toBe(true);
      // Without --compress the plain q4 is still written (the Gemm stays float there).
      postProcessSaved(dir, { quantize: 'q4' });
      expect(existsSync(path.join(dir, 'onnx/model_q4.onnx'))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a graph without a usable MatMulNBits: clear error naming the reason', () => {
    const m = gemmModel();
    expect(() => sparseQ4Model(m)).toThrow(/no com.microsoft MatMulNBits/);
  });
});

/** Fixed input ids (and empty past key/values) for any of the stories260k files. */
function feeds(s: ort.InferenceSession): Record<string, ort.Tensor> {
  const T = 6;
  const f: Record<string, ort.Tensor> = {};
  for (const name of s.inputNames) {
    if (name === 'input_ids') f[name] = new ort.Tensor('int64', BigInt64Array.from([1n, 50n, 100n, 7n, 300n, 9n]), [1, T]);
    else if (name === 'attention_mask') f[name] = new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]);
    else if (name === 'position_ids') f[name] = new ort.Tensor('int64', BigInt64Array.from([0n, 1n, 2n, 3n, 4n, 5n]), [1, T]);
    else {
      const md = (s.inputMetadata as unknown as { name: string; shape: (number | string)[] }[]).find((x) => x.name === name)!;
      f[name] = new ort.Tensor('float32', new Float32Array(0), md.shape.map((d) => (typeof d === 'number' ? d : String(d).includes('batch') ? 1 : 0)));
    }
  }
  return f;
}

describe('stories260k: sparse q4 against plain q4', () => {
  let work: string;
  let plainDir: string;
  let sparseDir: string;
  let result: Awaited<ReturnType<typeof import('../../src/save.js').savePruned>>;

  beforeAll(async () => {
    const { installLoadingHook, loadModelDir } = await import('../../src/model/index.js');
    installLoadingHook();
    work = mkdtempSync(path.join(os.tmpdir(), 'dsa-sq4-'));
    const src = path.join(work, 'src');
    cpSync(stories, src, { recursive: true });
    const { model } = await loadModelDir(src);
    const { pruneModel } = await import('../../src/prune.js');
    await pruneModel(model, { method: 'magnitude', sparsity: 0.7 });
    const { savePruned } = await import('../../src/save.js');
    plainDir = path.join(work, 'plain');
    sparseDir = path.join(work, 'sparse');
    await savePruned(model, plainDir, { quantize: ['q8', 'q4'] });
    result = await savePruned(model, sparseDir, { quantize: ['q8', 'q4'], compress: true });
    await model.dispose?.();
  }, 240_000);
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('the independent decoder reads the pruned weights as exactly 0 and every other weight as plain q4 does', () => {
    const plainQ = readModelFile(path.join(plainDir, 'onnx/model_q4.onnx'));
    const sparseQ = readModelFile(path.join(sparseDir, 'onnx/model_q4.onnx'));
    const fp = readModelFile(path.join(plainDir, 'onnx/model.onnx'));
    const fpInits = new Map(fp.graph.initializer.map((t) => [t.name!, t]));
    const fpMatMul = new Map(fp.graph.node.filter((n) => n.op_type === 'MatMul').map((n) => [n.output[0], n]));
    const a = plainDequant(plainQ);
    const b = sparseDequant(sparseQ);
    expect(b.size).toBe(a.size);
    const rebuilt = new Set(sparseQ.graph.node.filter((n) => (n.name ?? '').startsWith(SPARSE_Q_PREFIX)).flatMap((n) => n.output));
    const sparseOnes = sparseQ.graph.node.filter((n) => n.op_type === 'MatMulNBits' && rebuilt.has(n.input[1]));
    expect(sparseOnes.length).toBe(5 * 7); // every block linear of stories260k (5 blocks × 7) is stored sparse
    let zeros = 0;
    let zeroWrong = 0;
    let differ = 0;
    for (const [out, s] of b) {
      const p = a.get(out)!;
      expect([s.N, s.K]).toEqual([p.N, p.K]);
      const fpW = fpInits.get(fpMatMul.get(out)?.input[1] ?? '');
      const w = fpW ? tensorToFloat32(fpW) : undefined; // [K × N] (undefined: the tied lm_head, a Transpose)
      for (let i = 0; i < s.K; i++) {
        for (let j = 0; j < s.N; j++) {
          const got = s.w[j * s.K + i];
          if (w && w[i * s.N + j] === 0) {
            zeros++;
            if (got !== 0) zeroWrong++;
          }
          if (got !== p.w[j * s.K + i]) differ++;
        }
      }
    }
    expect(zeroWrong).toBe(0);
    expect(differ).toBe(0);
    const total = [...b.values()].reduce((acc, x) => acc + x.N * x.K, 0);
    expect(zeros).toBeGreaterThan(0.5 * total); // 70 % of the block linears; lm_head stays dense
  });

  it('smaller than the plain q4 file; reported as sparse-q4', () => {
    const plain = statSync(path.join(plainDir, 'onnx/model_q4.onnx')).size;
    const sparse = statSync(path.join(sparseDir, 'onnx/model_q4.onnx')).size;
    const f = result!.files.find((x) => x.file === path.join('onnx', 'model_q4.onnx'))!;
    expect(f.kind).toBe('sparse-q4');
    expect(f.bytes).toBe(sparse);
    expect(sparse).toBeLessThan(plain);
  });

  it('onnxruntime: identical logits to the plain q4 file, and the decoder is constant-folded away', async () => {
    const optFile = path.join(work, 'optimized.onnx');
    const s1 = await ort.InferenceSession.create(path.join(plainDir, 'onnx/model_q4.onnx'));
    const s2 = await ort.InferenceSession.create(path.join(sparseDir, 'onnx/model_q4.onnx'), { optimizedModelFilePath: optFile });
    const l1 = (await s1.run(feeds(s1))).logits.data as Float32Array;
    const l2 = (await s2.run(feeds(s2))).logits.data as Float32Array;
    expect(l1.length).toBeGreaterThan(0);
    expect(Buffer.from(l2.buffer, l2.byteOffset, l2.byteLength).equals(Buffer.from(l1.buffer, l1.byteOffset, l1.byteLength))).toBe(true);
    const sparse = readModelFile(path.join(sparseDir, 'onnx/model_q4.onnx'));
    expect(sparse.graph.node.filter((n) => (n.name ?? '').startsWith(SPARSE_Q_PREFIX)).length).toBeGreaterThan(10);
    const opt = decodeModel(readFileSync(optFile), 'optimized');
    expect(opt.graph.node.filter((n) => (n.name ?? '').startsWith(SPARSE_Q_PREFIX))).toEqual([]);
    // MatMulNBits reads initializers after folding.
    const inits = new Set(opt.graph.initializer.map((t) => t.name));
    for (const n of opt.graph.node.filter((x) => x.op_type === 'MatMulNBits')) expect(inits.has(n.input[1])).toBe(true);
    await s1.release();
    await s2.release();
  });

  it('sparse q8 (--quantize q8 --compress): smaller than plain q8, identical logits in onnxruntime, decoder folded', async () => {
    const plain = path.join(plainDir, 'onnx/model_quantized.onnx');
    const sparse = path.join(sparseDir, 'onnx/model_quantized.onnx');
    expect(result!.files.find((x) => x.file === path.join('onnx', 'model_quantized.onnx'))!.kind).toBe('sparse-q8');
    expect(statSync(sparse).size).toBeLessThan(statSync(plain).size); // stories260k's tiny matrices: 0.89 × at 70 %
    const optFile = path.join(work, 'optimized-q8.onnx');
    const s1 = await ort.InferenceSession.create(plain);
    const s2 = await ort.InferenceSession.create(sparse, { optimizedModelFilePath: optFile });
    const l1 = (await s1.run(feeds(s1))).logits.data as Float32Array;
    const l2 = (await s2.run(feeds(s2))).logits.data as Float32Array;
    expect(Buffer.from(l2.buffer, l2.byteOffset, l2.byteLength).equals(Buffer.from(l1.buffer, l1.byteOffset, l1.byteLength))).toBe(true);
    const opt = decodeModel(readFileSync(optFile), 'optimized');
    expect(opt.graph.node.filter((n) => (n.name ?? '').startsWith('dsa_prune_sparse/'))).toEqual([]);
    await s1.release();
    await s2.release();
  });

  it('plain transformers.js (child process, no plugin) loads it with dtype q4: same logits as plain q4, generates', () => {
    const script = `
      import { AutoModelForCausalLM, AutoTokenizer, env } from '@huggingface/transformers';
      env.allowRemoteModels = false;
      const out = {};
      for (const dir of process.argv.slice(1)) {
        const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: 'q4', local_files_only: true });
        const tok = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
        const ids = tok('Once upon a time');
        const r = await model(ids);
        const g = await model.generate({ ...ids, max_new_tokens: 6, do_sample: false });
        out[dir] = { logits: Array.from(r.logits.data.slice(0, 2000)), text: tok.decode(g[0], { skip_special_tokens: true }) };
        await model.dispose();
      }
      process.stdout.write(JSON.stringify(out));
    `;
    // The files carry the 4-bit tied embedding (GatherBlockQuantized), so transformers.js runs it too.
    for (const d of [plainDir, sparseDir]) expect(readModelFile(path.join(d, 'onnx/model_q4.onnx')).graph.node.some((n) => n.op_type === 'GatherBlockQuantized')).toBe(true);
    const res = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script, plainDir, sparseDir], { cwd: repoRoot, encoding: 'utf8', maxBuffer: 64 << 20 })) as Record<string, { logits: number[]; text: string }>;
    expect(res[sparseDir].logits.length).toBe(2000);
    expect(res[sparseDir].logits).toEqual(res[plainDir].logits);
    expect(res[sparseDir].text.startsWith('Once upon a time')).toBe(true);
    expect(res[sparseDir].text).toBe(res[plainDir].text);
  }, 120_000);
});

describe.skipIf(!existsSync(bench12l))('bench-12l sizes (needs ../shared/models/bench-12l)', () => {
  // Issue #19's targets: 0.80 at 50 % and 0.65 at 70 % (against the dense-size plain q4 file written the same way,
  // 4-bit tied embedding included; docs/compression.md has the Wanda numbers).
  it.each([[0.5, 0.8], [0.7, 0.65]])('magnitude %f: sparse q4 file ≤ %f × plain q4 of the same model', async (sparsity, bound) => {
    const { installLoadingHook, loadModelDir } = await import('../../src/model/index.js');
    installLoadingHook();
    const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-sq4-b12-'));
    try {
      cpSync(bench12l, path.join(work, 'src'), { recursive: true });
      const { model } = await loadModelDir(path.join(work, 'src'));
      const { pruneModel } = await import('../../src/prune.js');
      await pruneModel(model, { method: 'magnitude', sparsity });
      const { savePruned } = await import('../../src/save.js');
      await savePruned(model, path.join(work, 'plain'), { quantize: 'q4' });
      await model.dispose?.();
      const plainFile = path.join(work, 'plain/onnx/model_q4.onnx');
      const plain = statSync(plainFile).size;
      const { model: sq } = sparseQ4Model(readModelFile(plainFile));
      const sparse = encodeModel(sq).length;
      expect(sparse / plain).toBeLessThanOrEqual(bound);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 300_000);
});
