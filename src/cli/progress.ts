/**
 * Progress output for long commands, driven by a ProgressCallback (src/types.ts).
 *
 * - On a terminal: one line on stderr, redrawn in place (at most 10 times a second):
 *   `prune  block 3  [██████░░░░░░░░]  42%  ETA 0:12`.
 * - Otherwise (pipes, CI, logs): plain lines, when a phase first shows up and at each of its 10% steps.
 * - Silent with --quiet or --json.
 *
 * ```ts
 * const progress = createProgress(io, args.common);
 * await pruneModel(model, { onProgress: progress.callback });
 * progress.done();
 * ```
 */
import type { Progress, ProgressCallback } from '../types.js';
import type { CliIo } from './io.js';

export interface ProgressOptions {
  /** No output at all (--quiet). */
  quiet?: boolean;
  /** No output at all (--json keeps stderr free of chatter as well). */
  json?: boolean;
  /** Minimum milliseconds between two redraws of the terminal bar (default 100 = 10/s). */
  minIntervalMs?: number;
  /** Clock in milliseconds (tests inject one). */
  now?: () => number;
}

export interface ProgressReporter {
  /** Pass this to the long operation. */
  callback: ProgressCallback;
  /** Finish the output (ends the terminal line). Safe to call more than once. */
  done(): void;
  /** Print an informational line on stderr without breaking the bar (silent with --quiet / --json). */
  log(line: string): void;
}

/** Format seconds as m:ss or h:mm:ss. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

function clamp01(x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
}

export function createProgress(io: CliIo, options: ProgressOptions = {}): ProgressReporter {
  const silent = options.quiet === true || options.json === true;
  if (silent) return { callback: () => {}, done: () => {}, log: () => {} };
  const now = options.now ?? (() => performance.now());
  const minInterval = options.minIntervalMs ?? 100;

  let phase: string | undefined;
  let phaseStart = 0;
  // Per phase name: when it started and the last fraction seen (a phase that comes back with a lower fraction is a
  // new run of it: its clock and 10 % steps restart).
  const phaseClock = new Map<string, { start: number; fraction: number }>();
  let lastDraw = Number.NEGATIVE_INFINITY;
  const decilesByPhase = new Map<string, number>();
  let lineOpen = false;
  let lastLength = 0;
  let pending: Progress | undefined;
  let lastFraction = 0;

  const eta = (fraction: number): string => {
    if (fraction <= 0) return 'ETA --:--';
    if (fraction >= 1) return `${formatDuration((now() - phaseStart) / 1000)}`;
    const elapsed = (now() - phaseStart) / 1000;
    return `ETA ${formatDuration((elapsed * (1 - fraction)) / fraction)}`;
  };

  const describe = (p: Progress): string => {
    const parts = [p.phase];
    if (p.block !== undefined) parts.push(`block ${p.block}`);
    return parts.join('  ');
  };

  const drawTTY = (p: Progress): void => {
    const f = clamp01(p.fraction);
    const pct = `${Math.floor(f * 100)}%`.padStart(4);
    const head = describe(p);
    const tail = `${pct}  ${eta(f)}${p.message ? `  ${p.message}` : ''}`;
    const columns = io.columns && io.columns > 20 ? io.columns : 80;
    const barWidth = Math.max(10, Math.min(30, columns - head.length - tail.length - 8));
    const filled = Math.round(f * barWidth);
    let line = `${head}  [${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}] ${tail}`;
    if (line.length > columns - 1) line = line.slice(0, columns - 1);
    const pad = lastLength > line.length ? ' '.repeat(lastLength - line.length) : '';
    io.stderr(`\r${line}${pad}`);
    lastLength = line.length;
    lineOpen = true;
    lastDraw = now();
    pending = undefined;
  };

  const endLine = (): void => {
    if (lineOpen) {
      io.stderr('\n');
      lineOpen = false;
      lastLength = 0;
    }
  };

  const callback: ProgressCallback = (p) => {
    const f = clamp01(p.fraction);
    const newPhase = p.phase !== phase;
    const clock = phaseClock.get(p.phase);
    if (!clock || f < clock.fraction) {
      phaseClock.set(p.phase, { start: now(), fraction: f });
      decilesByPhase.delete(p.phase);
    } else clock.fraction = f;
    phaseStart = phaseClock.get(p.phase)!.start;
    if (newPhase) {
      if (io.isTTY && pending) drawTTY(pending);
      // Keep a finished phase on screen; phases that alternate unfinished (statistics / output per block) share
      // one line, redrawn in place.
      if (io.isTTY && lastFraction >= 0.999) endLine();
      phase = p.phase;
    }
    lastFraction = f;
    if (io.isTTY) {
      if (newPhase || f >= 1 || now() - lastDraw >= minInterval) drawTTY(p);
      else pending = p;
      return;
    }
    // Plain lines: the first time a phase shows up, then each time it passes a new 10 % step. Phases that alternate
    // (statistics / output per block) do not print a line on every switch.
    const decile = Math.floor(f * 10 + 1e-9);
    const seen = decilesByPhase.get(p.phase);
    if (seen === undefined || decile > seen) {
      decilesByPhase.set(p.phase, decile);
      const where = p.block !== undefined ? ` block ${p.block}` : '';
      const msg = p.message ? ` ${p.message}` : '';
      io.stderr(`${p.phase}${where} ${Math.floor(f * 100)}%${f > 0 && f < 1 ? ` (${eta(f)})` : ''}${msg}\n`);
    }
  };

  return {
    callback,
    done: () => {
      if (io.isTTY && pending) drawTTY(pending);
      endLine();
    },
    log: (line) => {
      if (io.isTTY && lineOpen) {
        io.stderr(`\r${' '.repeat(lastLength)}\r`);
        lineOpen = false;
        lastLength = 0;
      }
      io.stderr(line.endsWith('\n') ? line : `${line}\n`);
      // the bar comes back with the next update
      lastDraw = Number.NEGATIVE_INFINITY;
    },
  };
}
