/**
 * `dsa-prune eval <modelDir> [--dtype d] [--ppl <file>] [--seqlen n] [--stride n] [--task a,b] [--limit n] [--compare <dir>] [--json]`:
 * perplexity (reference protocol or strided) and zero-shot task accuracy; with --compare, the same data on a second
 * model and the deltas.
 */
import { defineCommand, formatOptions, parseCommandArgs } from '../args.js';
import { contextLength } from '../../model/context.js';
import type { CliIo } from '../io.js';
import { createProgress } from '../progress.js';
import { DsaPruneError, EXIT } from '../../errors.js';
import { loadModelVariant } from '../../model/index.js';
import { readTextFile, tokenizeText } from '../../data/text.js';
import { perplexity, type PerplexityResult } from '../../eval/perplexity.js';
import { evaluateTasks, TASK_NAMES, type TaskResult } from '../../eval/tasks/index.js';

const spec = defineCommand({
  name: 'eval',
  usage: 'dsa-prune eval <modelDir> [--dtype fp32|fp16|q8|q4] [--ppl <file>] [--seqlen n] [--stride n] [--task a,b] [--limit n] [--compare <otherDir>] [--json]',
  positionals: { min: 1, max: 1, names: ['modelDir'] },
  options: {
    dtype: { type: 'string', valueName: '<dtype>', description: "evaluate the file transformers.js loads for this dtype: fp32 = onnx/model.onnx, fp16 = model_fp16, q8 = model_quantized, q4 = model_q4 (default: model.onnx, else the first file)" },
    ppl: { type: 'string', valueName: '<file>', description: 'text file for perplexity (tokenized as one string)' },
    seqlen: { type: 'integer', min: 2, description: 'perplexity window in tokens (default min(2048, context length))' },
    stride: { type: 'integer', min: 1, description: 'sliding-window step: context = seqlen, only new tokens scored' },
    windows: { type: 'integer', min: 1, description: 'evaluate only the first n perplexity windows' },
    task: { type: 'string', multiple: true, valueName: '<a,b>', description: `zero-shot tasks: ${TASK_NAMES.join(', ')}; <task>=<file> for your own copy` },
    limit: { type: 'integer', min: 1, description: 'first n items of each task' },
    'data-dir': { type: 'string', multiple: true, valueName: '<dir>', description: 'task data folder, repeatable, searched in order (layout in docs/evaluation.md)' },
    'batch-size': { type: 'integer', min: 1, description: 'rows per forward (default: about 512 tokens per run)' },
    'no-bos': { type: 'boolean', description: 'zero-shot: no BOS before each sequence (lm-eval HF default)' },
    compare: { type: 'string', valueName: '<otherDir>', description: 'evaluate a second model on the same data; print deltas' },
  },
});

export const help = `dsa-prune eval — perplexity and zero-shot accuracy of a model

Usage: ${spec.usage}

Perplexity follows the reference protocol: the file tokenized as one string, non-overlapping windows of --seqlen
tokens from the start (remainder dropped), exp(mean over windows of each window's mean next-token NLL). With --stride,
windows of --seqlen tokens start every --stride tokens and only the tokens not scored before count (token-weighted).
Tasks are scored like lm-evaluation-harness (sum of log-probs of each answer; acc and length-normalised acc_norm).
Task data is read from the --data-dir folder(s) when given, else from the small subsets shipped in data/tasks.

${formatOptions(spec.options)}

JSON (--json): { "ppl"?, "file", "dtype", "bytes", "perplexity"?: { windows, tokens, seconds, tokensPerSecond, seqlen, stride? },
                 "tasks": { "<name>": { "acc", "acc_norm"?, "n" } },
                 with --compare also "compare": { "model", "ppl"?, "tasks" } and "delta" (this model − the other) }

Examples:
  dsa-prune eval models/stories260k --ppl data/tinystories/tinystories_eval.txt --seqlen 512
  dsa-prune eval out/wanda50 --dtype q4 --ppl data/tinystories/tinystories_eval.txt --seqlen 512
  dsa-prune eval out/wanda50 --task copa,blimp:anaphor_gender_agreement --limit 200 --compare models/stories260k
`;

interface EvalOutput {
  /** The file evaluated (relative to the model folder), its dtype and its size in bytes (with external data). */
  file?: string;
  dtype?: string;
  bytes?: number;
  ppl?: number;
  perplexity?: Omit<PerplexityResult, 'ppl'> & { seqlen: number; stride?: number };
  tasks: Record<string, TaskResult>;
}

type Args = ReturnType<typeof parseCommandArgs<typeof spec.options>>;

