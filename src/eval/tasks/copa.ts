/**
 * COPA (SuperGLUE jsonl: premise, choice1, choice2, question cause|effect, label 0|1).
 * Prompt "<premise without its final period> because|so" + " <choice with a lower-cased first letter>"; acc.
 * (lm-eval writes "therefore" for effect; the project's reference measurement uses "so".)
 */
import { badLine, findTaskFile, parseJsonl, readTaskText, str } from './files.js';
import type { LoadOptions, McItem, TaskData } from './types.js';

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);

export function loadCopa(task: string, dirs: string[], options: LoadOptions & { file?: string } = {}): TaskData {
  const file = options.file ?? findTaskFile(task, dirs, ['superglue/COPA/val.jsonl', 'COPA/val.jsonl', 'copa/val.jsonl']);
  const items: McItem[] = parseJsonl(task, file, readTaskText(task, file), options.limit).map(({ line, rec }) => {
    const q = str(task, file, line, rec, 'question');
    if (q !== 'cause' && q !== 'effect') throw badLine(task, file, line, `field "question" must be "cause" or "effect", got "${q}"`);
    const premise = str(task, file, line, rec, 'premise').trim();
    const label = rec.label;
    if (label !== 0 && label !== 1) throw badLine(task, file, line, 'field "label" must be 0 or 1');
    const context = `${premise.replace(/[.!?]$/, '')} ${q === 'cause' ? 'because' : 'so'}`;
    const choices = [str(task, file, line, rec, 'choice1'), str(task, file, line, rec, 'choice2')];
    return { choices: choices.map((c) => ({ context, continuation: ` ${lowerFirst(c)}` })), label };
  });
  return { name: task, file, items, accNorm: false };
}
