/**
 * Per-linear GPTQ diagnostic (docs/compression.md, "GPTQ q4: diagnosis"): for every block linear of a pruned folder,
 * the calibration output error tr((W−Q)·XᵀX·(W−Q)ᵀ) / tr(W·XᵀX·Wᵀ) of round-to-nearest q4 (the writer's quantizeQ4)
 * and of GPTQ variants, on the Gram matrices of the fitting windows and of held-out windows of the calibration text.
 *   npx tsx bench/gptq-diag.bench.ts <prunedDir> --calibration <file> [--nsamples 128] [--seqlen 512] [--holdout 32]
 *     [--variants 0.01,0.1,0.01:act,0.1:act] [--blocks 0,5,11] [--held-text <file>]
 * Gram matrices are one-shot (the pruned float model's inputs), so RTN and every variant see the same X. A variant is
 * `percdamp[:act]` (`act` = act_order with static groups). Fitting windows = the first nsamples − holdout, held-out =
 * the last holdout windows (--holdout 0: held-out = fitting); --held-text: the held-out Gram matrices come from the
 * first `holdout` windows of another text instead (a domain check; settings are never chosen on it).
 */
import path from 'node:path';
import { gptqFromGram } from '../src/compress/gptq.js';
import { quantizeQ4 } from '../src/compress/quantize.js';
import { unpackZeroPoints } from '../src/compress/sparse-q4.js';
import { runCalibration } from '../src/calibration/index.js';
import { attachModel, loadModelDir } from '../src/model/index.js';
import { calibrationFor } from '../src/prune-common.js';
import type { InputStats } from '../src/types.js';
import { takeOption } from './harness.js';

const args = process.argv.slice(2);
const opt = (name: string, d?: string): string | undefined => takeOption(args, name, d);
const calibration = opt('calibration')!;
const nsamples = Number(opt('nsamples', '128'));
const seqlen = Number(opt('seqlen', '512'));
const holdout = Number(opt('holdout', '32'));
const variants = opt('variants', '0.01,0.1,0.01:act,0.1:act')!.split(',').map((v) => {
  const [p, a] = v.split(':');
  return { label: v, percdamp: Number(p), actOrder: a === 'act' };
});
const blockFilter = opt('blocks')?.split(',').map(Number);
const heldText = opt('held-text');
const dir = args[0]!;

const { model } = await loadModelDir(dir);
const pm = await attachModel(model);
const cal = await calibrationFor(model, { calibration: { files: [calibration] }, nsamples, seqlen, mode: 'oneshot' });
const nFit = holdout > 0 ? cal.nsamples - holdout : cal.nsamples;
const fitIds = cal.ids.subarray(0, nFit * cal.seqlen);
const nFitUsed = heldText ? cal.nsamples : nFit;
const fitIdsUsed = heldText ? cal.ids : fitIds;
const holdIds = heldText
  ? (await calibrationFor(model, { calibration: { files: [heldText] }, nsamples: holdout, seqlen, mode: 'oneshot' })).ids
  : holdout > 0 ? cal.ids.subarray(nFit * cal.seqlen) : fitIds;
console.error(`${path.basename(dir)}: calibration sha256 ${cal.sha256}, ${nFitUsed} fitting + ${holdout} held-out windows × ${cal.seqlen}${heldText ? ` of ${path.basename(heldText)}` : ''}`);

/** tr(D·G·Dᵀ) for D [rows × k]. */
function quad(d: Float64Array | Float32Array, rows: number, k: number, g: Float64Array): number {
  let s = 0;
  const t = new Float64Array(k);
  for (let r = 0; r < rows; r++) {
    const o = r * k;
    t.fill(0);
    for (let i = 0; i < k; i++) {
      const di = d[o + i]!;
      if (di === 0) continue;
      const gi = i * k;
      for (let j = 0; j < k; j++) t[j] += di * g[gi + j]!;
    }
    for (let j = 0; j < k; j++) s += t[j] * d[o + j]!;
  }
  return s;
}
function decodeQ4(p: ReturnType<typeof quantizeQ4>): Float32Array {
  const { n, k, blockSize, nBlocks, packed, scales } = p;
  const zp = unpackZeroPoints(p.zeroPoints, n, nBlocks);
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < k; j++) {
      const b = Math.floor(j / blockSize);
      const idx = (r * nBlocks + b) * (blockSize / 2) + ((j % blockSize) >> 1);
      const q = j & 1 ? packed[idx]! >> 4 : packed[idx]! & 15;
      out[r * k + j] = Math.fround((q - zp[r * nBlocks + b]!) * scales[r * nBlocks + b]!);
    }
  }
  return out;
}

