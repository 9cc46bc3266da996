/**
 * The inputs of `dsa-prune report`: the manifest of a pruned folder (`pruning.json`, written by savePruned) and the
 * result of a search (`dsa-prune search --json`, or the file a search writes). Validation names the file and field.
 */
import { DsaPruneError, EXIT } from '../errors.js';

/** Task score as printed by `dsa-prune eval --json` (`acc`, optional `acc_norm`, number of items `n`). */
export interface TaskScore {
  acc: number;
  acc_norm?: number;
  n?: number;
}

/** Quality of one model: perplexity and/or zero-shot task scores. */
export interface QualityScores {
  ppl?: number;
  /** Perplexity file or data set name, shown in the table. */
  pplData?: string;
  /** Task name → score (an object as `eval --json` prints, or a bare accuracy). */
  tasks?: Record<string, TaskScore | number>;
}

/** `pruning.json` in a folder written by savePruned (fields beyond `method`, `sparsity`, `blockSparsity` optional). */
export interface PrunedManifest {
  tool?: string;
  version?: string;
  /** Source model folder or id. */
  model?: string;
  method: string;
  /** `unstructured` or `N:M`. */
  pattern?: string;
  /** Target global sparsity. */
  sparsity: number;
  /** Zeros / parameters over the pruned linears. */
  realizedSparsity?: number;
  budget?: string;
  allocator?: { name: string; expression?: unknown; description?: string; lambda?: number };
  /** Realised sparsity per decoder block. */
  blockSparsity: number[];
  /** What the allocator granted each block. */
  targetBlockSparsity?: number[];
  linears?: { name: string; block: number; role: string; sparsity: number; params?: number; target?: number }[];
  calibration?: { source?: string; sha256?: string; nsamples?: number; seqlen?: number; tokens?: number };
  quality?: { dense?: QualityScores; pruned?: QualityScores };
  /** Other allocations of the same model and budget to chart alongside (name → sparsity per block). */
  compare?: { uniform?: number[]; owl?: number[]; dsa?: number[]; [name: string]: number[] | undefined };
  /** Wall-clock seconds per phase. */
  seconds?: Record<string, number>;
  notes?: string[];
}

/** One evaluated candidate of a search. `fitness` is the search-split perplexity (lower is better); null if invalid. */
export interface SearchCandidate {
  evaluation: number;
  fitness: number | null;
  expression?: string;
  simplified?: string;
  lambda?: number;
  generation?: number;
}

/** The result of `dsa-prune search`. */
export interface SearchResult {
  best: {
    expression: string;
    simplified?: string;
    lambda?: number;
    blockSparsity?: number[];
    fitness: number;
    /** The best candidate re-applied with the faithful (sequential) prune: its search-split perplexity. */
    faithful?: { fitness: number; blockSparsity?: number[] };
  };
  history: SearchCandidate[];
  /** Random-search baseline with the same budget, when it was run. */
  random?: SearchCandidate[];
  evaluations: number;
  model?: string;
  method?: string;
  sparsity?: number;
  mode?: string;
  seed?: number;
  seconds?: number | Record<string, number>;
  /** Other allocations to chart next to the best one (name → sparsity per block). */
  compare?: Record<string, number[] | undefined>;
  /** Fitness of the baselines on the same search split (e.g. { uniform: 178.0, owl: 170.9 }). */
  baselines?: Record<string, number>;
  /** Throughput of the search. */
  evalsPerMinute?: number;
  /** Parallel settings ({ workers, threads, population }). */
  settings?: Record<string, number>;
}

/** What `renderReport` draws. */
export type ReportInput = { kind: 'pruned'; manifest: PrunedManifest } | { kind: 'search'; result: SearchResult };

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bad(file: string, message: string, hint?: string): DsaPruneError {
  return new DsaPruneError(`${file}: ${message}`, {
    hint: hint ?? 'pass the pruning.json of a folder written by savePruned / `dsa-prune prune`, or the JSON of `dsa-prune search`',
    exitCode: EXIT.badInput,
  });
}

