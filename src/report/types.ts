/**
 * The inputs of `dsa-prune report`: the manifest of a pruned folder (`pruning.json`, written by savePruned) and the
 * result of a search (`dsa-prune search --json`, or the file a search writes). Declared once as valibot schemas
 * (src/data/schema.ts); a bad file fails with a DsaPruneError (code `invalid-data`) naming the file and field path.
 */
import { compact, lenient, obj, plainObject, num, numbers, numericEntries, opt, parseSchema, str, v } from '../data/schema.js';

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
  /** `--method structured`: what was removed (src/prune-common.ts StructuredReport; `bytes` is added by savePruned). */
  structured?: StructuredManifest;
}

/** pruning.json `structured`, as the report reads it (the kept channel / group indices are not read). */
export interface StructuredManifest {
  target?: string[];
  score?: string;
  mode?: string;
  biasCompensation?: boolean;
  blocks?: {
    block: number; ffnBefore?: number; ffnAfter?: number;
    headsBefore?: number; headsAfter?: number; kvHeadsBefore?: number; kvHeadsAfter?: number;
  }[];
  /** Float parameters of the whole graph before / after. */
  params?: { before: number; after: number };
  /** Bytes of the ONNX file (with its external data) of the source and of the saved model. */
  bytes?: { before: number; after: number };
  /** target depth: removed sub-layers as `block.kind` (`"3.attention"`, `"7.mlp"`). */
  depth?: { score?: string; unit?: string; removed: string[] };
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
  /** `block` (default) or `linear`: the granularity the expression was searched at. */
  granularity?: 'block' | 'linear';
}

/** What `renderReport` draws. */
export type ReportInput = { kind: 'pruned'; manifest: PrunedManifest } | { kind: 'search'; result: SearchResult };

const HINT = 'pass the pruning.json of a folder written by savePruned / `dsa-prune prune`, or the JSON of `dsa-prune search`';

/** Any JSON value except null, kept as text (older manifests wrote some of these as objects). */
const textish = v.pipe(v.optional(v.unknown()), v.transform((x): string | undefined => (x === undefined || x === null ? undefined : typeof x === 'string' ? x : JSON.stringify(x))));

/** name → per-block sparsity arrays (`compare` of a manifest or a search result). */
const COMPARE = 'an object of name → per-block sparsity arrays';
const compareSchema = v.optional(v.pipe(plainObject(COMPARE), v.record(v.string(), v.optional(numbers()), COMPARE)));

const taskScore = v.union(
  [num(), obj({ acc: num(), acc_norm: opt(num()), n: opt(num()) }, 'an object { "acc", "acc_norm"?, "n"? }')],
  'a number or { "acc", "acc_norm"?, "n"? }',
);

/** Quality scores: `dsa-prune eval --json` output, or `quality.dense` / `quality.pruned` of a manifest. */
export const qualitySchema = opt(
  obj(
    {
      ppl: opt(num()),
      pplData: opt(str()),
      tasks: v.optional(v.pipe(plainObject('an object of task name → score'), v.record(v.string(), taskScore, 'an object of task name → score'))),
    },
    'an object like { "ppl": 5.8, "tasks": { … } }',
  ),
);

const seconds = opt(numericEntries('an object of phase → seconds'));

const linear = obj(
  {
    name: str(),
    block: num(),
    role: v.pipe(opt(str()), v.transform((x) => x ?? 'other')),
    sparsity: num(),
    params: opt(num()),
    target: opt(num()),
  },
  'an object { "name", "block", "sparsity", … }',
);

const beforeAfter = opt(obj({ before: num(), after: num() }, 'an object { "before", "after" }'));

const structuredSchema = opt(
  obj(
    {
      target: v.optional(v.pipe(v.union([str(), v.array(str())], 'a target name or a list of them'), v.transform((x) => (Array.isArray(x) ? x : [x])))),
      score: textish, mode: textish,
      biasCompensation: lenient(v.boolean()),
      blocks: v.optional(v.array(obj(
        {
          block: num(), ffnBefore: opt(num()), ffnAfter: opt(num()),
          headsBefore: opt(num()), headsAfter: opt(num()), kvHeadsBefore: opt(num()), kvHeadsAfter: opt(num()),
        },
        'an object { "block", "ffnBefore"?, "ffnAfter"?, … }',
      ), 'an array, one object per block')),
      params: beforeAfter,
      bytes: beforeAfter,
      depth: opt(obj({ score: textish, unit: textish, removed: v.array(str(), 'an array of "block.kind" names') }, 'an object { "removed", … }')),
    },
    'an object { "target", "blocks", "params", … }',
  ),
);

