/**
 * Zero-shot multiple-choice evaluation, scored as lm-evaluation-harness: each choice's continuation gets
 * Σ log p(tokens | context); acc = the right choice has the highest sum, acc_norm = highest sum per character of the
 * answer (ties go to the first choice, as numpy's argmax).
 */
import { DsaPruneError } from '../../errors.js';
import type { ProgressCallback } from '../../types.js';
import type { CausalLMLike } from '../forward.js';
import { encodePair, scoreSequences, type EncodeOptions, type ScoreOptions, type TaskTokenizer } from '../loglikelihood.js';
import { loadArc } from './arc.js';
import { loadBlimp } from './blimp.js';
import { loadBoolq } from './boolq.js';
import { loadCopa } from './copa.js';
import { taskDataDirs } from './files.js';
import { loadHellaswag } from './hellaswag.js';
import { loadPiqa } from './piqa.js';
import type { LoadOptions, McItem, TaskData, TaskResult, TextScorer } from './types.js';
import { loadWinogrande } from './winogrande.js';

export type { Choice, McItem, TaskData, TaskResult, TextScorer } from './types.js';

type Loader = (task: string, dirs: string[], options: LoadOptions & { file?: string }) => TaskData;

const LOADERS: Record<string, Loader> = {
  copa: loadCopa,
  piqa: loadPiqa,
  arc_easy: (t, d, o) => loadArc(t, 'Easy', d, o),
  arc_challenge: (t, d, o) => loadArc(t, 'Challenge', d, o),
  hellaswag: loadHellaswag,
  boolq: loadBoolq,
  winogrande: loadWinogrande,
};

/** Task names accepted by evaluateTasks (plus `blimp:<subset>` for any of BLiMP's 67 subsets). */
export const TASK_NAMES: readonly string[] = [...Object.keys(LOADERS), 'blimp:<subset>'];

/**
 * Load one task. `spec` is a name (`copa`, `blimp:anaphor_gender_agreement`), optionally with its own file:
 * `copa=/data/copa_val.jsonl`. Files are looked up in `dirs` (see taskDataDirs).
 */
export function loadTask(spec: string, dirs: string[], options: LoadOptions = {}): TaskData {
  const eq = spec.indexOf('=');
  const name = (eq >= 0 ? spec.slice(0, eq) : spec).trim();
  const file = eq >= 0 ? spec.slice(eq + 1).trim() : undefined;
  const opts = { ...options, file };
  if (name.startsWith('blimp:')) return loadBlimp(name, name.slice('blimp:'.length), dirs, opts);
  const loader = LOADERS[name];
  if (!loader) {
    throw new DsaPruneError(`unknown task "${name}"`, { hint: `known tasks: ${TASK_NAMES.join(', ')}` });
  }
  return loader(name, dirs, opts);
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/** acc / acc_norm of items given every choice's log-likelihood (`lls[i][c]`). */
export function accuracy(items: McItem[], lls: number[][], accNorm: boolean): TaskResult {
  let acc = 0;
  let norm = 0;
  items.forEach((item, i) => {
    const ll = lls[i]!;
    if (argmax(ll) === item.label) acc++;
    if (accNorm) {
      const lens = item.normLengths ?? item.choices.map((c) => c.continuation.length);
      if (argmax(ll.map((x, c) => x / Math.max(1, lens[c]!))) === item.label) norm++;
    }
  });
  const n = items.length;
  const r: TaskResult = { acc: n ? acc / n : NaN, n };
  if (accNorm) r.acc_norm = n ? norm / n : NaN;
  return r;
}

/** Score a loaded task with any text scorer (one call for all its choices). */
export async function scoreTask(task: TaskData, scorer: TextScorer): Promise<TaskResult> {
  const pairs = task.items.flatMap((item, g) => item.choices.map((c) => ({ ...c, group: g })));
  const flat = await scorer(pairs);
  if (flat.length !== pairs.length) throw new DsaPruneError(`task ${task.name}: the scorer returned ${flat.length} scores for ${pairs.length} choices`);
  const lls: number[][] = [];
  let k = 0;
  for (const item of task.items) {
    lls.push(flat.slice(k, k + item.choices.length));
    k += item.choices.length;
  }
  return accuracy(task.items, lls, task.accNorm);
}

/** A TextScorer on a model: lm-eval tokenization (encodePair) then scoreSequences (batched, KV prefix reuse). */
export function modelScorer(model: CausalLMLike, tokenizer: TaskTokenizer, options: ScoreOptions & EncodeOptions = {}): TextScorer {
  return async (pairs) => {
    const reqs = pairs.map((p) => ({ ...encodePair(tokenizer, p.context, p.continuation, options), group: p.group }));
    const res = await scoreSequences(model, reqs, options);
    return res.map((r) => r.logprob);
  };
}

/** Options of evaluateTasks(). */
export interface EvaluateTasksOptions extends EncodeOptions {
  /** First n items of each task. */
  limit?: number;
  /** Folder(s) with the task files (layout in docs/evaluation.md); default: the subsets shipped in the package's data/tasks. */
  dataDir?: string | readonly string[];
  /** Rows per forward (default: about 512 tokens per run). */
  batchSize?: number;
  /** Progress: phase "task:<name>", fraction of its choices scored. */
  onProgress?: ProgressCallback;
  signal?: AbortSignal;
}

/**
 * Evaluate `model` on zero-shot tasks. Returns `{ [task]: { acc, acc_norm?, n } }` in the order requested.
 *
 * ```ts
 * const r = await evaluateTasks(model, tokenizer, ['copa', 'blimp:anaphor_gender_agreement'], { limit: 200 });
 * // r.copa.acc, r['blimp:anaphor_gender_agreement'].acc
 * ```
 */
export async function evaluateTasks(
  model: CausalLMLike,
  tokenizer: TaskTokenizer,
  tasks: string[],
  options: EvaluateTasksOptions = {},
): Promise<Record<string, TaskResult>> {
  const dirs = taskDataDirs(options.dataDir);
  // Load every task first: a bad name or file fails before any compute.
  const loaded = tasks.map((t) => loadTask(t, dirs, { limit: options.limit }));
  const out: Record<string, TaskResult> = {};
  for (const task of loaded) {
    const scorer = modelScorer(model, tokenizer, {
      bos: options.bos,
      batchSize: options.batchSize,
      signal: options.signal,
      onProgress: options.onProgress && ((p) => options.onProgress!({ ...p, phase: `task:${task.name}` })),
    });
    out[task.name] = await scoreTask(task, scorer);
  }
  return out;
}
