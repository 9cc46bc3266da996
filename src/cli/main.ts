#!/usr/bin/env node
/**
 * `dsa-prune <command> [args]`: the CLI dispatcher.
 *
 * Each command lives in src/cli/commands/<name>.ts and exports
 * `run(argv: string[], io: CliIo): Promise<number>` (the exit code) and `help: string`.
 * Commands are loaded on demand by dynamic import, so a slow command's dependencies (onnxruntime, mathjs, bullmq)
 * cost nothing for the others; a command whose module is absent from the build is reported as unavailable.
 *
 * Errors: DsaPruneError → `error: <message>` and `hint: <hint>` on stderr, exit `e.exitCode`; any other error →
 * its message and "(run with --verbose for the stack)", exit 1. Ctrl-C aborts `io.signal` (and `currentSignal()`);
 * the command is expected to stop and the CLI exits 130. A second Ctrl-C exits immediately.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DsaPruneError, EXIT, abortedError, isDsaPruneError } from '../errors.js';
import { processIo, type CliIo } from './io.js';

/** The contract of a command module. */
export interface CommandModule {
  run(argv: string[], io: CliIo): Promise<number>;
  help: string;
}

/** The commands, in the order `dsa-prune --help` lists them, with a one-line summary each. */
export const COMMANDS = {
  inspect: 'list the prunable linears of a model (blocks, roles, shapes)',
  prune: 'prune a model (magnitude, Wanda, SparseGPT; uniform, OWL or DSA allocation) and save it',
  eval: 'measure perplexity and zero-shot task accuracy of a model',
  frontier: 'size vs perplexity of dense / pruned, plain / 4-bit / sparse 4-bit variants: what to ship',
  search: 'evolutionary search for a DSA allocation function',
  worker: 'serve search evaluations from a Redis queue (distributed search)',
  report: 'render a pruned folder or a search result as one offline HTML page',
  demo: 'prune the embedded stories260k model end to end (perplexity before/after + report)',
} as const;
export type CommandName = keyof typeof COMMANDS;

let activeSignal: AbortSignal | undefined;
/** The abort signal of the command currently running in this process (aborted on Ctrl-C), if any. */
export function currentSignal(): AbortSignal | undefined {
  return activeSignal;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The top-level help text. */
export function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, summary]) => `  ${name.padEnd(width)}  ${summary}`);
  return [
    `dsa-prune ${packageVersion()} — prune causal language models in transformers.js`,
    '',
    'usage: dsa-prune <command> [options]',
    '       dsa-prune <command> --help',
    '',
    'commands:',
    ...lines,
    '',
    'common options (every command):',
    '  --json           print only JSON on stdout (for scripts)',
    '  -q, --quiet      no progress output',
    '  -v, --verbose    more detail; stack traces of unexpected errors',
    '  --threads <n>    CPU threads for onnxruntime',
    '  -h, --help       help of the command',
    '',
    'exit codes: 0 ok, 1 unexpected failure, 2 bad input or refused request, 130 interrupted (Ctrl-C)',
    '',
    'start here:  dsa-prune demo',
    '',
  ].join('\n');
}

function isCommandName(name: string): name is CommandName {
  return Object.prototype.hasOwnProperty.call(COMMANDS, name);
}

class CommandUnavailable extends Error {}

/** Load a command module; throws CommandUnavailable when the module itself is not part of this build. */
async function loadCommand(name: CommandName): Promise<CommandModule> {
  // A computed specifier on purpose: bundlers leave it alone (tsup builds each command as its own entry) and a
  // missing command is a runtime condition, not a compile error.
  const specifier = `./commands/${name}.js`;
  let mod: Partial<CommandModule>;
  try {
    mod = (await import(specifier)) as Partial<CommandModule>;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    const missing = /Cannot find module '([^']+)'/.exec(err.message ?? '')?.[1] ?? '';
    if (
      (err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND') &&
      new RegExp(`commands/${name}\\.(js|ts|mjs)$`).test(missing.replace(/\\/g, '/'))
    ) {
      throw new CommandUnavailable(name);
    }
    throw e;
  }
  if (typeof mod.run !== 'function') {
    throw new Error(`command module '${name}' does not export run(argv, io)`);
  }
  return { run: mod.run, help: typeof mod.help === 'string' ? mod.help : `dsa-prune ${name}: no help available\n` };
}

function wantsHelp(args: string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

function wantsVerbose(args: string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--verbose' || a === '-v') return true;
  }
  return false;
}

function withNewline(s: string): string {
  return s.endsWith('\n') ? s : `${s}\n`;
}

/** Print an error the way the CLI does and return the exit code. */
export function reportError(e: unknown, io: CliIo, verbose: boolean): number {
  if (isDsaPruneError(e)) {
    io.stderr(`error: ${e.message}\n`);
    if (e.hint) io.stderr(`hint: ${e.hint.replace(/\n/g, '\n      ')}\n`);
    if (verbose && e.cause !== undefined) {
      const c = e.cause as { stack?: string };
      io.stderr(`cause: ${c.stack ?? String(e.cause)}\n`);
    }
    return e.exitCode;
  }
  const err = e as { message?: string; stack?: string } | undefined;
  const message = err?.message ?? String(e);
  if (verbose) {
    io.stderr(`error: ${err?.stack ?? message}\n`);
  } else {
    io.stderr(`error: ${message}\n(run with --verbose for the stack)\n`);
  }
  return EXIT.failure;
}

