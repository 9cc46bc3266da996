/**
 * The package as a user gets it: `npm run build`, `npm pack`, the tarball unpacked into a scratch project's
 * node_modules (its dependencies linked from this repository's node_modules: no network), then, in fresh Node
 * processes of that project:
 * - every entry point of package.json `exports` imports and has its main exports, and type-checks from TypeScript;
 * - the CLI runs (`--version`, `inspect` on the model shipped in the package);
 * - `import 'dsa-prune'` loads neither bullmq nor ioredis nor valibot nor the report code (every module the process resolved is
 *   recorded by a loader hook, every CommonJS module from require.cache), and its import time is printed;
 * - no built file mentions `../shared` (a folder of this repository, not of an installed package).
 * Set DSA_PRUNE_SKIP_BUILD=1 to test the dist/ already built (CI builds just before the tests).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as {
  version: string;
  exports: Record<string, { types: string; import: string } | string>;
  dependencies: Record<string, string>;
};
const T = 180_000;
/** The build (tsup with declarations): ~15 s on a quiet 2-core machine, minutes when the machine is shared. */
const BUILD_T = 900_000;

/** What each entry point must export (a few names users call; the full lists are in docs/api.md). */
const ENTRY_EXPORTS: Record<string, string[]> = {
  'dsa-prune': ['pruneModel', 'planPrune', 'savePruned', 'inspectModel', 'owl', 'dsa', 'registerMethod', 'perplexity', 'DsaPruneError', 'installLoadingHook'],
  'dsa-prune/search': ['searchModel', 'runSearch', 'searchSpace', 'readCheckpoint'],
  'dsa-prune/distributed': ['createRedisEvaluator', 'startWorker', 'modelBackend'],
  'dsa-prune/eval': ['perplexity', 'evaluateTasks', 'scoreSequences', 'forwardLogits'],
  'dsa-prune/report': ['renderReport', 'lineChart', 'barChart', 'writeReport'],
  'dsa-prune/testing': ['checkAllocator'],
};

let scratch = '';
let installed = '';
// Asynchronous, so the test worker keeps answering vitest while a build or a child process runs.
const run = async (cmd: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<string> =>
  (await promisify(execFile)(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 })).stdout;
const node = (args: string[], env: Record<string, string> = {}) => run(process.execPath, args, scratch, env);