async function evaluateOne(dir: string, args: Args, tasks: string[], text: string | undefined, io: CliIo, label: string): Promise<EvalOutput> {
  const { model, tokenizer, file, dtype, bytes } = await loadModelVariant(dir, { threads: args.common.threads, ...(args.values.dtype !== undefined ? { dtype: args.values.dtype } : {}) });
  try {
    if (!tokenizer) throw new DsaPruneError(`${dir} has no tokenizer files (tokenizer.json)`, { hint: 'evaluation needs the tokenizer of the model' });
    const progress = createProgress(io, { quiet: args.common.quiet, json: args.common.json });
    const out: EvalOutput = { tasks: {} };
    try {
      if (text !== undefined) {
        const seqlen = args.values.seqlen ?? Math.min(2048, contextLength(model.config) ?? 2048);
        const r = await perplexity(model, tokenizeText(tokenizer, text), {
          seqlen,
          stride: args.values.stride,
          batchSize: args.values['batch-size'],
          limitWindows: args.values.windows,
          onProgress: (p) => progress.callback({ ...p, phase: `${label}perplexity` }),
          signal: io.signal,
        });
        const { ppl, ...rest } = r;
        out.ppl = ppl;
        out.perplexity = { ...rest, seqlen, ...(args.values.stride !== undefined ? { stride: args.values.stride } : {}) };
      }
      if (tasks.length > 0) {
        out.tasks = await evaluateTasks(model, tokenizer, tasks, {
          limit: args.values.limit,
          dataDir: args.values['data-dir'],
          batchSize: args.values['batch-size'],
          bos: !args.values['no-bos'],
          signal: io.signal,
          onProgress: (p) => progress.callback({ ...p, phase: `${label}${p.phase}` }),
        });
      }
    } finally {
      progress.done();
    }
    // Key order of the JSON: ppl first.
    return { ...(out.ppl !== undefined ? { ppl: out.ppl, perplexity: out.perplexity } : {}), tasks: out.tasks, file, dtype, bytes };
  } finally {
    await model.dispose?.();
  }
}

function delta(a: EvalOutput, b: EvalOutput): { ppl?: number; tasks: Record<string, { acc: number; acc_norm?: number }> } {
  const d: { ppl?: number; tasks: Record<string, { acc: number; acc_norm?: number }> } = { tasks: {} };
  if (a.ppl !== undefined && b.ppl !== undefined) d.ppl = a.ppl - b.ppl;
  for (const [name, r] of Object.entries(a.tasks)) {
    const o = b.tasks[name];
    if (!o) continue;
    d.tasks[name] = { acc: r.acc - o.acc };
    if (r.acc_norm !== undefined && o.acc_norm !== undefined) d.tasks[name]!.acc_norm = r.acc_norm - o.acc_norm;
  }
  return d;
}

const f4 = (x: number | undefined) => (x === undefined ? '' : x.toFixed(4));
const signed = (x: number | undefined) => (x === undefined ? '' : (x >= 0 ? '+' : '') + x.toFixed(4));

function table(dir: string, a: EvalOutput, other?: { dir: string; out: EvalOutput }): string {
  const rows: string[][] = [];
  const head = other ? ['metric', dir, other.dir, 'delta'] : ['metric', dir];
  const d = other ? delta(a, other.out) : undefined;
  if (a.ppl !== undefined) {
    rows.push(['perplexity', a.ppl.toFixed(4), ...(other ? [f4(other.out.ppl), signed(d!.ppl)] : [])]);
  }
  for (const [name, r] of Object.entries(a.tasks)) {
    const o = other?.out.tasks[name];
    rows.push([`${name} acc (n=${r.n})`, f4(r.acc), ...(other ? [f4(o?.acc), signed(d!.tasks[name]?.acc)] : [])]);
    if (r.acc_norm !== undefined) {
      rows.push([`${name} acc_norm`, f4(r.acc_norm), ...(other ? [f4(o?.acc_norm), signed(d!.tasks[name]?.acc_norm)] : [])]);
    }
  }
  const all = [head, ...rows];
  const widths = head.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) => r.map((s, c) => (c === 0 ? s.padEnd(widths[c]!) : s.padStart(widths[c]!))).join('  ').trimEnd();
  let s = all.map(line).join('\n') + '\n';
  for (const [d, o] of [[dir, a], ...(other ? [[other.dir, other.out] as const] : [])] as const) {
    if (o.file) s += `${d}: ${o.file} (dtype ${o.dtype}, ${o.bytes!.toLocaleString('en-US')} bytes)\n`;
  }
  if (a.perplexity) {
    const p = a.perplexity;
    s += `perplexity: ${p.windows} windows of ${p.seqlen}${p.stride ? ` (stride ${p.stride})` : ''}, ${p.tokens} tokens in ${p.seconds.toFixed(1)} s (${Math.round(p.tokensPerSecond)} tokens/s)\n`;
  }
  return s;
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const args = parseCommandArgs(argv, spec);
  if (args.help) {
    io.stdout(help);
    return EXIT.ok;
  }
  const dir = args.positionals[0]!;
  const tasks = (args.values.task ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
  if (args.values.ppl === undefined && tasks.length === 0) {
    throw new DsaPruneError('nothing to evaluate: pass --ppl <file> and/or --task <names>', { hint: `usage: ${spec.usage}` });
  }
  if (args.values.stride !== undefined && args.values.seqlen !== undefined && args.values.stride > args.values.seqlen) {
    throw new DsaPruneError(`--stride ${args.values.stride} is larger than --seqlen ${args.values.seqlen}`, { hint: 'use a stride ≤ seqlen' });
  }
  const text = args.values.ppl !== undefined ? await readTextFile(args.values.ppl) : undefined;
  const a = await evaluateOne(dir, args, tasks, text, io, args.values.compare ? 'model: ' : '');
  let other: { dir: string; out: EvalOutput } | undefined;
  if (args.values.compare) {
    other = { dir: args.values.compare, out: await evaluateOne(args.values.compare, args, tasks, text, io, 'compare: ') };
  }
  if (args.common.json) {
    const json: Record<string, unknown> = { ...a };
    if (other) {
      json.compare = { model: other.dir, ...other.out };
      json.delta = delta(a, other.out);
    }
    io.stdout(JSON.stringify(json, null, 2) + '\n');
  } else {
    io.stdout(table(dir, a, other));
  }
  return EXIT.ok;
}