function numberArray(file: string, obj: Json, field: string, path: string, required: boolean): number[] | undefined {
  const v = obj[field];
  if (v === undefined) {
    if (required) throw bad(file, `missing field "${path}" (an array of numbers, one per block)`);
    return undefined;
  }
  if (!Array.isArray(v)) throw bad(file, `field "${path}" must be an array of numbers, got ${typeof v}`);
  // JSON has no NaN: a null stands for a non-finite value (the DSA function can be NaN on a block).
  return v.map((x, i) => {
    if (x === null) return Number.NaN;
    if (typeof x !== 'number') throw bad(file, `field "${path}[${i}]" must be a number, got ${JSON.stringify(x)}`);
    return x;
  });
}

function num(file: string, obj: Json, field: string, path: string, required: boolean): number | undefined {
  const v = obj[field];
  if (v === undefined || (v === null && !required)) {
    if (required) throw bad(file, `missing field "${path}" (a number)`);
    return undefined;
  }
  if (typeof v !== 'number') throw bad(file, `field "${path}" must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function str(file: string, obj: Json, field: string, path: string, required: boolean): string | undefined {
  const v = obj[field];
  if (v === undefined) {
    if (required) throw bad(file, `missing field "${path}" (a string)`);
    return undefined;
  }
  if (typeof v !== 'string') throw bad(file, `field "${path}" must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function compareMap(file: string, obj: Json, field: string): Record<string, number[]> | undefined {
  const v = obj[field];
  if (v === undefined) return undefined;
  if (!isObject(v)) throw bad(file, `field "${field}" must be an object of name → per-block sparsity arrays`);
  const out: Record<string, number[]> = {};
  for (const key of Object.keys(v)) {
    const arr = numberArray(file, v, key, `${field}.${key}`, false);
    if (arr) out[key] = arr;
  }
  return out;
}

/** Validate quality scores (`dsa-prune eval --json` output or the `quality.dense` / `quality.pruned` of a manifest). */
export function validateQuality(file: string, v: unknown, path: string): QualityScores | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw bad(file, `field "${path}" must be an object like { "ppl": 5.8, "tasks": { … } }`);
  const q: QualityScores = {};
  const ppl = num(file, v, 'ppl', `${path}.ppl`, false);
  if (ppl !== undefined) q.ppl = ppl;
  const pplData = str(file, v, 'pplData', `${path}.pplData`, false);
  if (pplData !== undefined) q.pplData = pplData;
  if (v.tasks !== undefined) {
    if (!isObject(v.tasks)) throw bad(file, `field "${path}.tasks" must be an object of task name → score`);
    const tasks: Record<string, TaskScore | number> = {};
    for (const [name, t] of Object.entries(v.tasks)) {
      if (typeof t === 'number') tasks[name] = t;
      else if (isObject(t)) {
        const acc = num(file, t, 'acc', `${path}.tasks.${name}.acc`, true) as number;
        const score: TaskScore = { acc };
        const an = num(file, t, 'acc_norm', `${path}.tasks.${name}.acc_norm`, false);
        if (an !== undefined) score.acc_norm = an;
        const n = num(file, t, 'n', `${path}.tasks.${name}.n`, false);
        if (n !== undefined) score.n = n;
        tasks[name] = score;
      } else throw bad(file, `field "${path}.tasks.${name}" must be a number or { "acc", "acc_norm"?, "n"? }`);
    }
    q.tasks = tasks;
  }
  return q;
}

function secondsMap(file: string, v: unknown, path: string): Record<string, number> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw bad(file, `field "${path}" must be an object of phase → seconds`);
  const out: Record<string, number> = {};
  for (const [k, x] of Object.entries(v)) if (typeof x === 'number') out[k] = x;
  return out;
}

