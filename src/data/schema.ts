/**
 * The one way a JSON format is checked: a valibot schema, declared next to the format's owner (`pruning.json` and
 * search results in report/types.ts, levels results in search/levels.ts, queue payloads in search/distributed/
 * protocol.ts), and one error text built from the first issue: which field path, what was expected, what was there.
 *
 * Conventions of the schemas that use this module: every schema that can fail carries its expectation as its message
 * ("a number", "an array of numbers, one per block"), so a missing field and a wrong one read
 * `missing field "linears[2].block" (a number)` / `field "sparsity" must be a number, got "0.5"`.
 */
import * as v from 'valibot';
import { DsaPruneError, type DsaPruneErrorCode } from '../errors.js';

export { v };

/** The first thing wrong with a value, for a message. */
export interface SchemaProblem {
  /** `a.b[2].c`; empty for the value itself. */
  path: string;
  /** The field is absent. */
  missing: boolean;
  /** The field is not allowed (a strict object). */
  unexpected: boolean;
  /** What the schema expects there ("a number"). */
  expected: string;
  /** The value found, as short JSON. */
  got: string;
  /** One sentence: `missing field "x" (a number)`, `field "x" must be a number, got "0.5"`, `unexpected field "x"`. */
  text: string;
}

type AnySchema = v.GenericSchema | v.GenericSchemaAsync;
type Issue = v.BaseIssue<unknown>;
type PathItem = NonNullable<Issue['path']>[number];

function pathText(items: readonly PathItem[]): string {
  let out = '';
  for (const it of items) {
    const k = it.key as unknown;
    out += typeof k === 'number' ? `[${k}]` : out === '' ? String(k) : `.${String(k)}`;
  }
  return out;
}