beforeAll(async () => {
  if (process.env.DSA_PRUNE_SKIP_BUILD !== '1') await run('npx', ['tsup', '--silent'], repoRoot);
  scratch = mkdtempSync(path.join(os.tmpdir(), 'dsa-pack-'));
  const out = await run('npm', ['pack', repoRoot, '--pack-destination', scratch, '--json', '--ignore-scripts'], scratch);
  const tarball = path.join(scratch, (JSON.parse(out) as { filename: string }[])[0]!.filename);
  writeFileSync(path.join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }));
  const nm = path.join(scratch, 'node_modules');
  installed = path.join(nm, 'dsa-prune');
  mkdirSync(installed, { recursive: true });
  await run('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1'], scratch);
  // The dependencies, as `npm install` would place them next to the package (linked, not downloaded).
  for (const e of readdirSync(path.join(repoRoot, 'node_modules'))) {
    if (e === '.bin' || e === 'dsa-prune' || e.startsWith('.')) continue;
    symlinkSync(path.join(repoRoot, 'node_modules', e), path.join(nm, e), 'dir');
  }
}, BUILD_T);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('the packed package', () => {
  it('ships every file package.json exports names, and nothing of src/ or test/', () => {
    for (const [sub, target] of Object.entries(pkg.exports)) {
      const files = typeof target === 'string' ? [target] : [target.types, target.import];
      for (const f of files) expect(existsSync(path.join(installed, f)), `${sub} → ${f}`).toBe(true);
    }
    expect(existsSync(path.join(installed, 'src'))).toBe(false);
    expect(existsSync(path.join(installed, 'test'))).toBe(false);
  });

  it('every entry point imports in a fresh process and has its main exports', { timeout: T }, async () => {
    writeFileSync(path.join(scratch, 'entries.mjs'), `
const want = ${JSON.stringify(ENTRY_EXPORTS)};
const out = {};
for (const [spec, names] of Object.entries(want)) {
  const m = await import(spec);
  out[spec] = names.filter((n) => m[n] === undefined);
}
console.log(JSON.stringify(out));
`);
    const missing = JSON.parse(await node(['entries.mjs'])) as Record<string, string[]>;
    expect(Object.keys(missing).sort()).toEqual(Object.keys(ENTRY_EXPORTS).sort());
    for (const [spec, names] of Object.entries(missing)) expect(names, spec).toEqual([]);
    // The exports map and this list agree (a new subpath gets a line above).
    expect(Object.keys(pkg.exports).filter((k) => k !== './package.json').map((k) => (k === '.' ? 'dsa-prune' : `dsa-prune/${k.slice(2)}`)).sort())
      .toEqual(Object.keys(ENTRY_EXPORTS).sort());
  });

  it('every entry point type-checks from a TypeScript project (NodeNext resolution)', { timeout: T }, async () => {
    const lines = Object.entries(ENTRY_EXPORTS).map(([spec, names], i) => `import { ${names.map((n) => `${n} as n${i}_${n}`).join(', ')} } from '${spec}';\nvoid [${names.map((n) => `n${i}_${n}`).join(', ')}];`);
    writeFileSync(path.join(scratch, 'check.ts'), `${lines.join('\n')}\nimport type { PruneOptions, PruneReport, Allocator } from 'dsa-prune';\nexport type T = [PruneOptions, PruneReport, Allocator];\n`);
    writeFileSync(path.join(scratch, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [path.join(repoRoot, 'node_modules/@types')] },
      files: ['check.ts'],
    }));
    await node([path.join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);
  });

  it('the CLI runs: --version and inspect on the shipped model', { timeout: T }, async () => {
    const cli = path.join(installed, 'dist/cli/main.js');
    expect((await node([cli, '--version'])).trim()).toContain(pkg.version);
    const report = JSON.parse(await node([cli, 'inspect', path.join(installed, 'models/stories260k'), '--json'])) as { blocks: number; linears: unknown[] };
    expect(report.blocks).toBeGreaterThan(0);
    expect(report.linears.length).toBe(report.blocks * 7); // llama blocks: q, k, v, o, gate, up, down
    // every command `dsa-prune --help` lists has its built file (main.ts imports ./commands/<name>.js on demand)
    const { COMMANDS } = await import('../../src/cli/main.js');
    const missing = Object.keys(COMMANDS).filter((c) => !existsSync(path.join(installed, `dist/cli/commands/${c}.js`)));
    expect(missing).toEqual([]);
    expect((await node([cli, 'frontier', '--help'])).length).toBeGreaterThan(0);
  });

  it("import 'dsa-prune' loads neither bullmq nor ioredis nor the report code; its import time is printed", { timeout: T }, async () => {
    const log = path.join(scratch, 'resolved.log');
    writeFileSync(path.join(scratch, 'hooks.mjs'), `
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(process.env.DSA_RESOLVE_LOG, r.url + '\\n');
  return r;
}
`);
    writeFileSync(path.join(scratch, 'record.mjs'), "import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n");
    writeFileSync(path.join(scratch, 'root.mjs'), `
import { createRequire } from 'node:module';
const t0 = performance.now();
const m = await import(process.argv[2]);
const ms = performance.now() - t0;
console.log(JSON.stringify({ ms, exports: Object.keys(m).length, cjs: Object.keys(createRequire(import.meta.url).cache) }));
`);
    const probe = async (spec: string) => {
      writeFileSync(log, '');
      const r = JSON.parse(await node(['--import', './record.mjs', 'root.mjs', spec], { DSA_RESOLVE_LOG: log })) as { ms: number; exports: number; cjs: string[] };
      const esm = readFileSync(log, 'utf8').split('\n').filter(Boolean);
      const files = [...new Set([...esm.filter((u) => u.startsWith('file:')).map((u) => fileURLToPath(u)), ...r.cjs])];
      return { ...r, files };
    };
    const root = await probe('dsa-prune');
    const deps = (files: string[], name: string) => files.filter((f) => f.includes(`${path.sep}node_modules${path.sep}${name}${path.sep}`));
    expect(root.files.length).toBeGreaterThan(10); // the hook saw the imports (else the checks below prove nothing)
    expect(deps(root.files, '@huggingface')).not.toEqual([]);
    expect(deps(root.files, 'bullmq')).toEqual([]);
    expect(deps(root.files, 'ioredis')).toEqual([]);
    // valibot (the JSON schemas, ~15–40 ms to import) is allowed: the pipeline's `.dsastats` reader
    // (allocators/stats-cache.ts, a synchronous decoder) checks its header with it. The heavy ones above are not.
    // The report code: no file of the package the root loaded defines the HTML report or the charts.
    const own = root.files.filter((f) => f.startsWith(installed + path.sep));
    expect(own.some((f) => f.endsWith(`${path.sep}dist${path.sep}index.js`))).toBe(true);
    for (const f of own) {
      const text = readFileSync(f, 'utf8');
      expect(/function (renderReport|lineChart|barChart)\b/.test(text), `${path.relative(installed, f)} holds report code`).toBe(false);
    }
    // The distributed entry point loads BullMQ only when a coordinator or worker starts.
    const dist = await probe('dsa-prune/distributed');
    expect(deps(dist.files, 'bullmq')).toEqual([]);
    expect(deps(dist.files, 'ioredis')).toEqual([]);
    // The control: the probe does see bullmq when something loads it.
    expect(deps((await probe('bullmq')).files, 'bullmq')).not.toEqual([]);
    // Import time without the recording hook (which costs a file append per module), next to a bare transformers.js import.
    const plain = JSON.parse(await node(['root.mjs', 'dsa-prune'])) as { ms: number };
    const tjs = JSON.parse(await node(['root.mjs', '@huggingface/transformers'])) as { ms: number };
    console.log(`import 'dsa-prune' (fresh process, packed tarball): ${plain.ms.toFixed(0)} ms; import '@huggingface/transformers' alone: ${tjs.ms.toFixed(0)} ms; ${root.exports} exports, ${root.files.length} modules resolved, ${own.length} of them dsa-prune's`);
  });

  it('no built file mentions ../shared', () => {
    const hits: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d)) {
        const p = path.join(d, e);
        if (statSync(p).isDirectory()) walk(p);
        else if (readFileSync(p, 'utf8').includes('../shared')) hits.push(path.relative(installed, p));
      }
    };
    walk(path.join(installed, 'dist'));
    expect(hits).toEqual([]);
  });
});
