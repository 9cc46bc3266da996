/**
 * PIQA (dev.jsonl: goal, sol1, sol2; labels in dev-labels.lst, one 0|1 per line).
 * Prompt "Question: <goal>\nAnswer:" + " <solution>"; acc and acc_norm.
 */
import path from 'node:path';
import { existsSync } from 'node:fs';
import { DsaPruneError } from '../../errors.js';
import { badLine, findTaskFile, parseJsonl, readTaskText, str } from './files.js';
import type { LoadOptions, McItem, TaskData } from './types.js';

export function loadPiqa(task: string, dirs: string[], options: LoadOptions & { file?: string } = {}): TaskData {
  const file = options.file ?? findTaskFile(task, dirs, ['piqa/dev.jsonl']);
  const labelsFile = file.replace(/\.jsonl$/, '-labels.lst');
  if (!existsSync(labelsFile)) {
    throw new DsaPruneError(`task ${task}: labels file not found; expected ${labelsFile} next to ${path.basename(file)}`);
  }
  const labelLines = readTaskText(task, labelsFile).split('\n');
  const recs = parseJsonl(task, file, readTaskText(task, file), options.limit);
  const items: McItem[] = recs.map(({ line, rec }, i) => {
    const lab = labelLines[i]?.trim();
    if (lab !== '0' && lab !== '1') throw badLine(task, labelsFile, i + 1, `expected 0 or 1, got "${lab ?? ''}"`);
    const context = `Question: ${str(task, file, line, rec, 'goal')}\nAnswer:`;
    const sols = [str(task, file, line, rec, 'sol1'), str(task, file, line, rec, 'sol2')];
    return { choices: sols.map((s) => ({ context, continuation: ` ${s}` })), label: Number(lab), normLengths: sols.map((s) => s.length) };
  });
  return { name: task, file, items, accNorm: true };
}
