/**
 * HellaSwag in the llama.cpp text format (6 lines per item: context, label 0-3, four endings), e.g.
 * hellaswag_val_full.txt. Context and endings cleaned as lm-eval's `preprocess`; continuation " <ending>";
 * acc and acc_norm. The full file may be gzip-compressed (`hellaswag_val_full.txt.gz`, read with node:zlib).
 */
import { badLine, findTaskFile, readTaskText } from './files.js';
import type { LoadOptions, McItem, TaskData } from './types.js';

/** lm-eval's HellaSwag text cleaning. */
export function preprocessHellaswag(text: string): string {
  return text.trim().replaceAll(' [title]', '. ').replace(/\[.*?\]/g, '').replaceAll('  ', ' ');
}

export function loadHellaswag(task: string, dirs: string[], options: LoadOptions & { file?: string } = {}): TaskData {
  const file = options.file ?? findTaskFile(task, dirs, ['hellaswag_val_full.txt', 'hellaswag/val.txt', 'hellaswag_val_full.txt.gz', 'hellaswag_val_full.txt.bz2']);
  const lines = readTaskText(task, file).split('\n');
  while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
  if (lines.length % 6 !== 0) {
    throw badLine(task, file, lines.length, `expected 6 lines per item (context, label, 4 endings); ${lines.length} lines is not a multiple of 6`);
  }
  let n = lines.length / 6;
  if (options.limit !== undefined) n = Math.min(n, options.limit);
  const items: McItem[] = [];
  for (let i = 0; i < n; i++) {
    const at = i * 6;
    const lab = lines[at + 1]!.trim();
    if (!/^[0-3]$/.test(lab)) throw badLine(task, file, at + 2, `expected the label 0-3, got "${lab}"`);
    const context = preprocessHellaswag(lines[at]!);
    const endings = lines.slice(at + 2, at + 6).map(preprocessHellaswag);
    items.push({ choices: endings.map((e) => ({ context, continuation: ` ${e}` })), label: Number(lab), normLengths: endings.map((e) => e.length) });
  }
  return { name: task, file, items, accNorm: true };
}