const holdStats = new Map<string, InputStats>();
if (holdout > 0) {
  await runCalibration(pm, holdIds, { nsamples: holdout, seqlen: cal.seqlen, needs: { sq: false, gram: true }, mode: 'oneshot' }, (b, stats) => {
    if (blockFilter && !blockFilter.includes(b)) return;
    for (const [k, v] of stats) holdStats.set(k, v);
  });
}
const header = ['linear', 'rows×k', ...variants.map((v) => `fit ${v.label}`), ...variants.map((v) => `held ${v.label}`), 'RTN fit', 'RTN held'];
console.log(`GPTQ / RTN calibration output error per linear (ratio < 1: GPTQ better); RTN columns: relative error tr(ΔGΔᵀ)/tr(WGWᵀ)\n`);
console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
const sums = { rtnFit: 0, rtnHeld: 0, fit: variants.map(() => 0), held: variants.map(() => 0), worse: variants.map(() => 0), worseHeld: variants.map(() => 0), n: 0 };
await runCalibration(pm, fitIdsUsed, { nsamples: nFitUsed, seqlen: cal.seqlen, needs: { sq: false, gram: true }, mode: 'oneshot' }, (b, stats) => {
  if (blockFilter && !blockFilter.includes(b)) return;
  for (const l of pm.linears.filter((x) => x.block === b)) {
    const s = stats.get(l.name)!;
    const h = holdStats.get(l.name) ?? s;
    const w = pm.readWeight(l);
    const rows = l.dOut;
    const k = l.dIn;
    const base = quad(w, rows, k, s.gram!);
    const baseH = quad(w, rows, k, h.gram!);
    const diff = (q: Float32Array) => Float64Array.from(w, (v, i) => v - q[i]!);
    const rtn = diff(decodeQ4(quantizeQ4(w, rows, k, 32, 6)));
    const eR = quad(rtn, rows, k, s.gram!);
    const eRH = quad(rtn, rows, k, h.gram!);
    const fit: number[] = [];
    const held: number[] = [];
    variants.forEach((v, i) => {
      const g = gptqFromGram(w, rows, k, s.gram!, s.nsamples, { percdamp: v.percdamp, actOrder: v.actOrder, name: l.name });
      const d = diff(g.weight);
      fit.push(quad(d, rows, k, s.gram!) / eR);
      held.push(quad(d, rows, k, h.gram!) / eRH);
      sums.fit[i] += fit[i]!;
      sums.held[i] += held[i]!;
      if (fit[i]! >= 1) sums.worse[i]++;
      if (held[i]! >= 1) sums.worseHeld[i]++;
    });
    sums.rtnFit += eR / base;
    sums.rtnHeld += eRH / baseH;
    sums.n++;
    const f = (x: number) => x.toFixed(3);
    console.log(`| ${l.name} | ${rows}×${k} | ${fit.map(f).join(' | ')} | ${held.map(f).join(' | ')} | ${(eR / base).toExponential(2)} | ${(eRH / baseH).toExponential(2)} |`);
  }
});
const m = (x: number) => (x / sums.n).toFixed(3);
console.log(`| **mean of ${sums.n}** | | ${sums.fit.map(m).join(' | ')} | ${sums.held.map(m).join(' | ')} | ${(sums.rtnFit / sums.n).toExponential(2)} | ${(sums.rtnHeld / sums.n).toExponential(2)} |`);
console.log(`\nlinears where GPTQ ≥ RTN, fitting: ${variants.map((v, i) => `${v.label} ${sums.worse[i]}`).join(', ')}; held-out: ${variants.map((v, i) => `${v.label} ${sums.worseHeld[i]}`).join(', ')}`);
