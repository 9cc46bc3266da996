/**
 * DSA allocation functions as values: parse the reference string form (`W:(ABSLOG)-(VAR)-(ATAN,ASIN)`) and the mathjs
 * form (`asin(atan(var(abslog(z))))`), print either, and simplify through mathjs so equivalent spellings share one
 * canonical string. Evaluation on vectors never goes through mathjs: see importance.ts.
 */
import type { MathNode } from 'mathjs';
import { mathBase } from './math.js';
import { DsaPruneError } from '../../errors.js';
import { PRE_OPS, REDUCE_OPS, SCALAR_OPS, PRE_BY_NAME, REDUCE_BY_NAME, SCALAR_BY_NAME, type DsaOp } from './ops.js';

/**
 * An allocation function `I = post(transform(reduce(pre(z))))`, by reference op names (upper case).
 * `pre`: 0–2 element-wise ops applied left to right; `reduce`: one reduction; `transform`: a scalar op (`NO_OP` = x);
 * `post`: an optional second scalar op.
 */
export type DsaExpression = { pre: string[]; reduce: string; transform: string; post?: string };

/** The function published with DSA (README, LLaMA-1-7B, Wanda, 70%): `I = asin(atan(var(ln|z|)))`. */
export const DSA_PUBLISHED = 'W:(ABSLOG)-(VAR)-(ATAN,ASIN)';

const listNames = (ops: readonly DsaOp[]) => ops.map((o) => o.name).join(', ');

/**
 * Longest accepted expression text. The longest expression of the space is under 80 characters in either form; the cap
 * bounds the parser's time and memory on arbitrary input (CLI arguments, search results, payloads).
 */
export const MAX_DSA_EXPRESSION_LENGTH = 1000;

/** The expression as quoted in messages: at most 80 characters, so a megabyte of input gives a short error. */
function quote(text: string, max = 80): string {
  return text.length <= max ? text : `${text.slice(0, max - 20)}… (${text.length} characters)`;
}

function bad(text: string, why: string, hint?: string): DsaPruneError {
  return new DsaPruneError(`DSA expression "${quote(text)}": ${why}`, {
    hint:
      hint ??
      `Write it as W:(PRE,…)-(REDUCE)-(TRANSFORM[,POST]) or as nested functions of z such as asin(atan(var(abslog(z)))). ` +
        `Pre ops: ${listNames(PRE_OPS)}; reductions: ${listNames(REDUCE_OPS)}; scalar ops: ${listNames(SCALAR_OPS)}.`,
  });
}

/** Check names, drop inert `NO_OP`s and return a fresh normalised copy. Throws DsaPruneError naming the problem. */
export function normalizeDsa(e: DsaExpression, text = formatLoose(e)): DsaExpression {
  if (!e || typeof e !== 'object' || !Array.isArray(e.pre)) throw bad(text, 'not a DsaExpression { pre, reduce, transform, post? }');
  const pre = e.pre.map((p) => String(p).trim().toUpperCase()).filter((p) => p !== 'NO_OP' && p !== '');
  for (const p of pre) if (!PRE_BY_NAME.has(p)) throw bad(text, `unknown pre-process op ${quote(p)}`);
  if (pre.length > 2) throw bad(text, `${pre.length} pre-process ops (at most 2)`);
  const reduce = String(e.reduce ?? '').trim().toUpperCase();
  const r = REDUCE_BY_NAME.get(reduce);
  if (!r) throw bad(text, reduce ? `unknown reduction ${quote(reduce)}` : 'no reduction');
  let transform = String(e.transform ?? 'NO_OP').trim().toUpperCase() || 'NO_OP';
  let post: string | undefined = e.post === undefined ? undefined : String(e.post).trim().toUpperCase() || undefined;
  for (const s of [transform, post]) if (s !== undefined && !SCALAR_BY_NAME.has(s)) throw bad(text, `unknown scalar op ${quote(s)}`);
  if (post === 'NO_OP') post = undefined;
  if (transform === 'NO_OP' && post !== undefined) {
    transform = post;
    post = undefined;
  }
  return post === undefined ? { pre, reduce: r.name, transform } : { pre, reduce: r.name, transform, post };
}

function formatLoose(e: DsaExpression): string {
  try {
    return `W:(${(e.pre ?? []).join(',') || 'NO_OP'})-(${e.reduce})-(${e.transform}${e.post ? ',' + e.post : ''})`;
  } catch {
    return String(e);
  }
}

// Each field is one `[^()]*` between its parentheses (trimmed in code): no two quantifiers compete for the same
// characters, so matching is linear. (`\(\s*([^()]*?)\s*\)` took seconds on a few thousand spaces.)
const REFERENCE_RE = /^\s*W\s*:\s*\(([^()]*)\)\s*-\s*\(([^()]*)\)\s*-\s*\(([^()]*)\)\s*(?:-\s*\(([^()]*)\)\s*)?$/i;

