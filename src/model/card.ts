/**
 * The model card (README.md) savePruned writes, in the Hugging Face hub's conventions: YAML front matter
 * (base_model, library_name: transformers.js, pipeline_tag: text-generation, tags, license copied from the source when
 * known) and a body with what was done — method, pattern, allocator, target and realised sparsity, the per-block table,
 * the calibration set (source and hash) and any measured perplexity.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** What the card says; the fields of pruning.json (all optional: a plain re-save has none of them). */
export interface CardInput {
  /** Folder name of the saved model (the card's title). */
  name: string;
  /** Source model folder (its README front matter gives license and base model). */
  sourceDir?: string;
  /** Hub id the source was loaded by (org/name), when it was. */
  sourceId?: string;
  /** Source config.json (its `_name_or_path` names the base model when nothing else does). */
  config?: Record<string, unknown>;
  /** ONNX files written (onnx/…), for the "files" line. */
  files?: string[];
  manifest: Record<string, unknown>;
  version: string;
}

/** Front matter of a README.md (`---` YAML `---`), flat keys only: scalars and `- item` lists. */
export function readFrontMatter(text: string): Record<string, string | string[]> {
  const m = /^---\r?\n([\s\S]*?)\r?\n---/.exec(text);
  const out: Record<string, string | string[]> = {};
  if (!m) return out;
  let listKey: string | undefined;
  for (const line of m[1]!.split(/\r?\n/)) {
    const item = /^\s+-\s+(.*)$/.exec(line) ?? /^-\s+(.*)$/.exec(line);
    if (item && listKey) {
      (out[listKey] as string[]).push(unquote(item[1]!));
      continue;
    }
    const kv = /^([A-Za-z_][\w-]*):\s*(.*)$/.exec(line);
    if (!kv) continue;
    const [, k, v] = kv;
    if (v!.trim() === '') {
      out[k!] = [];
      listKey = k;
    } else {
      listKey = undefined;
      const inline = /^\[(.*)\]$/.exec(v!.trim());
      out[k!] = inline ? inline[1]!.split(',').map((s) => unquote(s.trim())).filter(Boolean) : unquote(v!.trim());
    }
  }
  return out;
}

function unquote(s: string): string {
  return s.replace(/^["']|["']$/g, '');
}

/** A YAML scalar, quoted when it could be read as something else. */
function yaml(s: string): string {
  return /^[\w./@+-]+$/.test(s) && !/^(true|false|null|yes|no|~|[\d.+-]+)$/i.test(s) ? s : JSON.stringify(s);
}

const pct = (x: unknown, d = 2): string => (typeof x === 'number' && Number.isFinite(x) ? `${(x * 100).toFixed(d)} %` : '—');

function isId(s: unknown): s is string {
  return typeof s === 'string' && /^[\w.-]+\/[\w.-]+$/.test(s) && !s.startsWith('.') && !s.includes('..');
}

/** The README.md text. */
export function modelCard(c: CardInput): string {
  const src = c.sourceDir && existsSync(path.join(c.sourceDir, 'README.md')) ? readFrontMatter(readFileSync(path.join(c.sourceDir, 'README.md'), 'utf8')) : {};
  const m = c.manifest;
  const base = c.sourceId ?? (isId(src.base_model) ? src.base_model : Array.isArray(src.base_model) && isId(src.base_model[0]) ? src.base_model[0] : isId(c.config?._name_or_path) ? c.config!._name_or_path : undefined);
  const license = typeof src.license === 'string' ? src.license : undefined;
  const method = typeof m.method === 'string' ? m.method : undefined;
  const pattern = typeof m.pattern === 'string' ? m.pattern : undefined;
  const allocator = m.allocator as { name?: string; description?: string } | undefined;
  const tags = ['pruned', 'dsa-prune', ...(method ? [method] : []), ...(pattern && pattern !== 'unstructured' ? [`sparsity-${pattern}`] : []),
    ...(typeof m.sparsity === 'number' ? [`sparsity-${Math.round(m.sparsity * 100)}`] : []), ...(allocator?.name && allocator.name !== 'uniform' ? [allocator.name] : []), 'onnx'];
  const fm = ['---'];
  if (base) fm.push(`base_model: ${yaml(base)}`);
  fm.push('library_name: transformers.js', 'pipeline_tag: text-generation');
  if (license) fm.push(`license: ${yaml(license)}`);
  fm.push('tags:', ...[...new Set(tags)].map((t) => `- ${yaml(t)}`), '---', '');

  const body: string[] = [`# ${c.name}`, ''];
  body.push(base ? `[${base}](https://huggingface.co/${base}) pruned with [dsa-prune](https://www.npmjs.com/package/dsa-prune) ${c.version}.` : `Pruned with dsa-prune ${c.version}.`, '');
  if (method) {
    const cal = m.calibration as { nsamples?: number; seqlen?: number; tokens?: number; sha256?: string; source?: string } | undefined;
    body.push('| | |', '|---|---|');
    body.push(`| method | ${method}${pattern ? ` (${pattern})` : ''} |`);
    if (typeof m.budget === 'string') body.push(`| budget | ${m.budget} |`);
    if (allocator?.name) body.push(`| allocator | ${allocator.name}${allocator.description && allocator.description !== allocator.name ? ` — ${allocator.description}` : ''} |`);
    body.push(`| target sparsity | ${pct(m.sparsity, 1)} |`);
    body.push(`| realised sparsity | ${pct(m.realizedSparsity, 3)} (of the pruned linears) |`);
    if (cal) body.push(`| calibration | ${cal.nsamples ?? '?'} × ${cal.seqlen ?? '?'} tokens from ${cal.source ?? 'unknown'}, sha256 \`${cal.sha256 ?? '?'}\` |`);
    else body.push('| calibration | none (data-free method) |');
    const ppl = m.perplexity;
    if (typeof ppl === 'number') body.push(`| perplexity | ${ppl.toFixed(3)} |`);
    else if (ppl && typeof ppl === 'object') for (const [k, v] of Object.entries(ppl)) if (typeof v === 'number') body.push(`| perplexity (${k}) | ${v.toFixed(3)} |`);
    body.push('');
    const real = Array.isArray(m.blockSparsity) ? (m.blockSparsity as number[]) : [];
    const target = Array.isArray(m.targetBlockSparsity) ? (m.targetBlockSparsity as number[]) : [];
    if (real.length) {
      body.push('## Sparsity per block', '', '| block | target | realised |', '|---:|---:|---:|');
      real.forEach((r, i) => body.push(`| ${i} | ${pct(target[i])} | ${pct(r)} |`));
      body.push('');
    }
    if (m.perplexity === undefined) body.push('No perplexity was measured for this save (`dsa-prune eval` measures it).', '');
  } else {
    body.push('Saved by dsa-prune without a pruning run (no method recorded).', '');
  }
  if (c.files?.length) body.push(`Files: ${c.files.map((f) => `\`onnx/${f}\``).join(', ')}. \`pruning.json\` lists every linear's sparsity.`, '');
  body.push('## Usage', '', '```js', "import { pipeline } from '@huggingface/transformers';", '', `const generator = await pipeline('text-generation', '<this model>');`, "const out = await generator('Once upon a time', { max_new_tokens: 32 });", '```', '');
  return fm.join('\n') + '\n' + body.join('\n');
}
