/**
 * A small typed option parser for the CLI commands, on top of node:util parseArgs (strict mode).
 *
 * ```ts
 * const spec = defineCommand({
 *   name: 'prune',
 *   usage: 'dsa-prune prune <modelDir> --out <dir> [options]',
 *   positionals: { min: 1, max: 1, names: ['modelDir'] },
 *   options: {
 *     sparsity: { type: 'number', min: 0, max: 1, maxExclusive: true, default: 0.5, description: 'target sparsity' },
 *     method: { type: 'string', choices: ['magnitude', 'wanda', 'sparsegpt'], default: 'wanda', description: '…' },
 *   },
 * });
 * const args = parseCommandArgs(argv, spec); // args.values.sparsity: number, args.common.json: boolean
 * ```
 *
 * Every command gets the common flags `--json --quiet/-q --verbose/-v --threads <n> --help/-h`.
 * Bad input throws DsaPruneError naming the option and the accepted values, with the command's usage as the hint.
 */
import { parseArgs } from 'node:util';
import { DsaPruneError, EXIT } from '../errors.js';

/** One option of a command. */
export interface OptionSpec {
  /** `number` accepts any finite number, `integer` whole numbers; `string` may be restricted by `choices`. */
  type: 'string' | 'boolean' | 'number' | 'integer';
  /** One-letter alias (`-o`). */
  short?: string;
  /** Accept the option several times; the value is then an array. */
  multiple?: boolean;
  /** Value when the option is absent (not validated). */
  default?: string | number | boolean | string[] | number[];
  /** Inclusive lower bound unless `minExclusive` (numbers only). */
  min?: number;
  minExclusive?: boolean;
  /** Inclusive upper bound unless `maxExclusive` (numbers only). */
  max?: number;
  maxExclusive?: boolean;
  /** Accepted values of a string option. */
  choices?: readonly string[];
  /** Placeholder in the help text (`<dir>`); defaults to `<n>` for numbers and `<value>` for strings. */
  valueName?: string;
  /** One-line description for the help text. */
  description?: string;
}

/** A command's arguments: its name, usage line(s), options and positional arguments. */
export interface CommandSpec<O extends Record<string, OptionSpec> = Record<string, OptionSpec>> {
  /** Command name as typed (`prune`). */
  name: string;
  /** Usage line(s), shown in errors (`dsa-prune prune <modelDir> --out <dir> [options]`). */
  usage: string;
  options: O;
  /** Number of positional arguments accepted (default: 0..0) and their names for error messages. */
  positionals?: { min?: number; max?: number; names?: string[] };
}

type Scalar<S extends OptionSpec> = S['type'] extends 'boolean'
  ? boolean
  : S['type'] extends 'number' | 'integer'
    ? number
    : string;
type Value<S extends OptionSpec> = S['multiple'] extends true ? Scalar<S>[] : Scalar<S>;
/** Parsed option values: options with a default (and booleans) are always present, the others may be undefined. */
export type Values<O extends Record<string, OptionSpec>> = {
  [K in keyof O]: O[K] extends { default: string | number | boolean | string[] | number[] }
    ? Value<O[K]>
    : O[K]['type'] extends 'boolean'
      ? Value<O[K]>
      : Value<O[K]> | undefined;
};

/** The flags every command understands. */
export interface CommonFlags {
  /** Only JSON on stdout; no progress output. */
  json: boolean;
  /** No progress output, no informational lines. */
  quiet: boolean;
  /** More detail; stack traces of unexpected errors. */
  verbose: boolean;
  /** Number of CPU threads for onnxruntime (undefined: its default). */
  threads?: number;
}

export interface ParsedArgs<O extends Record<string, OptionSpec>> {
  values: Values<O>;
  positionals: string[];
  common: CommonFlags;
  /** `--help` / `-h` was given: print the command's help and exit 0. */
  help: boolean;
}

/** The common flags as option specs (merged into every command's spec). */
export const COMMON_OPTIONS = {
  json: { type: 'boolean', description: 'print only JSON on stdout (for scripts)' },
  quiet: { type: 'boolean', short: 'q', description: 'no progress output' },
  verbose: { type: 'boolean', short: 'v', description: 'more detail; stack traces of unexpected errors' },
  threads: { type: 'integer', min: 1, max: 1024, valueName: '<n>', description: 'CPU threads for onnxruntime' },
  help: { type: 'boolean', short: 'h', description: 'show this help' },
} as const satisfies Record<string, OptionSpec>;

