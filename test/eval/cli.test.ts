import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run } from '../../src/cli/commands/eval.js';
import { memoryIo } from '../../src/cli/io.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { tokenizeText } from '../../src/data/text.js';
import { load, naiveLogProbs, repoRoot, storiesDir } from './helpers.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'dsa-eval-cli-'));
const TEXT = 'One day, a little boy named Tim went to the park with his mom. He saw a big dog and a small cat. '.repeat(8);
const textFile = path.join(tmp, 'text.txt');
writeFileSync(textFile, TEXT);
const dataDir = path.join(repoRoot, 'data/tasks');

describe('dsa-prune eval', () => {
  it('--json prints only JSON: ppl (naive check) and tasks with acc / acc_norm / n', async () => {
    const io = memoryIo();
    const code = await run([storiesDir, '--ppl', textFile, '--seqlen', '32', '--task', 'copa,hellaswag', '--limit', '10', '--data-dir', dataDir, '--json'], io);
    expect(code).toBe(0);
    const out = JSON.parse(io.stdoutText);
    expect(Object.keys(out)).toEqual(['ppl', 'perplexity', 'tasks', 'file', 'dtype', 'bytes']);
    // Independent: mean of window means of naive float64 NLL.
    const { model, tokenizer } = await load(storiesDir);
    const ids = Array.from(tokenizeText(tokenizer, TEXT));
    const n = Math.floor(ids.length / 32);
    let sum = 0;
    for (let w = 0; w < n; w++) {
      const lp = await naiveLogProbs(model, ids.slice(w * 32, w * 32 + 32));
      sum -= lp.reduce((a, b) => a + b, 0) / 31;
    }
    expect(Math.abs(out.ppl / Math.exp(sum / n) - 1)).toBeLessThan(1e-6);
    expect(out.perplexity.windows).toBe(n);
    expect(out.perplexity.seqlen).toBe(32);
    expect(out.tasks.copa.n).toBe(10);
    expect(out.tasks.copa.acc_norm).toBeUndefined();
    expect(out.tasks.hellaswag.n).toBe(10);
    expect(typeof out.tasks.hellaswag.acc_norm).toBe('number');
    expect(io.stderrText).toBe(''); // --json: no progress chatter
  });

  it('--stride and --compare: deltas against a second model (same model → 0)', async () => {
    const io = memoryIo();
    await run([storiesDir, '--ppl', textFile, '--seqlen', '32', '--stride', '16', '--task', 'blimp:anaphor_gender_agreement', '--limit', '20', '--data-dir', dataDir, '--compare', storiesDir, '--json'], io);
    const out = JSON.parse(io.stdoutText);
    const { model, tokenizer } = await load(storiesDir);
    const direct = await perplexity(model, TEXT, { seqlen: 32, stride: 16, tokenizer });
    expect(out.ppl).toBeCloseTo(direct.ppl, 8);
    expect(out.perplexity.stride).toBe(16);
    expect(out.compare.model).toBe(storiesDir);
    expect(out.compare.ppl).toBeCloseTo(out.ppl, 10);
    expect(out.delta.ppl).toBeCloseTo(0, 10);
    expect(out.delta.tasks['blimp:anaphor_gender_agreement'].acc).toBe(0);
  });

  it('prints a table without --json, and refuses to run with nothing to evaluate', async () => {
    const io = memoryIo();
    await run([storiesDir, '--task', 'copa', '--limit', '5', '--data-dir', dataDir, '-q'], io);
    expect(io.stdoutText).toMatch(/copa acc \(n=5\)\s+\d\.\d{4}/);
    await expect(run([storiesDir], memoryIo())).rejects.toThrow(/nothing to evaluate/);
    await expect(run([storiesDir, '--task', 'copa', '--data-dir', path.join(tmp, 'none')], memoryIo())).rejects.toMatchObject({ name: 'DsaPruneError', code: 'not-found' });
  });
});
