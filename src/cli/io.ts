/**
 * The CLI's view of the outside world. Commands write through a CliIo so tests can run them in-process and capture
 * everything they print.
 */
export interface CliIo {
  /** Write to standard output (results; with --json only JSON goes here). Include the newline yourself. */
  stdout(s: string): void;
  /** Write to standard error (progress, warnings, errors). Include the newline yourself. */
  stderr(s: string): void;
  /** True when stderr is a terminal (progress bars redraw in place); false in pipes, CI and tests. */
  isTTY: boolean;
  /** Aborted on Ctrl-C (SIGINT); long commands pass it down and stop early. Absent in tests unless given. */
  signal?: AbortSignal;
  /** Terminal width in columns (progress bar layout); defaults to 80. */
  columns?: number;
}

/** The real process: stdout/stderr streams, TTY detection from stderr. */
export function processIo(signal?: AbortSignal): CliIo {
  return {
    stdout: (s) => {
      process.stdout.write(s);
    },
    stderr: (s) => {
      process.stderr.write(s);
    },
    isTTY: Boolean(process.stderr.isTTY),
    columns: process.stderr.columns,
    signal,
  };
}

/** An in-memory CliIo for tests: collects output in `out` / `err`. */
export function memoryIo(options: { isTTY?: boolean; signal?: AbortSignal; columns?: number } = {}): CliIo & {
  out: string[];
  err: string[];
  readonly stdoutText: string;
  readonly stderrText: string;
} {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    stdout: (s) => {
      out.push(s);
    },
    stderr: (s) => {
      err.push(s);
    },
    isTTY: options.isTTY ?? false,
    signal: options.signal,
    columns: options.columns,
    get stdoutText() {
      return out.join('');
    },
    get stderrText() {
      return err.join('');
    },
  };
}
