/**
 * WinoGrande, partial scoring as lm-eval: the context is the sentence up to the blank with the option filled in, the
 * continuation is the rest of the sentence after the blank (the same for both options); acc.
 * Formats: the official jsonl (sentence, option1, option2, answer "1"|"2") or the LLM-Adapters JSON list
 * (instruction "...sentence: <s>\n\nOption1: <a> Option2: <b> Answer format: ...", answer "option1"|"option2").
 */
import { badLine, findTaskFile, parseJsonl, readTaskText, str } from './files.js';
import type { LoadOptions, McItem, TaskData } from './types.js';

interface Wino {
  sentence: string;
  options: [string, string];
  label: number;
}

/** Build the two partial-scoring choices of a WinoGrande sentence (exported for tests). */
export function winograndeItem(w: Wino): McItem | undefined {
  const idx = w.sentence.indexOf('_');
  if (idx < 0) return undefined;
  const continuation = ` ${w.sentence.slice(idx + 1).trim()}`;
  return { choices: w.options.map((o) => ({ context: w.sentence.slice(0, idx) + o, continuation })), label: w.label };
}

const ADAPTER_RE = /sentence:\s*([\s\S]*?)\n\s*\n\s*Option1:\s*([\s\S]*?)\s+Option2:\s*([\s\S]*?)\s+Answer format:/;

export function loadWinogrande(task: string, dirs: string[], options: LoadOptions & { file?: string } = {}): TaskData {
  const file = options.file ?? findTaskFile(task, dirs, ['llm_adapters/winogrande.test.json', 'winogrande/dev.jsonl']);
  const text = readTaskText(task, file);
  const raw: { line: number; w: Wino }[] = [];
  if (text.trimStart().startsWith('[')) {
    let arr: unknown;
    try {
      arr = JSON.parse(text);
    } catch (e) {
      throw badLine(task, file, 1, `invalid JSON (${(e as Error).message})`);
    }
    // Line numbers of each record's start, for errors.
    const starts: number[] = [];
    text.split('\n').forEach((l, i) => {
      if (/"instruction"\s*:/.test(l)) starts.push(i + 1);
    });
    (arr as Record<string, unknown>[]).forEach((rec, i) => {
      const line = starts[i] ?? 1;
      const m = ADAPTER_RE.exec(typeof rec.instruction === 'string' ? rec.instruction : '');
      const ans = rec.answer;
      if (!m || (ans !== 'option1' && ans !== 'option2')) {
        throw badLine(task, file, line, 'expected "instruction" with "sentence: … Option1: … Option2: … Answer format:" and "answer" option1|option2');
      }
      raw.push({ line, w: { sentence: m[1]!.trim(), options: [m[2]!.trim(), m[3]!.trim()], label: ans === 'option1' ? 0 : 1 } });
    });
  } else {
    for (const { line, rec } of parseJsonl(task, file, text)) {
      const ans = String(rec.answer);
      if (ans !== '1' && ans !== '2') throw badLine(task, file, line, 'field "answer" must be "1" or "2"');
      raw.push({
        line,
        w: {
          sentence: str(task, file, line, rec, 'sentence'),
          options: [str(task, file, line, rec, 'option1'), str(task, file, line, rec, 'option2')],
          label: Number(ans) - 1,
        },
      });
    }
  }
  const items: McItem[] = [];
  for (const { line, w } of raw) {
    if (options.limit !== undefined && items.length >= options.limit) break;
    const item = winograndeItem(w);
    if (!item) throw badLine(task, file, line, 'the sentence has no "_" blank');
    items.push(item);
  }
  return { name: task, file, items, accNorm: false };
}
