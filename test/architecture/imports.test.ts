/**
 * Layers point one way (docs/architecture.md): this reads every import of src/ (static, `export … from`, type-only and
 * dynamic `import()`), folds files into their top-level folder (src/prune.ts is the folder `prune`), and asserts
 * - every folder has a floor in FLOORS (a new folder must be placed),
 * - no import goes from a lower floor to a higher one (same floor is fine),
 * - no import cycle between folders, and none between files.
 * The few known exceptions are in ALLOWED, each with the reason and who removes it; an entry no longer needed fails.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const srcDir = path.join(repoRoot, 'src');

/** Lowest first. A folder may import from its own floor and the floors below. */
const FLOORS: string[][] = [
  ['errors', 'types', 'kernels', 'data'], // leaves: no pipeline knowledge
  ['model'], // ONNX graph I/O, loading hook, discovery, weight access, feeds, write-back, save
  ['calibration'], // text windows → per-block statistics (runs model graphs)
  ['budget'], // the global sparsity budget and its rounding
  ['allocators'], // dense statistics → sparsity per block / linear
  ['methods'], // magnitude, wanda, sparsegpt, patterns, the registry
  ['compress'], // save-time transforms: q4/q8, bitmask storage
  ['prune-common'], // options, reports, calibration windows and dense statistics both pipelines share
  ['prune', 'save', 'save-gptq', 'structured', 'structured-depth'], // the pipeline (the one place that knows the order), its save, structured pruning
  ['eval'], // perplexity, zero-shot tasks
  ['frontier'], // prunes, saves and measures a grid of variants (pipeline + eval)
  ['report'], // HTML report and charts, from the data of the floors below and of search
  ['search'], // the evolutionary search (local pool, distributed queue) over the pipeline
  ['testing'], // the public property-test kit
  ['cli'], // one file per command
  ['index'], // the public root entry point
];

/** Known exceptions: `from → to` (folders), why, and who removes it. */
const ALLOWED: Record<string, string> = {};

/** Specifiers of the relative imports of one TypeScript source (comments removed first). */
export function importSpecifiers(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const out: string[] = [];
  const re = /(?:^|[;\s])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\sfrom\s*)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (let m = re.exec(code); m; m = re.exec(code)) {
    const spec = m[1] ?? m[2]!;
    if (spec.startsWith('.')) out.push(spec);
  }
  return out;
}

/** A generated module (JavaScript with its declarations beside it, e.g. model/proto/onnx.js from `npm run gen:onnx`). */
const isGenerated = (p: string): boolean => p.endsWith('.js') && existsSync(p.replace(/\.js$/, '.d.ts'));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = path.join(dir, e);
    return statSync(p).isDirectory() ? sourceFiles(p) : (p.endsWith('.ts') && !p.endsWith('.d.ts')) || isGenerated(p) ? [p] : [];
  });
}

/** src-relative file → src-relative files it imports. */
function fileGraph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of sourceFiles(srcDir)) {
    const rel = path.relative(srcDir, f).split(path.sep).join('/');
    const deps = importSpecifiers(readFileSync(f, 'utf8')).map((s) => {
      const target = path.resolve(path.dirname(f), s);
      const file = isGenerated(target) ? target : target.replace(/\.js$/, '.ts');
      return path.relative(srcDir, file).split(path.sep).join('/');
    });
    g.set(rel, [...new Set(deps)]);
  }
  return g;
}

export const folderOf = (rel: string): string => (rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : rel.replace(/\.ts$/, ''));

/** Strongly connected components with more than one node (Tarjan): the cycles of a graph. */
export function cycles(g: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const c: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        c.push(w);
      } while (w !== v);
      if (c.length > 1) out.push(c.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** Folder edges `a → b` (a ≠ b), each with the files that make it. */
function folderEdges(files: Map<string, string[]>): Map<string, string[]> {
  const edges = new Map<string, string[]>();
  for (const [f, deps] of files) {
    for (const d of deps) {
      const a = folderOf(f);
      const b = folderOf(d);
      if (a === b) continue;
      const k = `${a} → ${b}`;
      edges.set(k, [...(edges.get(k) ?? []), `${f} imports ${d}`]);
    }
  }
  return edges;
}

/** Edges going up a floor, minus the allowed ones. */
export function upwardEdges(edges: Map<string, string[]>, floors: string[][], allowed: Record<string, string>): string[] {
  const floor = new Map(floors.flatMap((fs, i) => fs.map((f) => [f, i] as const)));
  const bad: string[] = [];
  for (const [k, why] of edges) {
    const [a, b] = k.split(' → ') as [string, string];
    if (floor.get(b)! > floor.get(a)! && !(k in allowed)) bad.push(`${k}: ${why.join('; ')}`);
  }
  return bad.sort();
}

describe('the checker itself', () => {
  it('reads static, re-export, type-only and dynamic imports, not commented ones or packages', () => {
    const src = [
      "import { a } from './a.js';",
      "import type { B } from '../b/index.js';",
      "export { c } from './c.js';",
      "export * from './d.js';",
      "import './side.js';",
      "const e = await import('./e.js');",
      "import x from 'node:fs';",
      "// import { no } from './commented.js';",
      "/* import { no2 } from './block.js'; */",
      'import {\n  f,\n  g,\n} from "./multi.js";',
    ].join('\n');
    expect(importSpecifiers(src)).toEqual(['./a.js', '../b/index.js', './c.js', './d.js', './side.js', './e.js', './multi.js']);
  });

  it('finds a cycle and an upward edge in a made-up graph', () => {
    const g = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]);
    expect(cycles(g)).toEqual([['a', 'b', 'c']]);
    const edges = new Map([['low → high', ['x.ts imports y.ts']], ['high → low', ['y.ts imports x.ts']]]);
    expect(upwardEdges(edges, [['low'], ['high']], {})).toEqual(['low → high: x.ts imports y.ts']);
    expect(upwardEdges(edges, [['low'], ['high']], { 'low → high': 'known' })).toEqual([]);
  });
});

describe('src/ import graph', () => {
  const files = fileGraph();
  const edges = folderEdges(files);

  it('sees the pipeline (the parser is not silently finding nothing)', () => {
    expect(files.size).toBeGreaterThan(80);
    expect(edges.has('prune → methods')).toBe(true);
    expect(edges.has('cli → search')).toBe(true);
    for (const [f, deps] of files) for (const d of deps) expect(files.has(d), `${f} imports ${d}, which is not a file of src/`).toBe(true);
  });

  it('every folder has a floor', () => {
    const placed = new Set(FLOORS.flat());
    expect([...new Set([...files.keys()].map(folderOf))].filter((f) => !placed.has(f)).sort()).toEqual([]);
  });

  it('no import from a lower floor to a higher one', () => {
    expect(upwardEdges(edges, FLOORS, ALLOWED)).toEqual([]);
  });

  it('every allowed exception is still needed', () => {
    expect(Object.keys(ALLOWED).filter((k) => !edges.has(k))).toEqual([]);
  });

  it('no cycle between folders (the allowed upward edges aside)', () => {
    const g = new Map<string, string[]>();
    for (const k of edges.keys()) {
      if (k in ALLOWED) continue;
      const [a, b] = k.split(' → ') as [string, string];
      g.set(a, [...(g.get(a) ?? []), b]);
      if (!g.has(b)) g.set(b, []);
    }
    expect(cycles(g)).toEqual([]);
  });

  it('no cycle between files', () => {
    expect(cycles(files)).toEqual([]);
  });
});