function parseReference(text: string): DsaExpression {
  const m = REFERENCE_RE.exec(text);
  if (!m) throw bad(text, 'not of the form W:(PRE,…)-(REDUCE)-(TRANSFORM[,POST])[-(k)]');
  const split = (s: string) => s.split(',').map((x) => x.trim()).filter((x) => x !== '');
  const pre = split(m[1]);
  const red = split(m[2]);
  if (red.length !== 1) throw bad(text, `field 2 must hold exactly one reduction, got ${red.length}`);
  const sc = split(m[3]);
  if (sc.length < 1 || sc.length > 2) throw bad(text, `field 3 must hold one or two scalar ops, got ${sc.length}`);
  const k = m[4]?.trim();
  if (k !== undefined && k !== '' && !Number.isFinite(Number(k))) throw bad(text, `the optional 4th field must be a number, got "${quote(k)}"`);
  return normalizeDsa({ pre, reduce: red[0], transform: sc[0], ...(sc[1] !== undefined ? { post: sc[1] } : {}) }, text);
}

/** A short description of a mathjs node for messages (toString of a deep tree recurses without bound). */
function describeNode(n: MathNode): string {
  const o = n as unknown as { type: string; op?: string; value?: unknown; name?: string };
  if (o.type === 'OperatorNode') return `the operator "${o.op}"`;
  if (o.type === 'ConstantNode') return `the constant ${quote(String(o.value))}`;
  return `"${quote(n.type === 'SymbolNode' ? String(o.name) : n.type)}"`;
}

const PRE_BY_MATHJS = new Map(PRE_OPS.map((o) => [o.mathjs, o.name]));
const REDUCE_BY_MATHJS = new Map<string, string>([...REDUCE_OPS.map((o) => [o.mathjs, o.name] as [string, string]), ['variance', 'VAR']]);
const SCALAR_BY_MATHJS = new Map(SCALAR_OPS.filter((o) => o.mathjs).map((o) => [o.mathjs, o.name]));

/** Deepest bracket nesting accepted (the space needs 5: post(transform(reduce(pre(pre(z)))))). */
const MAX_NESTING = 32;

function parseMathjs(text: string): DsaExpression {
  // mathjs parses recursively (many frames per level): refuse deep nesting here rather than overflow the stack there.
  let depth = 0;
  for (const c of text) {
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    if (depth > MAX_NESTING) throw bad(text, `brackets nested more than ${MAX_NESTING} deep`);
  }
  let node: MathNode;
  try {
    node = mathBase().parse(text);
  } catch (e) {
    throw bad(text, `mathjs cannot parse it (${quote(String((e as Error)?.message), 160)})`);
  }
  // Unwrap from the outside in: scalar ops, then one reduction, then pre ops, then the symbol z.
  const scalars: string[] = [];
  const pre: string[] = [];
  let reduce: string | undefined;
  let n: MathNode = node;
  for (;;) {
    while (n.type === 'ParenthesisNode') n = (n as unknown as { content: MathNode }).content;
    if (n.type === 'SymbolNode') {
      const name = (n as unknown as { name: string }).name;
      if (name !== 'z' && name !== 'W') throw bad(text, `unknown variable ${quote(name)} (the block vector is z)`);
      break;
    }
    let fname: string;
    let args: MathNode[];
    if (n.type === 'FunctionNode') {
      const f = n as unknown as { fn: { name?: string }; args: MathNode[] };
      fname = String(f.fn.name ?? '');
      args = f.args;
    } else if (n.type === 'OperatorNode' && (n as unknown as { fn: string }).fn === 'pow') {
      // z^2 as a spelling of square(z)
      const o = n as unknown as { args: MathNode[] };
      const exp = o.args[1] as unknown as { type: string; value?: unknown };
      if (exp.type !== 'ConstantNode' || Number(exp.value) !== 2) throw bad(text, 'only the power 2 (square) is in the space');
      fname = 'square';
      args = [o.args[0]];
    } else {
      throw bad(text, `${describeNode(n)} is not a function of one argument`);
    }
    if (fname === 'pow' && args.length === 2) {
      const c = args[1] as unknown as { type: string; value?: unknown };
      if (c.type !== 'ConstantNode' || Number(c.value) !== 2) throw bad(text, 'only the power 2 (square) is in the space');
      fname = 'square';
      args = [args[0]];
    }
    if (args.length !== 1) throw bad(text, `${quote(fname)} takes one argument, got ${args.length}`);
    if (reduce === undefined) {
      const r = REDUCE_BY_MATHJS.get(fname);
      if (r) reduce = r;
      else {
        const s = SCALAR_BY_MATHJS.get(fname);
        if (!s) {
          if (PRE_BY_MATHJS.has(fname)) throw bad(text, `${quote(fname)} is element-wise: it must be inside the reduction`);
          throw bad(text, `unknown function ${quote(fname)}`);
        }
        scalars.unshift(s);
      }
    } else {
      const p = PRE_BY_MATHJS.get(fname);
      if (!p) {
        if (fname === 'log')
          throw bad(text, 'inside the reduction the element-wise logs are safelog(z) (= ln(z + 1e-6), z ≤ 0 read as 1) and abslog(z) (= ln|z|, 0 read as 1)');
        if (REDUCE_BY_MATHJS.has(fname)) throw bad(text, 'only one reduction per expression');
        throw bad(text, `${quote(fname)} is not an element-wise (pre-process) op`);
      }
      pre.unshift(p);
    }
    n = args[0];
  }
  if (reduce === undefined) throw bad(text, 'no reduction (mean, var, std, l1_norm, frobenius_norm, gram, geometric_mean, entropy)');
  if (scalars.length > 2) throw bad(text, `${scalars.length} scalar ops after the reduction (at most 2: transform, post)`);
  return normalizeDsa({ pre, reduce, transform: scalars[0] ?? 'NO_OP', ...(scalars[1] ? { post: scalars[1] } : {}) }, text);
}

