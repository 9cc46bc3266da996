/**
 * The calibration engine against the layer-by-layer reference numbers of ../shared/reference/stories260k_debug.json
 * (PyTorch, CPU float32): the dense first block, and a whole sequential Wanda run at 50% where the callback prunes each
 * block with a small Wanda written here (per row, stable ascending sort of |W|·sqrt(sq/nsamples), zero floor(d_in/2)).
 * Matching the hidden-state sums, sq sums and mask hashes of every block checks the sequential protocol end to end.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AutoTokenizer, env } from '@huggingface/transformers';
import { runCalibration } from '../../src/calibration/index.js';
import { takeWindows, tokenizeText } from '../../src/data/text.js';
import { loadFixture, repoRoot, shared } from './fixture.js';

const debugPath = path.join(shared, 'reference/stories260k_debug.json');
const calibPath = path.join(shared, 'data/text/tinystories_calibration.txt');
const have = existsSync(debugPath) && existsSync(calibPath);
const modelDir = path.join(repoRoot, 'models/stories260k');

interface DebugLinear { sq_sum: number; sq_first8: number[]; H_trace?: number; mask_sha256: string; zeros: number }
interface DebugBlock { input_hidden_sum: number; input_hidden_sumsq: number; linears: Record<string, DebugLinear> }

function rel(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
}

async function calibrationWindows(): Promise<Int32Array> {
  env.allowRemoteModels = false;
  const tok = await AutoTokenizer.from_pretrained(modelDir);
  const ids = tokenizeText(tok as unknown as Parameters<typeof tokenizeText>[0], readFileSync(calibPath, 'utf8'));
  return takeWindows(ids, 512, 64);
}

/** `model.layers.0.self_attn.q_proj` → `self_attn.q_proj` (the debug file's keys). */
function shortName(name: string): string {
  return name.replace(/^.*layers\.\d+\./, '');
}

describe.skipIf(!have)('stories260k reference numbers (../shared/reference/stories260k_debug.json)', () => {
  const debug = have ? (JSON.parse(readFileSync(debugPath, 'utf8')) as { runs: Record<string, { blocks: DebugBlock[] }> }) : undefined;

  // One run checks both: block 0 sees the dense model (nothing pruned before it), so its numbers are the dense
  // first block's (sq_sum, sq_first8, H_trace, input_hidden_sum), and every later block checks the sequential protocol.
  it('sequential Wanda 50%: dense first block, then every block (hidden sums, sq sums, masks) to 1e-4', async () => {
    const m = loadFixture(modelDir);
    const w = await calibrationWindows();
    const ref = debug!.runs.wanda!.blocks;
    const refGram = debug!.runs.sparsegpt!.blocks[0]!;
    const masks: string[] = [];
    const expected: string[] = [];
    let denseChecked = 0;
    const report = await runCalibration(m, w, { nsamples: 64, seqlen: 512, needs: { sq: true, gram: true } }, (b, stats) => {
      for (const l of m.linears.filter((x) => x.block === b)) {
        const r = ref[b]!.linears[shortName(l.name)]!;
        const s = stats.get(l.name)!;
        expect(s.nsamples).toBe(64);
        expect(s.tokens).toBe(64 * 512);
        expect(rel(s.sq.reduce((a, v) => a + v, 0), r.sq_sum), `${l.name} sq_sum`).toBeLessThan(1e-4);
        for (let j = 0; j < 8; j++) expect(rel(s.sq[j]!, r.sq_first8[j]!), `${l.name} sq_first8[${j}]`).toBeLessThan(1e-4);
        if (b === 0) {
          let trace = 0;
          for (let j = 0; j < l.dIn; j++) trace += s.gram![j * l.dIn + j]!;
          expect(rel((2 / 64) * trace, refGram.linears[shortName(l.name)]!.H_trace!), `${l.name} H_trace`).toBeLessThan(1e-4);
          denseChecked++;
        }
        // ONNX MatMul weight is [in, out]; the reference works on [out, in].
        const onnx = m.readInitializer(l.weight);
        const { dIn, dOut } = l;
        const mask = new Uint8Array(dOut * dIn);
        const k = Math.floor(dIn * 0.5);
        for (let i = 0; i < dOut; i++) {
          const metric = Array.from({ length: dIn }, (_, j) => Math.abs(onnx[j * dOut + i]!) * Math.sqrt(Math.fround(s.sq[j]! / 64)));
          const order = Array.from({ length: dIn }, (_, j) => j).sort((a, c) => metric[a]! - metric[c]!);
          for (let t = 0; t < k; t++) {
            const j = order[t]!;
            mask[i * dIn + j] = 1;
            onnx[j * dOut + i] = 0;
          }
        }
        m.writeInitializer(l.weight, onnx);
        masks.push(`${l.name} ${createHash('sha256').update(mask).digest('hex')}`);
        expected.push(`${l.name} ${r.mask_sha256}`);
      }
    });
    expect(denseChecked).toBe(7);
    expect(masks.length).toBe(35);
    for (let b = 0; b < ref.length; b++) {
      expect(rel(report.blocks[b]!.inputSum!, ref[b]!.input_hidden_sum), `block ${b} input_hidden_sum`).toBeLessThan(1e-4);
      expect(rel(report.blocks[b]!.inputSumSq!, ref[b]!.input_hidden_sumsq), `block ${b} input_hidden_sumsq`).toBeLessThan(1e-4);
    }
    // Masks of a float32 CPU run: ties on the threshold could flip a few entries, so require almost all to agree.
    const same = masks.filter((x, i) => x === expected[i]).length;
    expect(same, masks.filter((x, i) => x !== expected[i]).join("\n")).toBeGreaterThanOrEqual(masks.length - 2);
  }, 600_000);
});
