/**
 * ARC-Easy / ARC-Challenge (AI2 jsonl: question.stem, question.choices[{text,label}], answerKey).
 * Prompt "Question: <stem>\nAnswer:" + " <choice>"; acc and acc_norm. Test split by default, as lm-eval.
 */
import { badLine, findTaskFile, parseJsonl, readTaskText, str } from './files.js';
import type { LoadOptions, McItem, TaskData } from './types.js';

export function loadArc(task: string, level: 'Easy' | 'Challenge', dirs: string[], options: LoadOptions & { file?: string } = {}): TaskData {
  const file = options.file ?? findTaskFile(task, dirs, [`arc/ARC-${level}-Test.jsonl`, `ARC-${level}-Test.jsonl`]);
  const items: McItem[] = parseJsonl(task, file, readTaskText(task, file), options.limit).map(({ line, rec }) => {
    const q = rec.question as { stem?: unknown; choices?: unknown } | undefined;
    if (!q || typeof q.stem !== 'string' || !Array.isArray(q.choices) || q.choices.length < 2) {
      throw badLine(task, file, line, 'expected question.stem (string) and question.choices (array of {text, label})');
    }
    const choices = q.choices as { text?: unknown; label?: unknown }[];
    if (choices.some((c) => typeof c.text !== 'string' || typeof c.label !== 'string')) {
      throw badLine(task, file, line, 'every question.choices entry needs string "text" and "label"');
    }
    const key = str(task, file, line, rec, 'answerKey');
    const label = choices.findIndex((c) => c.label === key);
    if (label < 0) throw badLine(task, file, line, `answerKey "${key}" is not one of the choice labels`);
    const context = `Question: ${q.stem}\nAnswer:`;
    const texts = choices.map((c) => c.text as string);
    return { choices: texts.map((t) => ({ context, continuation: ` ${t}` })), label, normLengths: texts.map((t) => t.length) };
  });
  return { name: task, file, items, accNorm: true };
}
