/**
 * `dsa-prune inspect` through the CLI dispatcher: the JSON mapping of stories260k and bench-12l (counts and parameter
 * totals from config.json), the table, and bad input (missing folder, corrupt / truncated ONNX, non-causal-LM,
 * no config, no ONNX): one clear message each, non-zero exit, no stack trace.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { memoryIo } from '../../src/cli/io.js';
import { run } from '../../src/cli/commands/inspect.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const shared = path.resolve(repoRoot, '../shared');
const stories = path.join(repoRoot, 'models/stories260k');
const work = mkdtempSync(path.join(os.tmpdir(), 'dsa-prune-inspect-test-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Σ dIn·dOut of q,k,v,o,gate,up,down over the blocks, from config.json alone. */
function llamaParams(cfg: Record<string, number>): number {
  const h = cfg.hidden_size;
  const hd = cfg.head_dim ?? h / cfg.num_attention_heads;
  const q = h * cfg.num_attention_heads * hd;
  const kv = h * cfg.num_key_value_heads * hd;
  return cfg.num_hidden_layers * (2 * q + 2 * kv + 3 * h * cfg.intermediate_size);
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = memoryIo();
  const code = await main(args, io);
  return { code, out: io.stdoutText, err: io.stderrText };
}

describe('dsa-prune inspect', () => {
  const fixtures: [string, string, number, number][] = [['stories260k', stories, 35, 5]];
  if (existsSync(path.join(shared, 'models/bench-12l'))) fixtures.push(['bench-12l', path.join(shared, 'models/bench-12l'), 84, 12]);
  else console.warn('skipping bench-12l: ../shared/models/bench-12l not found');

  for (const [name, dir, count, blocks] of fixtures) {
    it(`${name} --json: ${count} linears in ${blocks} blocks`, async () => {
      const { code, out, err } = await cli(['inspect', dir, '--json']);
      expect(err).toBe('');
      expect(code).toBe(0);
      const r = JSON.parse(out);
      const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
      expect(r.blocks).toBe(blocks);
      expect(r.linears).toHaveLength(count);
      expect(r.prunableParams).toBe(llamaParams(cfg));
      for (const l of r.linears) {
        expect(Object.keys(l).sort()).toEqual(['block', 'dIn', 'dOut', 'dtype', 'name', 'node', 'role', 'sparsity']);
        expect(l.sparsity).toBeLessThan(1e-3); // dense (a trained model has the odd exact zero)
        expect(l.node).toBe(`/model/layers.${l.block}/${['q', 'k', 'v', 'o'].includes(l.role) ? 'self_attn' : 'mlp'}/${l.role}_proj/MatMul`);
      }
      expect(r.linears.filter((l: { role: string }) => l.role === 'down').every((l: { dOut: number }) => l.dOut === cfg.hidden_size)).toBe(true);
    });
  }

  it('prints a readable table', async () => {
    const io = memoryIo();
    expect(await run([stories], io)).toBe(0);
    const lines = io.stdoutText.split('\n');
    expect(lines[0]).toMatch(/^block\s+role\s+name\s+dOut×dIn\s+dtype\s+sparsity$/);
    expect(io.stdoutText).toContain('model.layers.4.mlp.down_proj');
    expect(io.stdoutText).toMatch(/35 linears in 5 blocks, 226,560 prunable parameters/);
  });

  it('shows fused parts of a Phi-3 layout', async () => {
    const phi3 = path.join(shared, 'models/layouts/phi3');
    if (!existsSync(phi3)) return void console.warn('skipping: ../shared/models/layouts/phi3 not found');
    const { code, out } = await cli(['inspect', phi3, '--json']);
    expect(code).toBe(0);
    const qkv = JSON.parse(out).linears.find((l: { role: string }) => l.role === 'qkv');
    expect(qkv.parts.map((p: { role: string }) => p.role)).toEqual(['q', 'k', 'v']);
  });

  describe('bad input: one clear message, non-zero exit, no stack trace', () => {
    const copy = (name: string): string => {
      const d = path.join(work, name);
      cpSync(stories, d, { recursive: true });
      return d;
    };
    const cases: [string, () => string, RegExp][] = [
      ['missing folder', () => path.join(work, 'nope'), /model folder .*nope does not exist/],
      ['truncated .onnx', () => {
        const d = copy('truncated');
        const f = path.join(d, 'onnx/model.onnx');
        const bytes = readFileSync(f);
        writeFileSync(f, bytes.subarray(0, bytes.length >> 1));
        return d;
      }, /model\.onnx is not a valid ONNX (file|model)/],
      ['corrupt .onnx', () => {
        const d = copy('corrupt');
        const junk = Buffer.alloc(4096);
        for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919 + 13) & 0xff;
        writeFileSync(path.join(d, 'onnx/model.onnx'), junk);
        return d;
      }, /model\.onnx is not a valid ONNX (file|model)/],
      ['not a causal LM', () => {
        const d = copy('bert');
        writeFileSync(path.join(d, 'config.json'), JSON.stringify({ architectures: ['BertForMaskedLM'], model_type: 'bert' }));
        return d;
      }, /is not a causal language model \(architectures: BertForMaskedLM\)/],
      ['no config.json', () => {
        const d = copy('noconfig');
        rmSync(path.join(d, 'config.json'));
        return d;
      }, /has no config\.json/],
      ['no onnx/model*.onnx', () => {
        const d = copy('noonnx');
        rmSync(path.join(d, 'onnx'), { recursive: true });
        mkdirSync(path.join(d, 'onnx'));
        return d;
      }, /has no onnx\/model\*\.onnx/],
      ['a file instead of a folder', () => path.join(stories, 'config.json'), /is a file, not a model folder/],
    ];
    for (const [label, make, message] of cases) {
      it(label, async () => {
        const dir = make();
        const { code, out, err } = await cli(['inspect', dir, '--json']);
        expect(code).toBe(2);
        expect(out).toBe('');
        const lines = err.trim().split('\n');
        expect(lines[0]).toMatch(/^error: /);
        expect(lines[0]).toMatch(message);
        expect(err).not.toMatch(/\n\s+at /);
      });
    }
  });
});
