/**
 * `npm run bench [-- filter ...] [--json]`: runs every bench/*.bench.ts (or those whose name contains a filter), each in
 * its own process so peak memory is its own, then prints one table and writes bench/results/<YYYY-MM-DD>.json
 * (appending to the day's file). Files report rows through bench/harness.ts; their own output passes through.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatTable, type BenchRow } from './harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '..');

interface FileResult {
  file: string;
  exitCode: number | null;
  seconds: number;
  rows: BenchRow[];
}

function gitCommit(): string | undefined {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export function findCaseFiles(dir: string, filters: string[]): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.bench.ts'))
    .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
    .sort()
    .map((f) => path.join(dir, f));
}

function runFile(file: string, tmp: string, json: boolean, args: string[] = []): FileResult {
  const out = path.join(tmp, `${path.basename(file)}.json`);
  const t0 = performance.now();
  // The child runs under the same loader (tsx) as this process.
  const r = spawnSync(process.execPath, [...process.execArgv, file, ...args], {
    cwd: repoRoot,
    env: { ...process.env, DSA_BENCH_OUT: out },
    // with --json, keep stdout clean: the case file's output goes to stderr
    stdio: ['ignore', json ? process.stderr : 'inherit', 'inherit'],
  });
  const seconds = (performance.now() - t0) / 1000;
  const rows = existsSync(out) ? (JSON.parse(readFileSync(out, 'utf8')) as BenchRow[]) : [];
  return { file: path.relative(repoRoot, file), exitCode: r.status, seconds, rows };
}

async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  // `--name value` options other than --json go to every case file (e.g. `npm run bench -- scale --shape qwen2.5-0.5b`).
  const filters: string[] = [];
  const forward: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') continue;
    if (a.startsWith('--')) {
      forward.push(a);
      if (!a.includes('=') && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) forward.push(argv[++i]!);
    } else filters.push(a);
  }
  const files = findCaseFiles(here, filters);
  if (files.length === 0) {
    process.stderr.write(`no bench/*.bench.ts files${filters.length ? ` matching ${filters.join(', ')}` : ''}\n`);
    return 2;
  }
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'dsa-bench-'));
  const results: FileResult[] = [];
  try {
    for (const f of files) {
      process.stderr.write(`\n== ${path.relative(repoRoot, f)}\n`);
      results.push(runFile(f, tmp, json, forward));
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const now = new Date();
  const run = {
    startedAt: now.toISOString(),
    commit: gitCommit(),
    machine: {
      cpus: os.availableParallelism(),
      cpuModel: os.cpus()[0]?.model,
      memGB: Math.round(os.totalmem() / 1024 ** 3),
      node: process.version,
      platform: `${os.platform()} ${os.arch()}`,
    },
    files: results,
  };
  const dir = path.join(here, 'results');
  mkdirSync(dir, { recursive: true });
  const target = path.join(dir, `${now.toISOString().slice(0, 10)}.json`);
  let day: { runs: unknown[] } = { runs: [] };
  if (existsSync(target)) {
    try {
      const prev = JSON.parse(readFileSync(target, 'utf8')) as { runs?: unknown[] };
      if (Array.isArray(prev.runs)) day = { runs: prev.runs };
    } catch {
      // unreadable previous file: start the day again
    }
  }
  day.runs.push(run);
  writeFileSync(target, `${JSON.stringify(day, null, 1)}\n`);

  if (json) process.stdout.write(`${JSON.stringify(run, null, 1)}\n`);
  else {
    process.stdout.write('\n');
    for (const r of results) {
      process.stdout.write(`${r.file}  (${r.seconds.toFixed(1)} s${r.exitCode === 0 ? '' : `, exit ${r.exitCode}`})\n`);
      if (r.rows.length) process.stdout.write(`${formatTable(r.rows)}\n\n`);
      else process.stdout.write('  (no rows recorded through bench/harness.ts)\n\n');
    }
    process.stdout.write(`results: ${path.relative(repoRoot, target)}\n`);
  }
  return results.some((r) => r.exitCode !== 0) ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