/** Identity helper that keeps the literal option types, so `parseCommandArgs` can type the values. */
export function defineCommand<const O extends Record<string, OptionSpec>>(spec: CommandSpec<O>): CommandSpec<O> {
  for (const key of Object.keys(spec.options)) {
    if (key in COMMON_OPTIONS) throw new Error(`option --${key} of '${spec.name}' clashes with a common flag`);
  }
  return spec;
}

/** Human text of a number range: `[0, 1)`, `>= 1`, `> 0`, `<= 8`, or '' when unbounded. */
export function describeRange(r: Pick<OptionSpec, 'min' | 'max' | 'minExclusive' | 'maxExclusive'>): string {
  const hasMin = r.min !== undefined;
  const hasMax = r.max !== undefined;
  if (hasMin && hasMax) return `${r.minExclusive ? '(' : '['}${r.min}, ${r.max}${r.maxExclusive ? ')' : ']'}`;
  if (hasMin) return `${r.minExclusive ? '>' : '>='} ${r.min}`;
  if (hasMax) return `${r.maxExclusive ? '<' : '<='} ${r.max}`;
  return '';
}

/**
 * Parse one number-valued option: `parseNumberOption('--sparsity', '1.2', { min: 0, max: 1, maxExclusive: true })`
 * throws "--sparsity must be a number in [0, 1), got 1.2".
 */
export function parseNumberOption(
  flag: string,
  raw: string,
  range: Pick<OptionSpec, 'min' | 'max' | 'minExclusive' | 'maxExclusive'> & { integer?: boolean } = {},
  usage?: string,
): number {
  const kind = range.integer ? 'an integer' : 'a number';
  const rangeText = describeRange(range);
  const expected = rangeText === '' ? kind : rangeText.startsWith('[') || rangeText.startsWith('(') ? `${kind} in ${rangeText}` : `${kind} ${rangeText}`;
  const trimmed = raw.trim();
  const value = trimmed === '' ? Number.NaN : Number(trimmed);
  const bad =
    !Number.isFinite(value) ||
    (range.integer === true && !Number.isInteger(value)) ||
    (range.min !== undefined && (range.minExclusive ? value <= range.min : value < range.min)) ||
    (range.max !== undefined && (range.maxExclusive ? value >= range.max : value > range.max));
  if (bad) {
    const shown = Number.isFinite(value) ? trimmed : JSON.stringify(raw);
    throw new DsaPruneError(`${flag} must be ${expected}, got ${shown}`, {
      hint: usage,
      exitCode: EXIT.badInput,
    });
  }
  return value;
}

function flagName(key: string): string {
  return `--${key}`;
}

function placeholder(spec: OptionSpec): string {
  if (spec.type === 'boolean') return '';
  if (spec.valueName) return spec.valueName;
  if (spec.choices) return `<${spec.choices.join('|')}>`;
  return spec.type === 'number' || spec.type === 'integer' ? '<n>' : '<value>';
}

/** The option list for a help text, one option per line, aligned; includes the common flags. */
export function formatOptions(options: Record<string, OptionSpec>, includeCommon = true): string {
  const all: [string, OptionSpec][] = Object.entries(options);
  if (includeCommon) all.push(...(Object.entries(COMMON_OPTIONS) as [string, OptionSpec][]));
  const lefts = all.map(([key, spec]) => {
    const ph = placeholder(spec);
    return `${spec.short ? `-${spec.short}, ` : '    '}${flagName(key)}${ph ? ` ${ph}` : ''}`;
  });
  const width = Math.min(36, Math.max(...lefts.map((l) => l.length)));
  return all
    .map(([, spec], i) => {
      const left = lefts[i];
      const extras: string[] = [];
      if ((spec.type === 'number' || spec.type === 'integer') && describeRange(spec)) extras.push(describeRange(spec));
      if (spec.default !== undefined && spec.default !== false) extras.push(`default ${String(spec.default)}`);
      const desc = `${spec.description ?? ''}${extras.length ? ` (${extras.join(', ')})` : ''}`;
      return left.length > width ? `  ${left}\n  ${' '.repeat(width)}  ${desc}` : `  ${left.padEnd(width)}  ${desc}`;
    })
    .join('\n');
}