/** `pruning.json`. Fields beyond `method`, `sparsity` and `blockSparsity` are optional. */
export const prunedManifestSchema = obj(
  {
    method: str(),
    sparsity: num(),
    blockSparsity: numbers(),
    tool: textish, version: textish, model: textish, pattern: textish, budget: textish,
    realizedSparsity: opt(num()),
    targetBlockSparsity: v.optional(numbers()),
    allocator: opt(
      v.union(
        [
          v.pipe(str(), v.transform((name) => ({ name }))),
          obj({ name: str(), expression: v.optional(v.unknown()), description: lenient(v.string()), lambda: lenient(v.number()) }, 'an object'),
        ],
        'an object { "name", "expression"? }',
      ),
    ),
    linears: v.optional(v.array(linear, 'an array')),
    calibration: opt(
      obj(
        { source: textish, sha256: opt(str()), nsamples: opt(num()), seqlen: opt(num()), tokens: opt(num()) },
        'an object',
      ),
    ),
    quality: opt(obj({ dense: qualitySchema, pruned: qualitySchema }, 'an object { "dense"?, "pruned"? }')),
    compare: compareSchema,
    seconds,
    notes: lenient(v.pipe(v.array(v.unknown()), v.transform((a) => a.filter((x): x is string => typeof x === 'string')))),
    structured: structuredSchema,
  },
  'a JSON object',
);

const candidate = obj(
  {
    evaluation: opt(num()),
    fitness: v.nullable(num('a number, or null for an invalid candidate')),
    expression: lenient(v.string()),
    simplified: lenient(v.string()),
    lambda: lenient(v.number()),
    generation: lenient(v.number()),
  },
  'an object',
);
const granularity = opt(v.picklist(['block', 'linear'], '"block" or "linear"'));

/** Candidates in evaluation order; `evaluation` defaults to the index. */
const candidates = v.pipe(
  v.array(candidate, 'an array of every evaluated candidate { "evaluation", "fitness", … }'),
  v.transform((a): SearchCandidate[] => a.map((c, i) => ({ ...c, evaluation: c.evaluation ?? i, fitness: c.fitness as number | null }))),
);

/** The result of `dsa-prune search` (`--json`, `--out`), as `dsa-prune report` and `--allocator @search.json` read it. */
export const searchResultSchema = v.pipe(
  obj(
    {
      best: obj(
        {
          expression: str(),
          fitness: num(),
          simplified: opt(str()),
          lambda: opt(num()),
          blockSparsity: v.optional(numbers()),
          faithful: lenient(obj({ fitness: num(), blockSparsity: v.optional(numbers()) }, 'an object')),
        },
        'the best candidate: { "expression", "fitness", … }',
      ),
      history: candidates,
      random: opt(candidates),
      evaluations: opt(num()),
      model: opt(str()), method: opt(str()), mode: opt(str()),
      sparsity: opt(num()),
      seed: opt(num()),
      seconds: opt(v.union([v.number(), numericEntries('')], 'a number or an object of phase → seconds')),
      compare: compareSchema,
      evalsPerMinute: opt(num()),
      settings: lenient(numericEntries('')),
      baselines: lenient(numericEntries('')),
      granularity: granularity,
    },
    'a JSON object',
  ),
  v.transform((r) => ({ ...r, evaluations: r.evaluations ?? r.history.length })),
);

/**
 * What `--allocator @search.json` reads of a DSA search result: the best expression, its λ and the granularity it was
 * searched at (the rest of the file is the search's record, not needed to re-apply the function).
 */
export const searchAllocationSchema = obj(
  {
    best: obj({ expression: str('a DSA expression'), lambda: opt(num()) }, 'the best candidate: { "expression", "lambda"?, … }'),
    granularity,
  },
  'a JSON object',
);

/** Validate the allocation part of a search result (`--allocator @file`); `file` is used in the messages. */
export function validateSearchAllocation(data: unknown, file: string): { best: { expression: string; lambda?: number }; granularity?: 'block' | 'linear' } {
  return compact(parseSchema(searchAllocationSchema, data, { file, hint: 'pass the JSON written by `dsa-prune search --out`' }));
}

/** Validate quality scores; `file` and `path` are used in the messages. */
export function validateQuality(file: string, data: unknown, path: string): QualityScores | undefined {
  const q = parseSchema(qualitySchema, data, { file, hint: HINT, at: path });
  return q ? (compact(q) as QualityScores) : undefined;
}

/** Validate a parsed `pruning.json`; `file` is used in the messages. */
export function validatePrunedManifest(data: unknown, file: string): PrunedManifest {
  return compact(parseSchema(prunedManifestSchema, data, { file, hint: HINT })) as PrunedManifest;
}

/** Validate a parsed search result; `file` is used in the messages. */
export function validateSearchResult(data: unknown, file: string): SearchResult {
  return compact(parseSchema(searchResultSchema, data, { file, hint: HINT })) as SearchResult;
}

/** Decide what a parsed JSON file is (search result if it has `best` + `history`, else a pruning manifest). */
export function parseReportInput(data: unknown, file: string): ReportInput {
  const isObject = typeof data === 'object' && data !== null && !Array.isArray(data);
  if (isObject && ('best' in data || 'history' in data)) return { kind: 'search', result: validateSearchResult(data, file) };
  return { kind: 'pruned', manifest: validatePrunedManifest(data, file) };
}
