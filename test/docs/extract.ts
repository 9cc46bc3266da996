/** Extract the runnable code blocks (fenced as ```ts run) of a Markdown page, for the doc tests. */

export interface RunnableBlock {
  /** 1-based line of the opening fence. */
  line: number;
  code: string;
}

const OPEN = /^```(ts|typescript)\s+run\s*$/;

export function runnableBlocks(markdown: string): RunnableBlock[] {
  const lines = markdown.split(/\r?\n/);
  const blocks: RunnableBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!OPEN.test(lines[i].trim())) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i].trim() !== '```'; i++) body.push(lines[i]);
    if (i >= lines.length) throw new Error(`unclosed runnable block at line ${start + 1}`);
    blocks.push({ line: start + 1, code: body.join('\n') });
  }
  return blocks;
}

/** The package's entry points (package.json `exports`) and the source file each one is built from. */
export const ENTRY_POINTS: Readonly<Record<string, string>> = {
  'dsa-prune': 'src/index.ts',
  'dsa-prune/search': 'src/search/index.ts',
  'dsa-prune/distributed': 'src/search/distributed/index.ts',
  'dsa-prune/eval': 'src/eval/index.ts',
  'dsa-prune/report': 'src/report/index.ts',
  'dsa-prune/testing': 'src/testing/index.ts',
};

/** Point `dsa-prune` and `dsa-prune/<subpath>` imports at this repository's sources (paths under `repoRoot`). */
export function rewriteImports(code: string, repoRoot: string): string {
  return code.replace(/((?:from|import)\s+)(['"])(dsa-prune(?:\/[a-z]+)?)\2/g, (all, kw: string, _q: string, spec: string) => {
    const src = ENTRY_POINTS[spec];
    if (!src) throw new Error(`${spec} is not an entry point of the package (${Object.keys(ENTRY_POINTS).join(', ')})`);
    return `${kw}${JSON.stringify(`${repoRoot.replace(/\/$/, '')}/${src}`)}`;
  });
}