function usageError(spec: CommandSpec, message: string): DsaPruneError {
  return new DsaPruneError(message, {
    hint: `usage: ${spec.usage}\nrun 'dsa-prune ${spec.name} --help' for all options`,
    exitCode: EXIT.badInput,
  });
}

interface NodeParseError {
  code?: string;
  message: string;
}

/**
 * Parse `argv` (the arguments after the command name) against `spec`.
 * Throws DsaPruneError (exit code 2) for unknown options, missing or malformed values and wrong positional counts.
 */
export function parseCommandArgs<O extends Record<string, OptionSpec>>(argv: string[], spec: CommandSpec<O>): ParsedArgs<O> {
  const all: Record<string, OptionSpec> = { ...spec.options, ...COMMON_OPTIONS };
  const nodeOptions: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [key, o] of Object.entries(all)) {
    nodeOptions[key] = {
      type: o.type === 'boolean' ? 'boolean' : 'string',
      ...(o.short ? { short: o.short } : {}),
      ...(o.multiple ? { multiple: true } : {}),
    };
  }
  // `--lambda -0.1`: parseArgs would read "-0.1" as an option; join a negative number to its value-taking option.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = argv[i + 1];
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    const key = a.startsWith('--') && !a.includes('=') ? a.slice(2) : undefined;
    if (key !== undefined && all[key] && all[key].type !== 'boolean' && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      args.push(`${a}=${next}`);
      i++;
    } else args.push(a);
  }
  let parsed: { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: nodeOptions, strict: true, allowPositionals: true });
  } catch (e) {
    const err = e as NodeParseError;
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const m = /Unknown option '([^']+)'/.exec(err.message);
      throw usageError(spec, `unknown option ${m ? `'${m[1]}'` : ''} for 'dsa-prune ${spec.name}'`.replace('  ', ' '));
    }
    if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      // e.g. "Option '--out <value>' argument missing" or "Option '--json' does not take an argument"
      const m = /Option '(?:-\w, )?(--[\w-]+)/.exec(err.message);
      const flag = m ? m[1] : 'an option';
      const key = flag.replace(/^--/, '');
      const o = all[key];
      const msg =
        o && o.type !== 'boolean'
          ? `${flag} needs a value (${placeholder(o)})`
          : `${flag} is a switch and takes no value`;
      throw usageError(spec, msg);
    }
    throw usageError(spec, err.message);
  }

  const help = parsed.values.help === true;
  const values: Record<string, unknown> = {};
  for (const [key, o] of Object.entries(spec.options)) {
    const raw = parsed.values[key];
    if (raw === undefined) {
      values[key] = o.default ?? (o.type === 'boolean' ? false : undefined);
      continue;
    }
    const convert = (r: string | boolean): string | number | boolean => {
      if (o.type === 'boolean') return r;
      const s = String(r);
      if (o.type === 'number' || o.type === 'integer') {
        return parseNumberOption(flagName(key), s, { ...o, integer: o.type === 'integer' }, `usage: ${spec.usage}`);
      }
      if (o.choices && !o.choices.includes(s)) {
        throw usageError(spec, `${flagName(key)} must be one of ${o.choices.join(', ')}, got ${JSON.stringify(s)}`);
      }
      return s;
    };
    values[key] = Array.isArray(raw) ? raw.map(convert) : convert(raw);
  }

  const common: CommonFlags = {
    json: parsed.values.json === true,
    quiet: parsed.values.quiet === true,
    verbose: parsed.values.verbose === true,
  };
  if (typeof parsed.values.threads === 'string') {
    common.threads = parseNumberOption('--threads', parsed.values.threads, { ...COMMON_OPTIONS.threads, integer: true }, `usage: ${spec.usage}`);
  }

  const positionals = parsed.positionals;
  if (!help) {
    const min = spec.positionals?.min ?? 0;
    const max = spec.positionals?.max ?? 0;
    const names = spec.positionals?.names ?? [];
    if (positionals.length < min) {
      const missing = names[positionals.length] ?? `argument ${positionals.length + 1}`;
      throw usageError(spec, `'dsa-prune ${spec.name}' needs <${missing}>`);
    }
    if (positionals.length > max) {
      throw usageError(
        spec,
        `'dsa-prune ${spec.name}' takes ${max === 0 ? 'no' : `at most ${max}`} positional argument${max === 1 ? '' : 's'}, got extra ${JSON.stringify(positionals[max])}`,
      );
    }
  }
  return { values: values as Values<O>, positionals, common, help };
}
