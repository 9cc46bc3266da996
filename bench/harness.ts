/**
 * The project's one bench harness. A case file `bench/<area>.bench.ts` is a script:
 *
 * ```ts
 * import { bench, ratio, record } from './harness.js';
 * const plain = await bench('forward (plain)', () => session.run(feeds), { repeat: 3 });
 * const stats = await bench('statistics pass', () => runCalibration(...), { repeat: 3 });
 * ratio('statistics / forward', stats, plain);
 * ```
 *
 * `npx tsx bench/<area>.bench.ts` runs one file and prints its table at exit; `npm run bench` (bench/run.ts) runs every
 * bench/*.bench.ts in its own process (so peak RSS is the case file's own), prints one table and writes
 * bench/results/<YYYY-MM-DD>.json. Ratios are of numbers measured in the same run; there are no assertions.
 */
import { writeFileSync } from 'node:fs';

/** A timed case. `seconds` is the median over the repeats. */
export interface TimeRow {
  kind: 'time';
  name: string;
  /** Median wall seconds over the repeats. */
  seconds: number;
  /** Fastest and slowest repeat. */
  min: number;
  max: number;
  repeat: number;
  /** Highest RSS sampled while the case ran (MB). */
  peakRssMB: number;
  /** The process's lifetime maximum RSS after the case (MB, from resourceUsage().maxRSS). */
  maxRssMB: number;
  /** Free-form details (batch size, threads, tokens …). */
  notes?: string;
}

/** a / b of two timed cases of the same run. */
export interface RatioRow {
  kind: 'ratio';
  name: string;
  a: string;
  b: string;
  /** a.seconds / b.seconds. */
  value: number;
}

/** Any other measured number (tokens/s, evaluations/min, perplexity …). */
export interface ValueRow {
  kind: 'value';
  name: string;
  value: number;
  unit?: string;
  notes?: string;
}

export type BenchRow = TimeRow | RatioRow | ValueRow;

export interface BenchOptions {
  /** Timed repeats (default 1). */
  repeat?: number;
  /** Untimed warm-up runs first (default 0). */
  warmup?: number;
  /** RSS sampling interval in ms (default 20). Samples only land while fn awaits: a fully synchronous fn is
   * measured by the samples before/after each repeat and by maxRssMB. */
  sampleMs?: number;
  notes?: string;
}

const MB = 1024 * 1024;
const rows: BenchRow[] = [];
let autoPrint = true;

/** Rows measured so far in this process. */
export function collected(): readonly BenchRow[] {
  return rows;
}

/** Forget the rows measured so far (tests; a file that prints its own table). */
export function clearCollected(): void {
  rows.length = 0;
}

/** Add a row measured some other way (e.g. a case that runs in its own subprocess). */
export function record(row: Omit<TimeRow, 'kind' | 'min' | 'max' | 'repeat' | 'maxRssMB' | 'peakRssMB'> & Partial<TimeRow>): TimeRow;
export function record(row: ValueRow): ValueRow;
export function record(row: (Partial<TimeRow> & { name: string; seconds: number }) | ValueRow): TimeRow | ValueRow {
  if ('kind' in row && row.kind === 'value') {
    rows.push(row);
    return row;
  }
  const r = row as Partial<TimeRow> & { name: string; seconds: number };
  const t: TimeRow = {
    kind: 'time',
    name: r.name,
    seconds: r.seconds,
    min: r.min ?? r.seconds,
    max: r.max ?? r.seconds,
    repeat: r.repeat ?? 1,
    peakRssMB: r.peakRssMB ?? Number.NaN,
    maxRssMB: r.maxRssMB ?? Number.NaN,
    ...(r.notes ? { notes: r.notes } : {}),
  };
  rows.push(t);
  return t;
}

