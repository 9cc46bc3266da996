import { describe, expect, it } from 'vitest';
import { defineCommand, describeRange, formatOptions, parseCommandArgs, parseNumberOption } from '../../src/cli/args.js';
import { DsaPruneError } from '../../src/errors.js';

const spec = defineCommand({
  name: 'prune',
  usage: 'dsa-prune prune <modelDir> --out <dir> [options]',
  positionals: { min: 1, max: 1, names: ['modelDir'] },
  options: {
    out: { type: 'string', short: 'o', valueName: '<dir>', description: 'output folder' },
    sparsity: { type: 'number', min: 0, max: 1, maxExclusive: true, default: 0.5, description: 'target sparsity' },
    nsamples: { type: 'integer', min: 1, default: 128, description: 'calibration sequences' },
    method: { type: 'string', choices: ['magnitude', 'wanda', 'sparsegpt'], default: 'wanda' },
    'dry-run': { type: 'boolean', description: 'print the plan' },
    task: { type: 'string', multiple: true },
  },
});

function thrown(fn: () => unknown): DsaPruneError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DsaPruneError);
    return e as DsaPruneError;
  }
  throw new Error('expected a DsaPruneError');
}

describe('parseCommandArgs', () => {
  it('parses typed values, defaults and common flags', () => {
    const a = parseCommandArgs(
      ['m', '-o', 'out', '--sparsity', '0.7', '--dry-run', '--json', '--threads', '2', '--task', 'copa', '--task', 'blimp:x'],
      spec,
    );
    expect(a.positionals).toEqual(['m']);
    expect(a.values.out).toBe('out');
    expect(a.values.sparsity).toBe(0.7);
    expect(a.values.nsamples).toBe(128);
    expect(a.values.method).toBe('wanda');
    expect(a.values['dry-run']).toBe(true);
    expect(a.values.task).toEqual(['copa', 'blimp:x']);
    expect(a.common).toEqual({ json: true, quiet: false, verbose: false, threads: 2 });
    expect(a.help).toBe(false);
  });

  it('absent options without default are undefined, booleans false', () => {
    const a = parseCommandArgs(['m'], spec);
    expect(a.values.out).toBeUndefined();
    expect(a.values.task).toBeUndefined();
    expect(a.values['dry-run']).toBe(false);
    expect(a.common.threads).toBeUndefined();
  });

  it('rejects out-of-range numbers with the range in the message', () => {
    expect(thrown(() => parseCommandArgs(['m', '--sparsity', '1.2'], spec)).message).toBe(
      '--sparsity must be a number in [0, 1), got 1.2',
    );
    expect(thrown(() => parseCommandArgs(['m', '--sparsity', '1'], spec)).message).toBe(
      '--sparsity must be a number in [0, 1), got 1',
    );
    expect(thrown(() => parseCommandArgs(['m', '--sparsity', 'abc'], spec)).message).toBe(
      '--sparsity must be a number in [0, 1), got "abc"',
    );
    expect(thrown(() => parseCommandArgs(['m', '--nsamples', '2.5'], spec)).message).toBe(
      '--nsamples must be an integer >= 1, got 2.5',
    );
    expect(thrown(() => parseCommandArgs(['m', '--threads', '0'], spec)).message).toMatch(/^--threads must be an integer in \[1, 1024\], got 0$/);
  });

  it('unknown options, missing values, bad choices, positional counts → exit 2 with usage hint', () => {
    const e = thrown(() => parseCommandArgs(['m', '--frobnicate'], spec));
    expect(e.message).toBe("unknown option '--frobnicate' for 'dsa-prune prune'");
    expect(e.exitCode).toBe(2);
    expect(e.hint).toContain('usage: dsa-prune prune <modelDir> --out <dir> [options]');
    expect(thrown(() => parseCommandArgs(['m', '--out'], spec)).message).toBe('--out needs a value (<dir>)');
    expect(thrown(() => parseCommandArgs(['m', '--method', 'foo'], spec)).message).toBe(
      '--method must be one of magnitude, wanda, sparsegpt, got "foo"',
    );
    expect(thrown(() => parseCommandArgs([], spec)).message).toBe("'dsa-prune prune' needs <modelDir>");
    expect(thrown(() => parseCommandArgs(['a', 'b'], spec)).message).toMatch(/at most 1 positional argument, got extra "b"/);
  });

  it('negative numbers as option values; --opt=value form', () => {
    const neg = defineCommand({ name: 'x', usage: 'x', options: { lambda: { type: 'number' }, shift: { type: 'integer' } } });
    expect(parseCommandArgs(['--lambda', '-0.1', '--shift', '-3'], neg).values).toEqual({ lambda: -0.1, shift: -3 });
    expect(parseCommandArgs(['--lambda=-.5'], neg).values.lambda).toBe(-0.5);
    expect(thrown(() => parseCommandArgs(['--lambda', '--json'], neg)).message).toBe('--lambda needs a value (<n>)');
  });

  it('--help / -h skips positional checks', () => {
    expect(parseCommandArgs(['--help'], spec).help).toBe(true);
    expect(parseCommandArgs(['-h'], spec).help).toBe(true);
  });

  it('formats ranges and options', () => {
    expect(describeRange({ min: 0, max: 1, maxExclusive: true })).toBe('[0, 1)');
    expect(describeRange({ min: 0, minExclusive: true })).toBe('> 0');
    expect(describeRange({})).toBe('');
    const text = formatOptions(spec.options);
    for (const flag of ['--out <dir>', '--sparsity <n>', '--dry-run', '--json', '--threads <n>', '-h, --help']) {
      expect(text).toContain(flag);
    }
    expect(text).toContain('default 0.5');
  });

  it('parseNumberOption accepts the bounds that are inclusive', () => {
    expect(parseNumberOption('--x', '0', { min: 0, max: 1, maxExclusive: true })).toBe(0);
    expect(parseNumberOption('--x', ' 1e-3 ', { min: 0 })).toBe(0.001);
    expect(() => parseNumberOption('--x', '', {})).toThrow('--x must be a number, got ""');
    expect(() => parseNumberOption('--x', 'Infinity', {})).toThrow(DsaPruneError);
  });
});
