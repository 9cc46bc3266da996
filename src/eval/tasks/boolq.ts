/**
 * BoolQ (SuperGLUE jsonl: passage, question, label true|false).
 * Prompt "<passage>\nQuestion: <question>?\nAnswer:" + " no" | " yes"; acc.
 */
import { badLine, findTaskFile, parseJsonl, readTaskText, str } from './files.js';
import type { LoadOptions, McItem, TaskData } from './types.js';

export function loadBoolq(task: string, dirs: string[], options: LoadOptions & { file?: string } = {}): TaskData {
  const file = options.file ?? findTaskFile(task, dirs, ['superglue/BoolQ/val.jsonl', 'BoolQ/val.jsonl', 'boolq/val.jsonl']);
  const items: McItem[] = parseJsonl(task, file, readTaskText(task, file), options.limit).map(({ line, rec }) => {
    const l = rec.label ?? rec.answer;
    const label = l === true || l === 'true' || l === 1 ? 1 : l === false || l === 'false' || l === 0 ? 0 : -1;
    if (label < 0) throw badLine(task, file, line, 'field "label" must be true or false');
    const context = `${str(task, file, line, rec, 'passage')}\nQuestion: ${str(task, file, line, rec, 'question')}?\nAnswer:`;
    return { choices: [' no', ' yes'].map((c) => ({ context, continuation: c })), label };
  });
  return { name: task, file, items, accNorm: false };
}
