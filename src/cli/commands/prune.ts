import { readFileSync } from 'node:fs';
import path from 'node:path';
import { defineCommand, formatOptions, parseCommandArgs } from '../args.js';
import type { CliIo } from '../io.js';
import { loadPlugins, PLUGIN_OPTION } from '../plugins.js';
import { createProgress } from '../progress.js';
import { isStructuredResult, structuredResultAllocator } from '../../search/structured-fitness.js';
import { DsaPruneError, EXIT } from '../../errors.js';
import { attachModel, loadModelDir } from '../../model/index.js';
import { checkQ4BlockSize, checkQ4Options } from '../../compress/index.js';
import { parseAllocatorSpec, dsa, atGranularity, checkGranularity, type Allocator } from '../../allocators/index.js';
import { lastPruneCalibration, planPrune, pruneModel, type PruneOptions } from '../../prune.js';
import { onnxFileBytes, savePruned } from '../../save.js';
import { levelsAllocator } from '../../search/levels.js';
import { validateSearchAllocation } from '../../report/types.js';

const spec = defineCommand({
  name: 'prune',
  usage: 'dsa-prune prune <modelDir> --out <dir> --method wanda --sparsity 0.5 --calibration <file> [options]',
  positionals: { min: 1, max: 1, names: ['modelDir'] },
  options: {
    out: { type: 'string', short: 'o', valueName: '<dir>', description: 'output folder (must not exist, or be empty; never the model folder)' },
    method: { type: 'string', default: 'wanda', description: 'pruning method: magnitude, wanda, sparsegpt, structured (remove whole channels, a smaller dense model; see docs/structured.md), or one a --plugin registers' },
    plugin: PLUGIN_OPTION,
    target: { type: 'string', multiple: true, valueName: '<t>', description: 'structured: what to remove (ffn: MLP intermediate channels; heads: whole KV groups, the same count in every block; depth: whole sub-layers); repeatable or comma list' },
    score: { type: 'string', choices: ['wanda-sp', 'flap', 'magnitude'], valueName: '<s>', description: 'structured: channel score (default wanda-sp; flap adds its bias compensation)' },
    'depth-score': { type: 'string', choices: ['bi', 'loss'], valueName: '<s>', description: 'structured --target depth: sub-layer score (bi: block influence 1 − cos, default; loss: calibration loss increase)' },
    'depth-unit': { type: 'string', choices: ['sublayer', 'block'], valueName: '<u>', description: 'structured --target depth: remove attention / MLP sub-layers (default) or whole blocks' },
    sparsity: { type: 'number', min: 0, max: 1, maxExclusive: true, default: 0.5, description: 'global target sparsity' },
    pattern: { type: 'string', default: 'unstructured', valueName: '<p>', description: "'unstructured' or N:M such as 2:4, 4:8" },
    budget: { type: 'string', choices: ['exact', 'reference'], default: 'exact', description: 'exact: realised = target; reference: the reference code rounding' },
    allocator: { type: 'string', default: 'uniform', valueName: '<a>', description: 'uniform | owl | atp | dsa:<expression> | <expression> | @<search-result.json> | flap-global (--method structured --target ffn)' },
    granularity: { type: 'string', choices: ['block', 'linear'], default: 'block', description: 'one sparsity per decoder block, or per linear (q, k, v, o, gate, up, down)' },
    lambda: { type: 'number', min: 0, max: 0.5, description: 'allocation spread λ (OWL, DSA; default 0.08)' },
    'owl-m': { type: 'number', min: 0, minExclusive: true, description: 'OWL outlier threshold M (default 5)' },
    beta: { type: 'number', min: 0, description: 'ATP step β' },
    calibration: { type: 'string', multiple: true, valueName: '<file>', description: 'calibration text file(s)' },
    nsamples: { type: 'integer', min: 1, default: 128, description: 'calibration sequences' },
    seqlen: { type: 'integer', min: 2, description: "tokens per sequence (default min(2048, the model's context))" },
    seed: { type: 'integer', description: 'sample calibration windows at random positions with this seed' },
    mode: { type: 'string', choices: ['sequential', 'oneshot'], default: 'sequential', description: 'statistics from pruned (sequential) or dense (oneshot) predecessors' },
    include: { type: 'string', multiple: true, valueName: '<s>', description: 'only linears whose name contains this' },
    exclude: { type: 'string', multiple: true, valueName: '<s>', description: 'skip linears whose name contains this' },
    'skip-first': { type: 'integer', min: 0, default: 0, description: 'leave the first n blocks dense' },
    'skip-last': { type: 'integer', min: 0, default: 0, description: 'leave the last n blocks dense' },
    'lm-head': { type: 'boolean', description: 'also prune lm_head' },
    'batch-size': { type: 'integer', min: 1, description: 'calibration sequences per onnxruntime run (default 8)' },
    overwrite: { type: 'boolean', description: 'replace a non-empty output folder' },
    'dry-run': { type: 'boolean', description: 'print the plan (layers, sparsities, memory) and stop' },
    quantize: { type: 'string', multiple: true, choices: ['q8', 'q4'], valueName: '<q>', description: 'also write onnx/model_quantized.onnx (q8) or onnx/model_q4.onnx (q4, MatMulNBits); pruned zeros stay exact' },
    compress: { type: 'boolean', description: 'store onnx/model.onnx as bitmask + non-zero values (plain ONNX, bit-identical weights at load); with --quantize q4 / q8 also model_q4.onnx (block mask + bitmask + non-zero 4-bit codes) / model_quantized.onnx (bitmask + non-zero int8), loaded with dtype q4 / q8' },
    'q4-embedding': { type: 'string', choices: ['q4', 'q8'], default: 'q4', description: 'with --quantize q4: the embedding table in 4 bits (GatherBlockQuantized; a tied lm_head\'s codes are stored once) or int8 per row' },
    'q4-head-block': { type: 'integer', min: 16, valueName: '<n>', description: 'with --quantize q4: q4 block size of the lm_head and the 4-bit embedding table only (power of two ≥ 16 dividing the hidden size; default 16 when it divides every 4-bit table, else 32; 32 = the exporters\' uniform layout); a tied table still reads the lm_head\'s codes' },
    gptq: { type: 'boolean', description: 'q4 with GPTQ error feedback on the surviving weights (Hessians from the calibration set; needs --quantize q4 and --calibration)' },
    'gptq-lm-head': { type: 'string', choices: ['tied', 'untied'], description: 'with --gptq: GPTQ the lm_head too (final-norm Gram); tied: a tied 4-bit embedding reads its codes; untied: the table keeps its own codes (+bytes)' },
    'gptq-symmetric': { type: 'boolean', description: 'with --gptq: plain sequential GPTQ (fit W·x on the quantized-prefix inputs) instead of the default asymmetric calibration (GPTAQ: fit the unquantized pruned model\'s outputs W·x̃)' },
    dtype: { type: 'string', valueName: '<d>', description: 'which onnx/model*.onnx to prune: fp32 | fp16 | … (default: fp32 if present, else fp16)' },
    'max-memory': { type: 'number', min: 0, minExclusive: true, valueName: '<GB>', description: 'memory the prune may use (default: the available memory); refused before any work when the estimate is above' },
    'allow-remote': { type: 'boolean', description: 'let <modelDir> be a hub id (org/name) downloaded by transformers.js from env.remoteHost (also DSA_PRUNE_ALLOW_REMOTE=1)' },
  },
});

