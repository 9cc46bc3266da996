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

/** Point `dsa-prune` / `dsa-prune/testing` imports at this repository's sources. */
export function rewriteImports(code: string, srcIndex: string, testingIndex: string): string {
  return code
    .replace(/from\s+(['"])dsa-prune\/testing\1/g, `from ${JSON.stringify(testingIndex)}`)
    .replace(/from\s+(['"])dsa-prune\1/g, `from ${JSON.stringify(srcIndex)}`)
    .replace(/import\s+(['"])dsa-prune\1/g, `import ${JSON.stringify(srcIndex)}`);
}