/**
 * Parse either form. Reference form: `W:(P1,P2)-(R)-(T1[,T2])[-(k)]` (names case-insensitive, `NO_OP` for none, the
 * 4th field is ignored). mathjs form: nested one-argument functions of `z`, e.g. `asin(atan(var(abslog(z))))`.
 */
export function parseDsa(text: string): DsaExpression {
  if (typeof text !== 'string' || text.trim() === '') throw bad(String(text), 'empty expression');
  if (text.length > MAX_DSA_EXPRESSION_LENGTH) throw bad(text, `${text.length} characters, more than any expression of the space (at most ${MAX_DSA_EXPRESSION_LENGTH})`);
  return /^\s*W\s*:/i.test(text) ? parseReference(text) : parseMathjs(text);
}

/** Accept a string (either form) or a DsaExpression; return a validated, normalised DsaExpression. */
export function toDsaExpression(e: string | DsaExpression): DsaExpression {
  return typeof e === 'string' ? parseDsa(e) : normalizeDsa(e);
}

/** Print as the reference string (`W:(ABSLOG)-(VAR)-(ATAN,ASIN)`) or the mathjs form (`asin(atan(var(abslog(z))))`). */
export function formatDsa(expr: string | DsaExpression, form: 'reference' | 'mathjs' = 'reference'): string {
  const e = toDsaExpression(expr);
  if (form === 'reference') return `W:(${e.pre.join(',') || 'NO_OP'})-(${e.reduce})-(${e.transform}${e.post ? ',' + e.post : ''})`;
  let s = 'z';
  for (const p of e.pre) s = `${PRE_BY_NAME.get(p)!.mathjs}(${s})`;
  s = `${REDUCE_BY_NAME.get(e.reduce)!.mathjs}(${s})`;
  for (const t of [e.transform, e.post]) {
    const m = t === undefined ? '' : SCALAR_BY_NAME.get(t)!.mathjs;
    if (m) s = `${m}(${s})`;
  }
  return s;
}

/**
 * Project rules for mathjs `simplify`: identities exact over the reals (and kept by IEEE arithmetic except at overflow).
 * `abs` of something never negative disappears; `mean(abs(z))` is `l1_norm(z)`; `tan(atan(x))` is x.
 */
function simplifyRules(): string[] {
  const nonNeg = [...PRE_OPS, ...REDUCE_OPS, ...SCALAR_OPS].filter((o) => o.nonNegative && o.mathjs && o.mathjs !== 'abs').map((o) => o.mathjs);
  return [
    'abs(abs(n)) -> abs(n)',
    ...[...new Set(nonNeg)].map((f) => `abs(${f}(n)) -> ${f}(n)`),
    'square(abs(n)) -> square(n)',
    'abslog(abs(n)) -> abslog(n)',
    'mean(abs(n)) -> l1_norm(n)',
    'l1_norm(abs(n)) -> l1_norm(n)',
    'gram(abs(n)) -> gram(n)',
    'frobenius_norm(abs(n)) -> frobenius_norm(n)',
    'tan(atan(n)) -> n',
  ];
}

let rulesCache: string[] | undefined;

/** The simplified expression as a DsaExpression (same function, canonical spelling). */
export function simplifyDsaExpression(expr: string | DsaExpression): DsaExpression {
  const e = toDsaExpression(expr);
  const text = formatDsa(e, 'mathjs');
  rulesCache ??= simplifyRules();
  let out: string;
  try {
    out = mathBase().simplify(text, rulesCache).toString();
  } catch {
    return e;
  }
  // mathjs may print a bare variable when everything cancels (it cannot: a reduction always stays) — parse back.
  try {
    return parseMathjs(out);
  } catch {
    return e;
  }
}

/**
 * Canonical string (mathjs form) of the simplified expression: equivalent candidates get the same string.
 * `simplifyDsa('W:(ABS,ABS)-(MEAN)-(ATAN,TAN)') === 'l1_norm(z)'`.
 */
export function simplifyDsa(expr: string | DsaExpression): string {
  return formatDsa(simplifyDsaExpression(expr), 'mathjs');
}
