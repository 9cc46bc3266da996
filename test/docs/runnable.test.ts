/**
 * Every ```ts run block of docs/guide.md and docs/api.md is executed here (imports of 'dsa-prune' point at src/),
 * with the repository root as the working directory, so the documented code cannot rot.
 */
import { describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { rewriteImports, runnableBlocks } from './extract.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const scratch = path.join(repoRoot, '.scratch', 'doctest');
const PAGES = ['docs/guide.md', 'docs/api.md'];
const T = 600_000;

describe('runnableBlocks (the extractor)', () => {
  it('finds only ```ts run blocks, with their lines, and rewrites package imports', () => {
    const md = ['# t', '```ts', 'skip()', '```', '```ts run', "import { a } from 'dsa-prune';", "import { b } from 'dsa-prune/testing';", '```', 'x', '```typescript run', 'two()', '```'].join('\n');
    const blocks = runnableBlocks(md);
    expect(blocks.map((b) => b.line)).toEqual([5, 10]);
    expect(blocks[1].code).toBe('two()');
    const code = rewriteImports(blocks[0].code, '/r');
    expect(code).toBe('import { a } from "/r/src/index.ts";\nimport { b } from "/r/src/testing/index.ts";');
    expect(rewriteImports("import 'dsa-prune';\nimport { c } from \"dsa-prune/search\";", '/r/')).toBe('import "/r/src/index.ts";\nimport { c } from "/r/src/search/index.ts";');
    expect(() => rewriteImports("import { d } from 'dsa-prune/nope';", '/r')).toThrow(/not an entry point/);
    expect(() => runnableBlocks('```ts run\nopen()')).toThrow(/unclosed/);
  });
});

for (const page of PAGES) {
  describe(page, () => {
    const md = readFileSync(path.join(repoRoot, page), 'utf8');
    const blocks = runnableBlocks(md);
    it('has runnable blocks', () => {
      expect(blocks.length).toBeGreaterThan(0);
    });
    for (const b of blocks) {
      it(`block at line ${b.line} runs`, { timeout: T }, async () => {
        mkdirSync(scratch, { recursive: true });
        const file = path.join(scratch, `${path.basename(page, '.md')}-${b.line}.ts`);
        writeFileSync(file, `${rewriteImports(b.code, repoRoot)}\nexport {};\n`);
        const cwd = process.cwd();
        process.chdir(repoRoot);
        try {
          await import(pathToFileURL(file).href);
        } finally {
          process.chdir(cwd);
        }
      });
    }
  });
}