export const help = `dsa-prune prune — prune a model and save it as a folder transformers.js loads

Usage: ${spec.usage}

${formatOptions(spec.options)}

Examples:
  dsa-prune prune models/stories260k --out out/wanda50 --method wanda --sparsity 0.5 --calibration calib.txt --nsamples 64 --seqlen 512
  dsa-prune prune models/stories260k --out out/owl70 --sparsity 0.7 --allocator owl --calibration calib.txt
  dsa-prune prune models/stories260k --out out/sgpt24 --method sparsegpt --pattern 2:4 --calibration calib.txt --json
  dsa-prune prune models/stories260k --out out/dsa --allocator @search-result.json --calibration calib.txt
  dsa-prune prune models/stories260k --out out/depth20 --method structured --target depth --depth-score bi --sparsity 0.2 --calibration calib.txt
  dsa-prune prune models/stories260k --out out/ffn25 --method structured --target ffn --score flap --sparsity 0.25 --calibration calib.txt
`;

/** `--allocator @file.json` re-runs the expression a search found, on this model's statistics. */
export function allocatorFrom(
  value: string,
  o: { lambda?: number; owlM?: number; beta?: number; method?: string; target?: string[]; score?: string; sparsity?: number },
): Allocator | ((modelHash: string) => Allocator) {
  if (value.startsWith('@')) {
    const file = value.slice(1);
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new DsaPruneError(`cannot read search result ${file}: ${(e as Error).message}`, {
        code: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not-found' : 'invalid-data', hint: 'Pass the JSON written by `dsa-prune search --out`.', cause: e,
      });
    }
    // A structured search's per-block FFN widths: this model, target, score and sparsity only (checked once loaded).
    if (isStructuredResult(raw)) {
      return (hash: string) => structuredResultAllocator(raw, file, {
        modelHash: hash, method: o.method, target: o.target ?? ['ffn'], score: o.score ?? 'wanda-sp', sparsity: o.sparsity ?? NaN,
      });
    }
    if (o.method === 'structured') {
      throw new DsaPruneError(`${file} is the result of an unstructured search (method ${String((raw as { method?: unknown } | null)?.method ?? 'unknown')}); --method structured needs per-block FFN widths searched for it`, {
        code: 'invalid-input', hint: 'Search with `dsa-prune search --method structured --target ffn …`, or prune with the method the result was searched for.',
      });
    }
    // A levels result is this model's per-linear allocation: refused on another model (by its hash).
    if (typeof raw === 'object' && raw !== null && (raw as { strategy?: unknown }).strategy === 'levels') {
      return (hash: string) => levelsAllocator(raw, hash, file);
    }
    const r = validateSearchAllocation(raw, file);
    // The function transfers to any model or sparsity, at the granularity it was searched at.
    return atGranularity(dsa(r.best.expression, { lambda: o.lambda ?? r.best.lambda ?? 0.08 }), checkGranularity(r.granularity));
  }
  return parseAllocatorSpec(value, o);
}

