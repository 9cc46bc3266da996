/**
 * The one error type users see. `message` says what is wrong and where (file, layer, option); `hint` says what to do.
 * The CLI prints `error: <message>` and the hint, without a stack trace, and exits with `exitCode`.
 */
export class DsaPruneError extends Error {
  readonly hint?: string;
  readonly exitCode: number;
  constructor(message: string, options: { hint?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'DsaPruneError';
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? 2;
  }
}

/**
 * Exit codes of the CLI: 0 ok, 1 unexpected failure, 2 bad input or refused request, 3 an output could not be written
 * (disk full, no permission; nothing was written), 130 aborted.
 */
export const EXIT = { ok: 0, failure: 1, badInput: 2, io: 3, aborted: 130 } as const;

export function isDsaPruneError(e: unknown): e is DsaPruneError {
  return e instanceof DsaPruneError;
}