/** Record any measured number: `value('eval tokens/s', 1234, 'tok/s')`. */
export function value(name: string, v: number, unit?: string, notes?: string): ValueRow {
  return record({ kind: 'value', name, value: v, ...(unit ? { unit } : {}), ...(notes ? { notes } : {}) });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Time `fn` (wall seconds, median of `repeat`) and its peak memory. */
export async function bench(name: string, fn: () => unknown, options: BenchOptions = {}): Promise<TimeRow> {
  const repeat = Math.max(1, Math.floor(options.repeat ?? 1));
  for (let i = 0; i < (options.warmup ?? 0); i++) await fn();
  let peak = process.memoryUsage.rss();
  const sample = () => {
    const r = process.memoryUsage.rss();
    if (r > peak) peak = r;
  };
  const timer = setInterval(sample, Math.max(1, options.sampleMs ?? 20));
  timer.unref();
  const times: number[] = [];
  try {
    for (let i = 0; i < repeat; i++) {
      sample();
      const t0 = performance.now();
      await fn();
      times.push((performance.now() - t0) / 1000);
      sample();
    }
  } finally {
    clearInterval(timer);
  }
  const row: TimeRow = {
    kind: 'time',
    name,
    seconds: median(times),
    min: Math.min(...times),
    max: Math.max(...times),
    repeat,
    peakRssMB: peak / MB,
    maxRssMB: (process.resourceUsage().maxRSS * 1024) / MB,
    ...(options.notes ? { notes: options.notes } : {}),
  };
  rows.push(row);
  return row;
}

/** Record and return the ratio a.seconds / b.seconds of two timed rows of the same run. */
export function ratio(name: string, a: TimeRow, b: TimeRow): RatioRow {
  const r: RatioRow = { kind: 'ratio', name, a: a.name, b: b.name, value: a.seconds / b.seconds };
  rows.push(r);
  return r;
}

function fmt(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return '-';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  return Number(v.toPrecision(digits)).toString();
}

/** The rows as an aligned text table (time rows: seconds, min–max, RSS; ratios: a / b = r×; values with units). */
export function formatTable(list: readonly BenchRow[]): string {
  const header = ['case', 'seconds', 'min–max', 'repeat', 'peak RSS MB', 'max RSS MB', 'notes'];
  const body: string[][] = list.map((r) => {
    if (r.kind === 'time')
      return [r.name, fmt(r.seconds), `${fmt(r.min)}–${fmt(r.max)}`, String(r.repeat), fmt(r.peakRssMB, 4), fmt(r.maxRssMB, 4), r.notes ?? ''];
    if (r.kind === 'ratio') return [r.name, `${fmt(r.value)}×`, '', '', '', '', `${r.a} / ${r.b}`];
    return [r.name, `${fmt(r.value, 4)}${r.unit ? ` ${r.unit}` : ''}`, '', '', '', '', r.notes ?? ''];
  });
  const widths = header.map((h, k) => Math.max(h.length, ...body.map((row) => row[k].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, k) => (k === 0 || k === cells.length - 1 ? c.padEnd(widths[k]) : c.padStart(widths[k])))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** Print the rows (default: everything collected in this process) to stdout. */
export function printTable(list: readonly BenchRow[] = rows): void {
  process.stdout.write(`${formatTable(list)}\n`);
}

/** Do not print the table at process exit (the file prints its own output). */
export function disableAutoPrint(): void {
  autoPrint = false;
}

// At exit: hand the rows to bench/run.ts (DSA_BENCH_OUT) or print them when the file ran on its own.
process.on('exit', () => {
  if (rows.length === 0) return;
  const out = process.env.DSA_BENCH_OUT;
  if (out) writeFileSync(out, JSON.stringify(rows));
  else if (autoPrint) printTable(rows);
});

/**
 * `--name value` taken out of `args` (mutated, so what is left are positionals), or `d` when absent: the option
 * reader of the bench scripts that take their own flags.
 */
export function takeOption(args: string[], name: string, d?: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return d;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
}