/** Validate a parsed `pruning.json`; `file` is used in the messages. */
export function validatePrunedManifest(data: unknown, file: string): PrunedManifest {
  if (!isObject(data)) throw bad(file, 'expected a JSON object');
  const m: PrunedManifest = {
    method: str(file, data, 'method', 'method', true) as string,
    sparsity: num(file, data, 'sparsity', 'sparsity', true) as number,
    blockSparsity: numberArray(file, data, 'blockSparsity', 'blockSparsity', true) as number[],
  };
  for (const k of ['tool', 'version', 'model', 'pattern', 'budget'] as const) {
    const v = data[k];
    if (v !== undefined && v !== null) m[k] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  const rs = num(file, data, 'realizedSparsity', 'realizedSparsity', false);
  if (rs !== undefined) m.realizedSparsity = rs;
  const t = numberArray(file, data, 'targetBlockSparsity', 'targetBlockSparsity', false);
  if (t) m.targetBlockSparsity = t;
  if (data.allocator !== undefined && data.allocator !== null) {
    const a = data.allocator;
    if (typeof a === 'string') m.allocator = { name: a };
    else if (isObject(a)) {
      m.allocator = { name: str(file, a, 'name', 'allocator.name', true) as string };
      if (a.expression !== undefined) m.allocator.expression = a.expression;
      if (typeof a.description === 'string') m.allocator.description = a.description;
      if (typeof a.lambda === 'number') m.allocator.lambda = a.lambda;
    } else throw bad(file, 'field "allocator" must be an object { "name", "expression"? }');
  }
  if (data.linears !== undefined) {
    if (!Array.isArray(data.linears)) throw bad(file, 'field "linears" must be an array');
    m.linears = data.linears.map((l, i) => {
      if (!isObject(l)) throw bad(file, `field "linears[${i}]" must be an object`);
      const out: NonNullable<PrunedManifest['linears']>[number] = {
        name: str(file, l, 'name', `linears[${i}].name`, true) as string,
        block: num(file, l, 'block', `linears[${i}].block`, true) as number,
        role: (str(file, l, 'role', `linears[${i}].role`, false) ?? 'other'),
        sparsity: num(file, l, 'sparsity', `linears[${i}].sparsity`, true) as number,
      };
      const p = num(file, l, 'params', `linears[${i}].params`, false);
      if (p !== undefined) out.params = p;
      const tg = num(file, l, 'target', `linears[${i}].target`, false);
      if (tg !== undefined) out.target = tg;
      return out;
    });
  }
  if (data.calibration !== undefined && data.calibration !== null) {
    if (!isObject(data.calibration)) throw bad(file, 'field "calibration" must be an object');
    const cal = data.calibration;
    m.calibration = {};
    const src = cal.source;
    if (src !== undefined) m.calibration.source = typeof src === 'string' ? src : JSON.stringify(src);
    const sha = str(file, cal, 'sha256', 'calibration.sha256', false);
    if (sha !== undefined) m.calibration.sha256 = sha;
    for (const k of ['nsamples', 'seqlen', 'tokens'] as const) {
      const v = num(file, cal, k, `calibration.${k}`, false);
      if (v !== undefined) m.calibration[k] = v;
    }
  }
  if (data.quality !== undefined && data.quality !== null) {
    if (!isObject(data.quality)) throw bad(file, 'field "quality" must be an object { "dense"?, "pruned"? }');
    const dense = validateQuality(file, data.quality.dense, 'quality.dense');
    const pruned = validateQuality(file, data.quality.pruned, 'quality.pruned');
    m.quality = {};
    if (dense) m.quality.dense = dense;
    if (pruned) m.quality.pruned = pruned;
  }
  const cmp = compareMap(file, data, 'compare');
  if (cmp) m.compare = cmp;
  const secs = secondsMap(file, data.seconds, 'seconds');
  if (secs) m.seconds = secs;
  if (Array.isArray(data.notes)) m.notes = data.notes.filter((x): x is string => typeof x === 'string');
  return m;
}

function candidates(file: string, v: unknown, field: string): SearchCandidate[] {
  if (!Array.isArray(v)) throw bad(file, `field "${field}" must be an array of { "evaluation", "fitness", … }`);
  return v.map((h, i) => {
    if (!isObject(h)) throw bad(file, `field "${field}[${i}]" must be an object`);
    const fit = h.fitness;
    if (fit !== null && typeof fit !== 'number') {
      if (fit === undefined) throw bad(file, `missing field "${field}[${i}].fitness" (a number, or null for an invalid candidate)`);
      throw bad(file, `field "${field}[${i}].fitness" must be a number or null, got ${JSON.stringify(fit)}`);
    }
    const c: SearchCandidate = {
      evaluation: num(file, h, 'evaluation', `${field}[${i}].evaluation`, false) ?? i,
      fitness: fit,
    };
    const e = h.expression;
    if (typeof e === 'string') c.expression = e;
    if (typeof h.simplified === 'string') c.simplified = h.simplified;
    if (typeof h.lambda === 'number') c.lambda = h.lambda;
    if (typeof h.generation === 'number') c.generation = h.generation;
    return c;
  });
}

/** Validate a parsed search result; `file` is used in the messages. */
export function validateSearchResult(data: unknown, file: string): SearchResult {
  if (!isObject(data)) throw bad(file, 'expected a JSON object');
  const b = data.best;
  if (b === undefined) throw bad(file, 'missing field "best" (the best candidate: { "expression", "fitness", … })');
  if (!isObject(b)) throw bad(file, 'field "best" must be an object');
  const best: SearchResult['best'] = {
    expression: str(file, b, 'expression', 'best.expression', true) as string,
    fitness: num(file, b, 'fitness', 'best.fitness', true) as number,
  };
  const simp = str(file, b, 'simplified', 'best.simplified', false);
  if (simp !== undefined) best.simplified = simp;
  const lam = num(file, b, 'lambda', 'best.lambda', false);
  if (lam !== undefined) best.lambda = lam;
  const bs = numberArray(file, b, 'blockSparsity', 'best.blockSparsity', false);
  if (bs) best.blockSparsity = bs;
  if (isObject(b.faithful)) {
    const ff = num(file, b.faithful, 'fitness', 'best.faithful.fitness', true) as number;
    best.faithful = { fitness: ff };
    const fbs = numberArray(file, b.faithful, 'blockSparsity', 'best.faithful.blockSparsity', false);
    if (fbs) best.faithful.blockSparsity = fbs;
  }
  if (data.history === undefined) throw bad(file, 'missing field "history" (every evaluated candidate)');
  const r: SearchResult = {
    best,
    history: candidates(file, data.history, 'history'),
    evaluations: 0,
  };
  r.evaluations = num(file, data, 'evaluations', 'evaluations', false) ?? r.history.length;
  if (data.random !== undefined && data.random !== null) r.random = candidates(file, data.random, 'random');
  for (const k of ['model', 'method', 'mode'] as const) {
    const v = str(file, data, k, k, false);
    if (v !== undefined) r[k] = v;
  }
  const sp = num(file, data, 'sparsity', 'sparsity', false);
  if (sp !== undefined) r.sparsity = sp;
  const seed = num(file, data, 'seed', 'seed', false);
  if (seed !== undefined) r.seed = seed;
  if (typeof data.seconds === 'number') r.seconds = data.seconds;
  else {
    const s = secondsMap(file, data.seconds, 'seconds');
    if (s) r.seconds = s;
  }
  const cmp = compareMap(file, data, 'compare');
  if (cmp) r.compare = cmp;
  const epm = num(file, data, 'evalsPerMinute', 'evalsPerMinute', false);
  if (epm !== undefined) r.evalsPerMinute = epm;
  if (isObject(data.settings)) {
    const st: Record<string, number> = {};
    for (const [k, v] of Object.entries(data.settings)) if (typeof v === 'number') st[k] = v;
    r.settings = st;
  }
  if (isObject(data.baselines)) {
    const bl: Record<string, number> = {};
    for (const [k, v] of Object.entries(data.baselines)) if (typeof v === 'number') bl[k] = v;
    r.baselines = bl;
  }
  return r;
}

/** Decide what a parsed JSON file is (search result if it has `best` + `history`, else a pruning manifest). */
export function parseReportInput(data: unknown, file: string): ReportInput {
  if (isObject(data) && ('best' in data || 'history' in data)) return { kind: 'search', result: validateSearchResult(data, file) };
  return { kind: 'pruned', manifest: validatePrunedManifest(data, file) };
}
