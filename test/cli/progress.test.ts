import { describe, expect, it } from 'vitest';
import { memoryIo } from '../../src/cli/io.js';
import { createProgress, formatDuration } from '../../src/cli/progress.js';

describe('progress', () => {
  it('plain lines: phase changes and every 10% only', () => {
    const io = memoryIo({ isTTY: false });
    let t = 0;
    const p = createProgress(io, { now: () => t });
    for (let i = 0; i <= 100; i++) {
      t += 10;
      p.callback({ phase: 'calibrate', fraction: i / 100 });
    }
    p.callback({ phase: 'prune', block: 0, fraction: 0 });
    p.callback({ phase: 'prune', block: 0, fraction: 0.01 });
    p.done();
    const lines = io.stderrText.trim().split('\n');
    // 0%,10%,...,100% of calibrate = 11 lines, then 1 line for the prune phase start
    expect(lines.length).toBe(12);
    expect(lines[0]).toBe('calibrate 0%');
    expect(lines[5]).toMatch(/^calibrate 50% \(ETA 0:01\)$/);
    expect(lines[11]).toBe('prune block 0 0%');
    expect(io.stdoutText).toBe('');
  });

  it('TTY: redraws in place at most every 100 ms and ends the line', () => {
    const io = memoryIo({ isTTY: true, columns: 100 });
    let t = 0;
    const p = createProgress(io, { now: () => t });
    for (let i = 0; i <= 1000; i++) {
      t += 1; // 1 ms apart → ~10 redraws over 1 s
      p.callback({ phase: 'prune', block: Math.floor(i / 200), fraction: i / 1000 });
    }
    p.done();
    const redraws = io.err.filter((s) => s.startsWith('\r')).length;
    expect(redraws).toBeGreaterThanOrEqual(10);
    expect(redraws).toBeLessThanOrEqual(13);
    expect(io.stderrText.endsWith('\n')).toBe(true);
    const last = io.err.filter((s) => s.startsWith('\r')).at(-1) ?? '';
    expect(last).toContain('100%');
    expect(last).toContain('block 5');
    expect(last.length).toBeLessThanOrEqual(100);
  });

  it('silent with --quiet or --json', () => {
    for (const opts of [{ quiet: true }, { json: true }]) {
      const io = memoryIo({ isTTY: true });
      const p = createProgress(io, opts);
      p.callback({ phase: 'x', fraction: 0.5 });
      p.done();
      expect(io.err.length).toBe(0);
    }
  });

  it('formatDuration', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(75)).toBe('1:15');
    expect(formatDuration(3725)).toBe('1:02:05');
    expect(formatDuration(Number.NaN)).toBe('--:--');
  });
});

describe('progress with alternating phases', () => {
  it('plain: one line per phase per 10% step, ETA from the phase first start; a restarted phase prints again', () => {
    const io = memoryIo({ isTTY: false });
    let t = 0;
    const p = createProgress(io, { now: () => t });
    // 5 blocks: statistics then output per block, fraction = overall progress
    for (let b = 0; b < 5; b++) {
      for (const phase of ['statistics', 'output']) {
        for (let k = 0; k < 10; k++) {
          t += 100;
          p.callback({ phase, block: b, fraction: (b * 10 + k + 1) / 50 });
        }
      }
    }
    const lines = io.stderrText.trim().split('\n');
    for (const name of ['statistics', 'output']) {
      const mine = lines.filter((l) => l.startsWith(name));
      expect(mine.length).toBeLessThanOrEqual(11);
      expect(mine.length).toBeGreaterThanOrEqual(9);
    }
    // halfway: elapsed ≈ 5 s since the phase first appeared → ETA ≈ 5 s
    const half = lines.find((l) => l.startsWith('statistics') && / 5\d%/.test(l));
    expect(half).toMatch(/ETA 0:0[4-6]/);
    p.callback({ phase: 'statistics', fraction: 0 });
    expect(io.stderrText.trim().split('\n').at(-1)).toBe('statistics 0%');
  });
});

describe('progress on a terminal: phases and log lines', () => {
  it('alternating unfinished phases share one line; a finished phase stays; log() clears the bar first', () => {
    const io = memoryIo({ isTTY: true, columns: 100 });
    let t = 0;
    const p = createProgress(io, { now: () => t });
    p.callback({ phase: 'dense perplexity', fraction: 0.5 });
    t += 200;
    p.callback({ phase: 'dense perplexity', fraction: 1 });
    t += 200;
    p.callback({ phase: 'statistics', block: 0, fraction: 0.1 });
    t += 200;
    p.callback({ phase: 'output', block: 0, fraction: 0.2 });
    t += 200;
    p.callback({ phase: 'statistics', block: 1, fraction: 0.3 });
    p.log('pruned perplexity …');
    t += 200;
    p.callback({ phase: 'statistics', block: 1, fraction: 0.4 });
    p.done();
    const text = io.stderrText;
    // visible lines: split on \n, the last \r-segment of each is what stays on screen
    const visible = text.split('\n').map((l) => l.split('\r').at(-1)!.trimEnd()).filter((l) => l !== '');
    expect(visible.length).toBe(3);
    expect(visible[0]).toMatch(/^dense perplexity .* 100%/);
    expect(visible[1]).toBe('pruned perplexity …');
    expect(visible[2]).toMatch(/^statistics {2}block 1 .* 40%/);
  });
});