function isAbortError(e: unknown): boolean {
  const name = (e as { name?: string } | undefined)?.name;
  return name === 'AbortError';
}

/** Options of `main` (tests). */
export interface MainOptions {
  /**
   * Replaces the dynamic import of src/cli/commands/<name>.js (tests inject fake commands). Return `undefined`
   * for "not available in this build".
   */
  loadCommand?: (name: CommandName) => Promise<CommandModule | undefined>;
}

/**
 * Run the CLI in-process: `await main(['prune', 'models/x', '--out', 'y'], io)` returns the exit code.
 * Without `io`, writes to the real stdout/stderr and aborts on Ctrl-C (SIGINT).
 */
export async function main(argv: string[], io?: CliIo, options: MainOptions = {}): Promise<number> {
  const controller = new AbortController();
  const base = io ?? processIo();
  const onOuterAbort = () => controller.abort(base.signal?.reason);
  if (base.signal) {
    if (base.signal.aborted) controller.abort(base.signal.reason);
    else base.signal.addEventListener('abort', onOuterAbort, { once: true });
  }
  const cio: CliIo = {
    stdout: (s) => base.stdout(s),
    stderr: (s) => base.stderr(s),
    isTTY: base.isTTY,
    columns: base.columns,
    signal: controller.signal,
  };

  let sigints = 0;
  const onSigint = () => {
    sigints++;
    if (sigints === 1) {
      cio.stderr('\ninterrupted — stopping (Ctrl-C again to quit now)\n');
      controller.abort(abortedError('interrupted'));
    } else {
      process.exit(EXIT.aborted);
    }
  };
  const ownsProcess = io === undefined;
  if (ownsProcess) process.on('SIGINT', onSigint);

  const verbose = wantsVerbose(argv);
  const previousSignal = activeSignal;
  activeSignal = controller.signal;
  try {
    const [first, ...rest] = argv;
    if (first === undefined) {
      cio.stderr(mainHelp());
      return EXIT.badInput;
    }
    if (first === '--help' || first === '-h') {
      cio.stdout(mainHelp());
      return EXIT.ok;
    }
    if (first === '--version' || first === '-V') {
      cio.stdout(`${packageVersion()}\n`);
      return EXIT.ok;
    }
    let name = first;
    let args = rest;
    if (first === 'help') {
      if (rest[0] === undefined) {
        cio.stdout(mainHelp());
        return EXIT.ok;
      }
      name = rest[0];
      args = ['--help'];
    }
    if (!isCommandName(name)) {
      throw new DsaPruneError(`unknown command '${name}'`, {
        hint: `commands: ${Object.keys(COMMANDS).join(', ')}; run 'dsa-prune --help'`,
        exitCode: EXIT.badInput,
      });
    }
    let command: CommandModule;
    try {
      if (options.loadCommand) {
        const m = await options.loadCommand(name);
        if (!m) throw new CommandUnavailable(name);
        command = m;
      } else {
        command = await loadCommand(name);
      }
    } catch (e) {
      if (e instanceof CommandUnavailable) {
        throw new DsaPruneError(`the '${name}' command is not available in this build`, { code: 'unsupported',
          hint: `available here: ${availableCommands().join(', ') || 'none'}`,
          exitCode: EXIT.failure,
        });
      }
      throw e;
    }
    if (wantsHelp(args)) {
      cio.stdout(withNewline(command.help));
      return EXIT.ok;
    }
    const code = await command.run(args, cio);
    if (controller.signal.aborted) return EXIT.aborted;
    return code;
  } catch (e) {
    if (controller.signal.aborted) {
      // Whatever the command threw on its way out (AbortError, DsaPruneError 'aborted', …) is a consequence of Ctrl-C.
      if (verbose && !isAbortError(e) && e !== controller.signal.reason) reportError(e, cio, true);
      cio.stderr('aborted\n');
      return EXIT.aborted;
    }
    return reportError(e, cio, verbose);
  } finally {
    activeSignal = previousSignal;
    if (ownsProcess) process.off('SIGINT', onSigint);
    base.signal?.removeEventListener('abort', onOuterAbort);
  }
}

/** The commands whose module files are present next to this file (.js in a build, .ts from source). */
export function availableCommands(): CommandName[] {
  return (Object.keys(COMMANDS) as CommandName[]).filter((name) =>
    ['js', 'ts', 'mjs'].some((ext) => existsSync(fileURLToPath(new URL(`./commands/${name}.${ext}`, import.meta.url)))),
  );
}

function invokedDirectly(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return pathToFileURL(realpathSync(entry)).href === pathToFileURL(realpathSync(fileURLToPath(import.meta.url))).href;
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  // `dsa-prune … | head`: a closed pipe is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.ok);
  });
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Leave once stdout is flushed, even if a library keeps a handle open (onnxruntime threads, Redis sockets).
      process.stdout.write('', () => {
        setTimeout(() => process.exit(code), 500).unref();
      });
    },
    (e: unknown) => {
      process.stderr.write(`error: ${String(e)}\n`);
      process.exitCode = EXIT.failure;
    },
  );
}