function short(x: unknown): string {
  let s: string;
  try {
    s = x === undefined ? 'undefined' : typeof x === 'number' && !Number.isFinite(x) ? String(x) : JSON.stringify(x) ?? typeof x;
  } catch {
    s = typeof x;
  }
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

/** The schema's own message, through the wrappers (optional, nullable, pipe) that carry none. */
function messageOf(schema: unknown): string | undefined {
  let s = schema as { message?: unknown; wrapped?: unknown } | undefined;
  for (let i = 0; s && i < 8; i++) {
    if (typeof s.message === 'string') return s.message;
    s = s.wrapped as typeof s;
  }
  return undefined;
}

type Node = Record<string, unknown>;

/** The schema under `key` of a container schema, looking through wrappers, pipes and union options. */
function child(s: Node | undefined, key: unknown, depth = 0): Node | undefined {
  if (!s || depth > 8) return undefined;
  if (s.entries) {
    const e = (s.entries as Record<string, Node>)[String(key)];
    if (e) return e;
  } else if (s.item) return s.item as Node;
  else if (s.value && s.type === 'record') return s.value as Node;
  const inner = [s.wrapped, ...((s.pipe as unknown[] | undefined) ?? []), ...((s.options as unknown[] | undefined) ?? [])];
  for (const x of inner) {
    const found = x && typeof x === 'object' && (x as Node).kind === 'schema' ? child(x as Node, key, depth + 1) : undefined;
    if (found) return found;
  }
  return undefined;
}

/** The schema of the field a path names. */
function schemaAt(root: unknown, items: readonly PathItem[]): unknown {
  let s = root as Node | undefined;
  for (const it of items) s = child(s, it.key);
  return s;
}

/** The most precise issue: inside a union, the option whose issue goes deepest into the value. */
function deepest(issue: Issue): { issue: Issue; path: PathItem[] } {
  const base = [...(issue.path ?? [])];
  if (issue.type !== 'union' || !issue.issues?.length) return { issue, path: base };
  let best: { issue: Issue; path: PathItem[] } = { issue, path: base };
  for (const sub of issue.issues) {
    const d = deepest(sub);
    if (d.path.length > 0 && base.length + d.path.length > best.path.length) best = { issue: d.issue, path: [...base, ...d.path] };
  }
  return best;
}

function describe(root: AnySchema, first: Issue, at = ''): SchemaProblem {
  const { issue, path: items } = deepest(first);
  const rel = pathText(items);
  const path = at && rel ? (rel.startsWith('[') ? `${at}${rel}` : `${at}.${rel}`) : at || rel;
  const unexpected = issue.expected === 'never';
  const missing = !unexpected && issue.received === 'undefined';
  const expected = (missing ? messageOf(schemaAt(root, items)) : undefined) ?? issue.message;
  const got = short(issue.input);
  const text = unexpected
    ? `unexpected field "${path}"`
    : rel === '' && at === ''
      ? `expected ${expected}, got ${got}`
      : missing
        ? `missing field "${path}" (${expected})`
        : `field "${path}" must be ${expected}, got ${got}`;
  return { path, missing, unexpected, expected, got, text };
}

/** Check `data` against `schema`: the typed output, or the first problem. */
export function checkSchema<S extends v.GenericSchema>(
  schema: S,
  data: unknown,
  at = '',
): { ok: true; value: v.InferOutput<S> } | { ok: false; problem: SchemaProblem } {
  const r = v.safeParse(schema, data, { abortEarly: true });
  if (r.success) return { ok: true, value: r.output };
  return { ok: false, problem: describe(schema, r.issues[0] as Issue, at) };
}

/**
 * Parse a JSON file's content: the typed output, or a DsaPruneError `<file>: <problem>` with the hint and the code
 * (default `invalid-data`: a data file is malformed). `at` is the path of `data` inside the file, if it is a part.
 */
export function parseSchema<S extends v.GenericSchema>(
  schema: S,
  data: unknown,
  o: { file: string; hint: string; code?: DsaPruneErrorCode; at?: string },
): v.InferOutput<S> {
  const r = checkSchema(schema, data, o.at);
  if (r.ok) return r.value;
  throw new DsaPruneError(`${o.file}: ${r.problem.text}`, { code: o.code ?? 'invalid-data', hint: o.hint });
}

/* Building blocks shared by the formats. */

const isPlainObject = (x: unknown): boolean => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Any JSON object (not an array, not null). */
export const plainObject = (what: string) => v.custom<Record<string, unknown>>(isPlainObject, what);

/** A JSON object (not an array, not null) with these fields; unknown fields are dropped. */
export const obj = <E extends v.ObjectEntries>(entries: E, what: string) =>
  v.pipe(v.custom<Record<string, unknown>>(isPlainObject, what), v.object(entries, what));
/** A JSON object with exactly these fields: any other is refused (`unexpected field "x"`). */
export const strictObj = <E extends v.ObjectEntries>(entries: E, what: string) =>
  v.pipe(v.custom<Record<string, unknown>>(isPlainObject, what), v.strictObject(entries, what));

/** A number (`what` is the expectation in messages). */
export const num = (what = 'a number') => v.number(what);
/** A string. */
export const str = (what = 'a string') => v.string(what);
/** An integer ≥ 0 (counts, lengths, offsets of the binary formats and checkpoints). */
export const count = (what = 'an integer ≥ 0') => v.pipe(v.number(what), v.integer(what), v.minValue(0, what));
/** An integer in [min, max]. */
export const intIn = (what: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  v.pipe(v.number(what), v.integer(what), v.minValue(min, what), v.maxValue(max, what));
/** An optional field that may also be null (both read as absent: the output has no such field). */
export const opt = <S extends v.GenericSchema>(s: S) => v.pipe(v.nullish(s), v.transform((x) => x ?? undefined));
/** A field kept only when it has the right type (anything else is dropped, as a reader of older files would). */
export const lenient = <S extends v.GenericSchema>(s: S) => v.fallback(v.optional(s), undefined);
/** JSON has no NaN: null stands for a non-finite number in per-block arrays. */
export const numberOrNull = (what = 'a number') => v.pipe(v.nullable(v.number(what)), v.transform((x): number => x ?? Number.NaN));
/** An array of numbers (null read as NaN). */
export const numbers = (what = 'an array of numbers, one per block') => v.array(numberOrNull(), what);
/** An object of name → number, keeping the numeric entries only. */
export const numericEntries = (what: string) =>
  v.pipe(
    plainObject(what),
    v.record(v.string(), v.unknown(), what),
    v.transform((o): Record<string, number> => Object.fromEntries(Object.entries(o).filter((e): e is [string, number] => typeof e[1] === 'number'))),
  );

/** Remove `undefined` properties (what optional fields leave behind), recursively over plain objects and arrays. */
export function compact<T>(x: T): T {
  if (Array.isArray(x)) return x.map(compact) as T;
  if (x !== null && typeof x === 'object' && Object.getPrototypeOf(x) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(x)) if (val !== undefined) out[k] = compact(val);
    return out as T;
  }
  return x;
}
