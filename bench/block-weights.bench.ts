/**
 * blockWeights 'initializers' (pre-packed MatMuls) against 'inputs' (the default, the reference bits): sequential
 * Wanda 50 % on the same calibration tokens with each, on stories260k (models/) and bench-12l (../shared, skipped when
 * absent). Wanda is the textbook one (per output row, the k = ⌊d_in / 2⌋ smallest |W|·sqrt(Σx² / n) zeroed, as in
 * test/calibration/reference.test.ts), so the only difference between the two runs is the calibration sessions.
 * Prints, per model: the largest relative difference of Σx² (per linear: max |Δ| / max |x|, and the largest entry-wise
 * relative difference), the number of mask entries that differ and the linears whose masks differ.
 *
 *   npx tsx bench/block-weights.bench.ts [--nsamples 32] [--seqlen 256]
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runCalibration, type CalibrationOptions } from '../src/calibration/index.js';
import { loadFixture } from '../test/calibration/fixture.js';
import { tokenIds } from '../test/kernels/rng.js';
import { value } from './harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: opt } = parseArgs({ options: { nsamples: { type: 'string', default: '32' }, seqlen: { type: 'string', default: '256' } }, strict: false });
const nsamples = Number(opt.nsamples);
const seqlen = Number(opt.seqlen);

interface Run { sq: Map<string, Float64Array>; masks: Map<string, Uint8Array> }

async function run(dir: string, blockWeights: CalibrationOptions['blockWeights']): Promise<Run> {
  const m = loadFixture(dir);
  const vocab = Number(m.config?.vocab_size ?? 512);
  const sq = new Map<string, Float64Array>();
  const masks = new Map<string, Uint8Array>();
  await runCalibration(m, tokenIds(nsamples * seqlen, vocab), { nsamples, seqlen, batchSize: 8, needs: { sq: true, gram: false }, blockWeights }, (b, stats) => {
    for (const l of m.linears.filter((x) => x.block === b)) {
      const s = stats.get(l.name)!;
      sq.set(l.name, s.sq.slice());
      const w = m.readInitializer(l.weight); // [in, out]
      const { dIn, dOut } = l;
      const mask = new Uint8Array(dOut * dIn);
      const k = Math.floor(dIn * 0.5);
      const scale = Float64Array.from(s.sq, (v) => Math.sqrt(v / nsamples));
      for (let i = 0; i < dOut; i++) {
        const metric = Float64Array.from({ length: dIn }, (_, j) => Math.abs(w[j * dOut + i]!) * scale[j]!);
        const order = Array.from({ length: dIn }, (_, j) => j).sort((a, c) => metric[a]! - metric[c]! || a - c);
        for (let t = 0; t < k; t++) {
          mask[i * dIn + order[t]!] = 1;
          w[order[t]! * dOut + i] = 0;
        }
      }
      m.writeInitializer(l.weight, w);
      masks.set(l.name, mask);
    }
  });
  return { sq, masks };
}

for (const [name, dir] of [['stories260k', path.join(here, '../models/stories260k')], ['bench-12l', path.join(here, '../../shared/models/bench-12l')]] as const) {
  if (!existsSync(path.join(dir, 'onnx/model.onnx'))) {
    console.error(`${name}: ${dir} is absent, skipped`);
    continue;
  }
  const ref = await run(dir, 'inputs');
  const init = await run(dir, 'initializers');
  let worstRel = 0;
  let worstEntry = 0;
  let differ = 0;
  let total = 0;
  const linears: string[] = [];
  for (const [l, a] of ref.sq) {
    const b = init.sq.get(l)!;
    let d = 0;
    let mx = 0;
    for (let j = 0; j < a.length; j++) {
      d = Math.max(d, Math.abs(a[j]! - b[j]!));
      mx = Math.max(mx, Math.abs(a[j]!));
      if (a[j] !== 0) worstEntry = Math.max(worstEntry, Math.abs(a[j]! - b[j]!) / Math.abs(a[j]!));
    }
    worstRel = Math.max(worstRel, d / mx);
    const ma = ref.masks.get(l)!;
    const mb = init.masks.get(l)!;
    let n = 0;
    for (let i = 0; i < ma.length; i++) if (ma[i] !== mb[i]) n++;
    differ += n;
    total += ma.length;
    if (n > 0) linears.push(`${l} (${n})`);
  }
  value(`${name} ${nsamples}×${seqlen}, Wanda 50 %: Σx² max |Δ| / max |x| (worst linear)`, worstRel, '', `largest entry-wise relative difference ${worstEntry.toExponential(2)}`);
  value(`${name} ${nsamples}×${seqlen}, Wanda 50 %: mask entries that differ`, differ, '', `of ${total} (${((100 * differ) / total).toFixed(4)} %); ${linears.length} of ${ref.masks.size} linears: ${linears.slice(0, 6).join(', ')}${linears.length > 6 ? ', …' : ''}`);
}