export async function run(argv: string[], io: CliIo): Promise<number> {
  const args = parseCommandArgs(argv, spec);
  if (args.help) {
    io.stdout(help);
    return EXIT.ok;
  }
  const v = args.values;
  const modelDir = args.positionals[0];
  // User methods first (an unknown --method is refused here, before anything is read).
  await loadPlugins(v.plugin, v.method === 'structured' ? undefined : v.method);
  const dryRun = v['dry-run'] === true;
  if (!dryRun && !v.out) throw new DsaPruneError('prune needs --out <dir>', { hint: spec.usage });
  if (v.out && path.resolve(v.out) === path.resolve(modelDir)) {
    throw new DsaPruneError(`--out ${v.out} is the model folder itself; dsa-prune never overwrites the source model`, { hint: 'Choose a new folder for the pruned model.' });
  }
  if (v.gptq && !(v.quantize ?? []).includes('q4')) {
    throw new DsaPruneError('--gptq needs --quantize q4: GPTQ computes the 4-bit codes of model_q4.onnx', { hint: 'Add --quantize q4 (q8 is written with round-to-nearest, nearly lossless).' });
  }
  if (!v.gptq && (v['gptq-lm-head'] !== undefined || v['gptq-symmetric'])) {
    throw new DsaPruneError(`${v['gptq-symmetric'] ? '--gptq-symmetric' : '--gptq-lm-head'} needs --gptq`, { hint: 'Add --gptq (with --quantize q4 and --calibration).' });
  }
  const headBlock = v['q4-head-block'] as number | undefined;
  if (headBlock !== undefined) {
    if (!(v.quantize ?? []).includes('q4')) throw new DsaPruneError('--q4-head-block needs --quantize q4', { hint: 'Add --quantize q4, or drop --q4-head-block.' });
    checkQ4BlockSize(headBlock, '--q4-head-block');
  }
  const quantizeOptions = { embedding: v['q4-embedding'] as 'q4' | 'q8', ...(headBlock !== undefined ? { headBlockSize: headBlock } : {}) };
  if (v.gptq && !(v.calibration && v.calibration.length)) {
    throw new DsaPruneError('--gptq needs --calibration <file>: GPTQ uses the Hessians of the calibration set', { hint: 'Pass the calibration text, e.g. --calibration calib.txt.' });
  }
  const allocatorOrLevels = allocatorFrom(v.allocator, {
    lambda: v.lambda, owlM: v['owl-m'], beta: v.beta, method: v.method, sparsity: v.sparsity, ...(v.score !== undefined ? { score: v.score } : {}),
    ...(v.target !== undefined ? { target: (v.target as string[]).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean) } : {}),
  });
  const { model, prunable } = await loadModelDir(modelDir, {
    threads: args.common.threads, ...(v.dtype ? { dtype: v.dtype } : {}), ...(v['allow-remote'] ? { allowRemote: true } : {}),
  });
  // q4 options against the model (the head block must divide the embedding table's width), before any work.
  if ((v.quantize ?? []).includes('q4')) checkQ4Options((await attachModel(model)).proto.graph, quantizeOptions);
  // A levels result is checked against the model it was found on as soon as the model is loaded, before any work.
  const allocator = typeof allocatorOrLevels === 'function' ? allocatorOrLevels(prunable.modelHash()) : allocatorOrLevels;
  const progress = createProgress(io, args.common);
  const structured = v.method === 'structured';
  if (!structured && (v.target !== undefined || v.score !== undefined || v['depth-score'] !== undefined || v['depth-unit'] !== undefined)) {
    throw new DsaPruneError('--target, --score, --depth-score and --depth-unit apply to --method structured only', { hint: 'Add --method structured, or drop --target / --score.' });
  }
  if (structured && dryRun) throw new DsaPruneError('--dry-run is not available for --method structured yet', { hint: 'Run without --dry-run; bad shares are refused before any work.' });
  const options: PruneOptions = {
    method: v.method,
    ...(structured ? { target: v.target ?? ['ffn'], ...(v.score !== undefined ? { score: v.score } : {}) } : {}),
    ...(v['depth-score'] !== undefined ? { depthScore: v['depth-score'] } : {}),
    ...(v['depth-unit'] !== undefined ? { depthUnit: v['depth-unit'] } : {}),
    sparsity: v.sparsity,
    pattern: v.pattern,
    budget: v.budget as 'exact' | 'reference',
    allocator,
    granularity: v.granularity as 'block' | 'linear',
    calibration: v.calibration && v.calibration.length ? { files: v.calibration, ...(v.seed !== undefined ? { seed: v.seed } : {}) } : undefined,
    nsamples: v.nsamples,
    seqlen: v.seqlen,
    mode: v.mode as 'sequential' | 'oneshot',
    include: v.include,
    exclude: v.exclude,
    skipFirstBlocks: v['skip-first'],
    skipLastBlocks: v['skip-last'],
    lmHead: v['lm-head'],
    threads: args.common.threads,
    batchSize: v['batch-size'],
    onProgress: progress.callback,
    signal: io.signal,
    ...(v['max-memory'] !== undefined ? { maxMemoryGB: v['max-memory'] } : {}),
  };

  if (dryRun) {
    const plan = await planPrune(model, options);
    progress.done();
    if (args.common.json) io.stdout(JSON.stringify(plan, null, 2) + '\n');
    else {
      io.stdout(`plan: ${plan.method} ${plan.pattern} at ${plan.sparsity} (${plan.budget} budget), allocator ${plan.allocator}\n`);
      io.stdout(`${plan.linears.length} linears, ${plan.params} parameters, ~${plan.zeros} zeros\n`);
      for (const l of plan.linears) io.stdout(`  ${l.name.padEnd(48)} block ${String(l.block).padStart(3)}  ${l.role.padEnd(5)} ${String(l.dOut + '×' + l.dIn).padStart(12)}  → ${(l.target * 100).toFixed(2)}%\n`);
      io.stdout(`memory: ~${(plan.memory.peakBytes / 2 ** 20).toFixed(0)} MiB peak (${plan.memory.explanation})\n`);
    }
    return EXIT.ok;
  }

  const report = await pruneModel(model, options);
  progress.done();
  const sourceOnnx = report.structured ? (await attachModel(model)).source.onnxPath : undefined;
  const saved = await savePruned(model, v.out!, {
    overwrite: v.overwrite, quantize: v.quantize as ('q8' | 'q4')[] | undefined, compress: v.compress,
    quantizeOptions,
    ...(v.gptq
      ? {
          gptq: {
            threads: args.common.threads, batchSize: v['batch-size'], onProgress: progress.callback, signal: io.signal,
            ...(v['gptq-lm-head'] ? { lmHead: v['gptq-lm-head'] as 'tied' | 'untied' } : {}), ...(v['gptq-symmetric'] ? { asymmetric: false } : {}),
          },
          // magnitude records no calibration windows: give GPTQ the same calibration options
          ...(lastPruneCalibration(model as object) ? {} : { calibration: options.calibration, nsamples: v.nsamples, seqlen: v.seqlen }),
        }
      : {}),
  });
  if (args.common.json) {
    io.stdout(JSON.stringify({
      realizedSparsity: report.realizedSparsity,
      blockSparsity: report.blockSparsity,
      targetBlockSparsity: report.targetBlockSparsity,
      seconds: report.seconds.total,
      method: report.method,
      pattern: report.pattern,
      budget: report.budget,
      sparsity: report.sparsity,
      allocator: report.allocator,
      out: v.out,
      linears: report.linears.map((l) => ({ name: l.name, block: l.block, role: l.role, sparsity: l.sparsity })),
      notes: report.notes,
      timings: report.seconds,
      ...(saved ? { files: saved.files, denseBytes: saved.dense.bytes } : {}),
      ...(saved?.gptq ? { gptq: saved.gptq } : {}),
      ...(report.structured ? {
        structured: {
          target: report.structured.target, score: report.structured.score, blocks: report.structured.blocks.map(({ kept: _k, ...b }) => b),
          ...(report.structured.config ? { config: report.structured.config } : {}),
          ...(report.structured.depth ? { depth: report.structured.depth } : {}),
        },
        params: report.structured.params,
        bytes: { before: onnxFileBytes(path.dirname(sourceOnnx!), path.basename(sourceOnnx!)), after: onnxFileBytes(path.join(v.out!, 'onnx'), path.basename(sourceOnnx!)) },
      } : {}),
    }, null, 2) + '\n');
  } else if (!args.common.quiet) {
    io.stdout(`pruned ${report.linears.length} linears with ${report.method} (${report.pattern}, ${report.allocator.name}, ${report.budget} budget)\n`);
    io.stdout(`realised sparsity ${(report.realizedSparsity * 100).toFixed(3)}% (target ${(report.sparsity * 100).toFixed(1)}%) in ${report.seconds.total.toFixed(1)} s\n`);
    io.stdout(`per block: ${report.blockSparsity.map((s) => (s * 100).toFixed(1) + '%').join(' ')}\n`);
    if (report.structured) {
      io.stdout(`FFN width per block: ${report.structured.blocks.map((b) => `${b.ffnAfter}/${b.ffnBefore}`).join(' ')}\n`);
      const b0 = report.structured.blocks[0];
      if (b0?.headsAfter !== undefined) io.stdout(`attention heads (every block): ${b0.headsAfter}/${b0.headsBefore} query, ${b0.kvHeadsAfter}/${b0.kvHeadsBefore} KV\n`);
      if (report.structured.depth) io.stdout(`removed sub-layers (${report.structured.depth.score}): ${report.structured.depth.removed.join(' ') || 'none'}\n`);
      io.stdout(`parameters ${report.structured.params.before.toLocaleString('en-US')} → ${report.structured.params.after.toLocaleString('en-US')}; ` +
        `onnx bytes ${onnxFileBytes(path.dirname(sourceOnnx!), path.basename(sourceOnnx!)).toLocaleString('en-US')} → ${onnxFileBytes(path.join(v.out!, 'onnx'), path.basename(sourceOnnx!)).toLocaleString('en-US')}\n`);
    }
    for (const n of report.notes) io.stdout(`note: ${n}\n`);
    io.stdout(`saved to ${v.out}\n`);
    if (saved?.gptq) io.stdout(`q4 codes from GPTQ: ${saved.gptq.linears} linears, groups of ${saved.gptq.blockSize}, ${saved.gptq.seconds.toFixed(1)} s\n`);
    if (saved) for (const f of saved.files) io.stdout(`  ${f.file.padEnd(28)} ${f.kind.padEnd(10)} ${(f.bytes / 2 ** 20).toFixed(2).padStart(9)} MiB  ${(f.ratio * 100).toFixed(1).padStart(5)}% of the dense file\n`);
  }
  return EXIT.ok;
}
