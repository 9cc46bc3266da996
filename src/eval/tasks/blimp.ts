/**
 * BLiMP minimal pairs (67 subsets): the good sentence must get the higher total log-probability (acc).
 * Data: `blimp.zip` (the upstream archive, `data/<subset>.jsonl` inside; read with fflate) or `blimp/<subset>.jsonl`.
 */
import { unzipSync } from 'fflate';
import { readFileSync } from 'node:fs';
import { DsaPruneError } from '../../errors.js';
import { findTaskFile, parseJsonl, readTaskText, str } from './files.js';
import type { LoadOptions, McItem, TaskData } from './types.js';

function subsetText(task: string, file: string, subset: string): string {
  if (!file.endsWith('.zip')) return readTaskText(task, file);
  const want = (n: string) => n === `data/${subset}.jsonl` || n === `${subset}.jsonl` || n.endsWith(`/${subset}.jsonl`);
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(readFileSync(file), { filter: (f) => want(f.name) });
  } catch (e) {
    throw new DsaPruneError(`task ${task}: ${file} is not a readable zip archive (${(e as Error).message})`, { cause: e });
  }
  const name = Object.keys(files)[0];
  if (!name) {
    throw new DsaPruneError(`task ${task}: ${file} has no subset "${subset}" (expected data/${subset}.jsonl inside)`, {
      hint: 'subset names are the BLiMP UIDs, e.g. blimp:anaphor_gender_agreement; list them with `unzip -l blimp.zip`',
    });
  }
  return new TextDecoder().decode(files[name]!);
}

/** The subset names (UIDs) inside a BLiMP zip archive, sorted. */
export function blimpSubsets(zipFile: string): string[] {
  const names: string[] = [];
  unzipSync(readFileSync(zipFile), {
    filter: (f) => {
      const m = /(?:^|\/)([A-Za-z0-9_]+)\.jsonl$/.exec(f.name);
      if (m) names.push(m[1]!);
      return false;
    },
  });
  return names.sort();
}

export function loadBlimp(task: string, subset: string, dirs: string[], options: LoadOptions & { file?: string } = {}): TaskData {
  if (!/^[A-Za-z0-9_]+$/.test(subset)) throw new DsaPruneError(`task ${task}: "${subset}" is not a BLiMP subset name`);
  const file = options.file ?? findTaskFile(task, dirs, ['blimp.zip', `blimp/${subset}.jsonl`, `blimp/data/${subset}.jsonl`]);
  const recs = parseJsonl(task, file, subsetText(task, file, subset), options.limit);
  const items: McItem[] = recs.map(({ line, rec }) => ({
    choices: [
      { context: '', continuation: str(task, file, line, rec, 'sentence_good') },
      { context: '', continuation: str(task, file, line, rec, 'sentence_bad') },
    ],
    label: 0,
  }));
  return { name: task, file, items, accNorm: false };
}
