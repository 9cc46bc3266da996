/**
 * The prune report's per-linear sparsity: for a built-in method it is the method's own `zeros` (countZeros of the
 * pruned weight, so prune.ts does not count again); for a user method it is counted from the weight, whatever the
 * method claims. Both are checked against a plain `=== 0` count of the weights read back from the saved folder.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelDir, pruneModel, savePruned, type PruningMethod } from '../../src/index.js';
import { getMethod, zerosAreExact } from '../../src/methods/index.js';

const MODEL = path.resolve('models/stories260k');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-zeros-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const N = 2;
const T = 32;
const ids = Int32Array.from({ length: N * T }, (_, i) => (i * 37 + 11) % 512);

/** name → zero entries, counted plainly on the saved model's weights (and `name:half`: ⌊dIn/2⌋·dOut). */
async function savedZeros(model: unknown, dir: string): Promise<Map<string, number>> {
  await savePruned(model, dir);
  const { prunable } = await loadModelDir(dir);
  const out = new Map<string, number>();
  for (const l of prunable.linears) {
    const w = prunable.readWeight(l);
    let z = 0;
    for (let i = 0; i < w.length; i++) if (w[i] === 0) z++;
    out.set(l.name, z);
    out.set(`${l.name}:half`, Math.floor(l.dIn / 2) * l.dOut);
  }
  return out;
}

describe('prune report zeros', () => {
  it('built-ins are trusted, a user method is not', () => {
    for (const m of ['magnitude', 'wanda', 'sparsegpt']) expect(zerosAreExact(getMethod(m))).toBe(true);
    expect(zerosAreExact({ ...getMethod('wanda') })).toBe(false);
  });

  it('wanda: the report equals a plain count of the saved weights', async () => {
    const { model } = await loadModelDir(MODEL);
    const r = await pruneModel(model, { method: 'wanda', sparsity: 0.5, calibration: { ids }, nsamples: N, seqlen: T });
    const z = await savedZeros(model, path.join(work, 'wanda'));
    expect(r.linears.length).toBeGreaterThan(0);
    for (const l of r.linears) expect(Math.round(l.sparsity * l.params)).toBe(z.get(l.name));
    expect(r.seconds.pruneCpu).toBeGreaterThan(0);
  });

  it('a user method that misreports its zeros still gets the counted sparsity', async () => {
    const liar: PruningMethod = {
      name: 'first-half-liar',
      needs: { sq: false, gram: false },
      prune: (ctx) => {
        for (let r = 0; r < ctx.dOut; r++) ctx.weight.fill(0, r * ctx.dIn, r * ctx.dIn + Math.floor(ctx.dIn / 2));
        return { zeros: 0, notes: [] };
      },
    };
    const { model } = await loadModelDir(MODEL);
    const r = await pruneModel(model, { method: liar, sparsity: 0.5 });
    const z = await savedZeros(model, path.join(work, 'liar'));
    for (const l of r.linears) {
      expect(Math.round(l.sparsity * l.params)).toBe(z.get(l.name));
      expect(z.get(l.name)).toBeGreaterThanOrEqual(z.get(`${l.name}:half`)!);
    }
  });
});
