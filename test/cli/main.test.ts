import { describe, expect, it } from 'vitest';
import { memoryIo } from '../../src/cli/io.js';
import { COMMANDS, main, type CommandModule } from '../../src/cli/main.js';
import { DsaPruneError, EXIT } from '../../src/errors.js';

const fake = (run: CommandModule['run'], help = 'fake help'): CommandModule => ({ run, help });

describe('dispatcher', () => {
  it('--help lists every command; no command → help on stderr, exit 2', async () => {
    const io = memoryIo();
    expect(await main(['--help'], io)).toBe(0);
    for (const name of Object.keys(COMMANDS)) expect(io.stdoutText).toContain(`  ${name}`);
    const io2 = memoryIo();
    expect(await main([], io2)).toBe(2);
    expect(io2.stderrText).toContain('usage: dsa-prune <command>');
  });

  it('unknown command → exit 2 with a hint', async () => {
    const io = memoryIo();
    expect(await main(['frob'], io)).toBe(2);
    expect(io.stderrText).toContain("error: unknown command 'frob'");
    expect(io.stderrText).toContain('hint: commands: inspect, prune');
  });

  it('missing command module → not available in this build', async () => {
    const io = memoryIo();
    expect(await main(['search', 'x'], io, { loadCommand: async () => undefined })).toBe(1);
    expect(io.stderrText).toContain("the 'search' command is not available in this build");
  });

  it('passes argv and io to the command and returns its exit code; <cmd> --help prints help', async () => {
    let seen: string[] = [];
    const load = async () =>
      fake(async (argv, io) => {
        seen = argv;
        io.stdout('ran\n');
        return 3;
      });
    const io = memoryIo();
    expect(await main(['prune', 'a', '--x'], io, { loadCommand: load })).toBe(3);
    expect(seen).toEqual(['a', '--x']);
    expect(io.stdoutText).toBe('ran\n');
    const io2 = memoryIo();
    expect(await main(['prune', '-h'], io2, { loadCommand: load })).toBe(0);
    expect(io2.stdoutText).toBe('fake help\n');
    const io3 = memoryIo();
    expect(await main(['help', 'prune'], io3, { loadCommand: load })).toBe(0);
    expect(io3.stdoutText).toBe('fake help\n');
  });

  it('DsaPruneError → error + hint, no stack, its exit code', async () => {
    const io = memoryIo();
    const code = await main(['eval', 'm'], io, {
      loadCommand: async () =>
        fake(async () => {
          throw new DsaPruneError('model folder m has no onnx/ directory', { hint: 'pass a transformers.js export' });
        }),
    });
    expect(code).toBe(2);
    expect(io.stderrText).toBe('error: model folder m has no onnx/ directory\nhint: pass a transformers.js export\n');
  });

  it('other errors → message + verbose hint, exit 1; with --verbose the stack', async () => {
    const boom = async () =>
      fake(async () => {
        throw new TypeError('boom');
      });
    const io = memoryIo();
    expect(await main(['eval'], io, { loadCommand: boom })).toBe(1);
    expect(io.stderrText).toBe('error: boom\n(run with --verbose for the stack)\n');
    const io2 = memoryIo();
    expect(await main(['eval', '--verbose'], io2, { loadCommand: boom })).toBe(1);
    expect(io2.stderrText).toMatch(/TypeError: boom\n\s+at /);
  });

  it('abort (Ctrl-C) reaches the command through io.signal and exits 130', async () => {
    const outer = new AbortController();
    const io = memoryIo({ signal: outer.signal });
    const code = await main(['search'], io, {
      loadCommand: async () =>
        fake(
          (_argv, cio) =>
            new Promise((_resolve, reject) => {
              cio.signal?.addEventListener('abort', () => reject(Object.assign(new Error('stopped'), { name: 'AbortError' })));
              setTimeout(() => outer.abort(), 5);
            }),
        ),
    });
    expect(code).toBe(EXIT.aborted);
    expect(io.stderrText).toContain('aborted');
  });

  it('the real loader finds a command module that exists (report)', async () => {
    const io = memoryIo();
    expect(await main(['report', '--help'], io)).toBe(0);
    expect(io.stdoutText).toContain('dsa-prune report');
  });
});
