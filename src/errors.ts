/**
 * Exit codes of the CLI: 0 ok, 1 unexpected failure, 2 bad input or refused request, 3 an output could not be written
 * (disk full, no permission; nothing was written), 130 aborted.
 */
export const EXIT = { ok: 0, failure: 1, badInput: 2, io: 3, aborted: 130 } as const;

/**
 * What went wrong, for a program to branch on (`e.code`); the message is for people and may change. Documented in
 * docs/api.md ("Errors"). A throw without a code gets one from its exit code: 2 → `invalid-input`, 3 →
 * `write-failed`, 130 → `aborted`, 1 → `internal`.
 */
export type DsaPruneErrorCode =
  /** An option, argument or value the caller passed is invalid (the generic exit-2 code). */
  | 'invalid-input'
  /** A file or folder that must exist does not (model folder, data file, checkpoint). */
  | 'not-found'
  /** The model folder or graph cannot be used (unreadable ONNX, unsupported layout, missing config). */
  | 'invalid-model'
  /** A data file is malformed (task data, JSON input, statistics cache), at the file and line given. */
  | 'invalid-data'
  /** A valid request dsa-prune does not do (yet). */
  | 'unsupported'
  /** Refused on purpose: writing into the model's own folder, over a non-empty folder, searching on evaluation data. */
  | 'refused'
  /** A computation could not finish (non-finite importance, a factorisation that fails at every damping). */
  | 'numerical'
  /** An output could not be written (disk full, no permission); nothing was written. */
  | 'write-failed'
  /** Aborted through an AbortSignal or Ctrl-C; the model / folder is unchanged. */
  | 'aborted'
  /** An optional dependency (ioredis, bullmq) is not installed. */
  | 'dependency-missing'
  /** Redis or a queue worker failed or cannot be reached. */
  | 'remote'
  /** Anything else: a bug, or a failure with no better code. */
  | 'internal';

/** Every code, in the order of the type (docs and tests check against this list). */
export const ERROR_CODES: readonly DsaPruneErrorCode[] = [
  'invalid-input', 'not-found', 'invalid-model', 'invalid-data', 'unsupported', 'refused', 'numerical', 'write-failed', 'aborted',
  'dependency-missing', 'remote', 'internal',
];

/** The CLI's exit code for an error code (when the throw does not give one). */
const EXIT_OF: Record<DsaPruneErrorCode, number> = {
  'invalid-input': EXIT.badInput, 'not-found': EXIT.badInput, 'invalid-model': EXIT.badInput, 'invalid-data': EXIT.badInput,
  unsupported: EXIT.badInput, refused: EXIT.badInput, numerical: EXIT.badInput, 'write-failed': EXIT.io, aborted: EXIT.aborted,
  'dependency-missing': EXIT.failure, remote: EXIT.failure, internal: EXIT.failure,
};

function codeOfExit(exitCode: number): DsaPruneErrorCode {
  if (exitCode === EXIT.io) return 'write-failed';
  if (exitCode === EXIT.aborted) return 'aborted';
  if (exitCode === EXIT.failure) return 'internal';
  return 'invalid-input';
}

/**
 * The one error type users see. `message` says what is wrong and where (file, layer, option); `hint` says what to do;
 * `code` says it to a program. The CLI prints `error: <message>` and the hint, without a stack trace, and exits with
 * `exitCode` (from the code unless given).
 */
export class DsaPruneError extends Error {
  readonly hint?: string;
  readonly code: DsaPruneErrorCode;
  readonly exitCode: number;
  constructor(message: string, options: { hint?: string; code?: DsaPruneErrorCode; exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'DsaPruneError';
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? (options.code ? EXIT_OF[options.code] : EXIT.badInput);
    this.code = options.code ?? codeOfExit(this.exitCode);
  }
}

export function isDsaPruneError(e: unknown): e is DsaPruneError {
  return e instanceof DsaPruneError;
}

/** The one abort error (code `aborted`, exit 130): `what` says what stopped, e.g. "calibration aborted". */
export function abortedError(what = 'aborted', hint?: string): DsaPruneError {
  return new DsaPruneError(what, { code: 'aborted', ...(hint !== undefined ? { hint } : {}) });
}

/** Throw abortedError(what) when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what = 'aborted', hint?: string): void {
  if (signal?.aborted) throw abortedError(what, hint);
}
