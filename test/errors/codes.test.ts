/**
 * DsaPruneError codes: every code maps to the documented exit code, a throw without a code gets one from its exit
 * code, the one abort path gives `aborted` / 130, and docs/api.md lists exactly the codes of the type.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DsaPruneError, ERROR_CODES, EXIT, abortedError, throwIfAborted, type DsaPruneErrorCode } from '../../src/errors.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('DsaPruneError codes', () => {
  it('a code gives its exit code; an exit code gives its code; both can be given', () => {
    // Written out here, independently of the table in src/errors.ts.
    const want: Record<DsaPruneErrorCode, number> = {
      'invalid-input': 2, 'not-found': 2, 'invalid-model': 2, 'invalid-data': 2, unsupported: 2, refused: 2, numerical: 2,
      'write-failed': 3, aborted: 130, 'dependency-missing': 1, remote: 1, internal: 1,
    };
    expect([...ERROR_CODES].sort()).toEqual(Object.keys(want).sort());
    for (const code of ERROR_CODES) {
      const e = new DsaPruneError('x', { code });
      expect([e.code, e.exitCode]).toEqual([code, want[code]]);
    }
    expect(new DsaPruneError('x')).toMatchObject({ code: 'invalid-input', exitCode: 2 });
    expect(new DsaPruneError('x', { exitCode: EXIT.io })).toMatchObject({ code: 'write-failed', exitCode: 3 });
    expect(new DsaPruneError('x', { exitCode: EXIT.aborted })).toMatchObject({ code: 'aborted', exitCode: 130 });
    expect(new DsaPruneError('x', { exitCode: EXIT.failure })).toMatchObject({ code: 'internal', exitCode: 1 });
    expect(new DsaPruneError('x', { code: 'remote', exitCode: EXIT.badInput })).toMatchObject({ code: 'remote', exitCode: 2 });
  });

  it('the one abort path: abortedError / throwIfAborted', () => {
    expect(abortedError('search aborted', 'resume')).toMatchObject({ name: 'DsaPruneError', code: 'aborted', exitCode: EXIT.aborted, message: 'search aborted', hint: 'resume' });
    const ac = new AbortController();
    expect(() => throwIfAborted(ac.signal, 'x')).not.toThrow();
    ac.abort();
    let caught: unknown;
    try {
      throwIfAborted(ac.signal, 'calibration aborted');
    } catch (e) {
      caught = e;
    }
    expect(caught).toMatchObject({ code: 'aborted', message: 'calibration aborted' });
  });

  it('docs/api.md lists exactly these codes', () => {
    const md = readFileSync(path.join(repoRoot, 'docs/api.md'), 'utf8');
    const section = md.slice(md.indexOf('## Errors'), md.indexOf('## Types'));
    const listed = [...section.matchAll(/^\| `([a-z-]+)` \| [0-9]+ \|/gm)].map((m) => m[1]);
    expect(listed).toEqual([...ERROR_CODES]);
  });
});

describe('exit codes in src/', () => {
  it('no literal exit numbers: the CLI returns EXIT.*, errors name a code or EXIT.*, aborts use abortedError', () => {
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
    const bad: string[] = [];
    for (const f of files(path.join(repoRoot, 'src'))) {
      const rel = path.relative(repoRoot, f);
      readFileSync(f, 'utf8').split('\n').forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, '');
        if (/exitCode:\s*\d/.test(code) || /process\.exit\([^)]*\d/.test(code)) bad.push(`${rel}:${i + 1}: ${line.trim()}`);
        if (rel.startsWith(path.join('src', 'cli')) && /\breturn\s+\d+\s*;/.test(code)) bad.push(`${rel}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(bad).toEqual([]);
  });
});
