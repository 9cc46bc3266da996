/**
 * A memory trace for the benches: `mark(label)` records /proc/self/status (VmRSS, VmHWM, RssAnon, RssFile) and
 * process.memoryUsage() (rss, heapTotal, heapUsed, external, arrayBuffers) at a phase change; a sampler (every `intervalMs`,
 * whenever the event loop turns, e.g. while onnxruntime runs) keeps the highest VmRSS seen in each phase with its
 * composition. VmHWM only grows, so the phase in which it last grew is the phase of the peak; the sampler says what
 * the resident set was made of near it. MiB throughout. Linux only (elsewhere the /proc fields are 0).
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';

export interface MemSample {
  /** Seconds since the trace started. */
  t: number;
  label: string;
  vmRSS: number;
  vmHWM: number;
  rssAnon: number;
  rssFile: number;
  rss: number;
  /** V8 heap committed (heapTotal) and used. */
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

const MiB = 2 ** 20;

/** VmRSS, VmHWM, RssAnon, RssFile of this process (MiB; 0 when /proc is absent). */
export function procStatus(): { vmRSS: number; vmHWM: number; rssAnon: number; rssFile: number } {
  let text = '';
  try {
    text = readFileSync('/proc/self/status', 'utf8');
  } catch {
    // not Linux
  }
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) / 1024;
  return { vmRSS: kb('VmRSS'), vmHWM: kb('VmHWM'), rssAnon: kb('RssAnon'), rssFile: kb('RssFile') };
}

export function sample(label: string, t0: number): MemSample {
  const m = process.memoryUsage();
  return {
    t: (performance.now() - t0) / 1000, label, ...procStatus(),
    rss: m.rss / MiB, heapTotal: m.heapTotal / MiB, heapUsed: m.heapUsed / MiB, external: m.external / MiB, arrayBuffers: m.arrayBuffers / MiB,
  };
}

export class MemTrace {
  readonly marks: MemSample[] = [];
  /** Per phase (the label of the last mark), the sample with the highest VmRSS, marks and sampler together. */
  readonly highest = new Map<string, MemSample>();
  private readonly t0 = performance.now();
  private phase = 'start';
  private timer?: NodeJS.Timeout;

  /** `live`: a file each mark is appended to as a JSON line when it is made (for a run that may not finish). */
  constructor(intervalMs = 20, private readonly live?: string) {
    if (intervalMs > 0) {
      this.timer = setInterval(() => this.keep(sample(this.phase, this.t0)), intervalMs);
      this.timer.unref();
    }
  }

  private keep(s: MemSample): void {
    const h = this.highest.get(s.label);
    if (!h || s.vmRSS > h.vmRSS) this.highest.set(s.label, s);
  }

  mark(label: string): MemSample {
    // The phase that ends here may have peaked since its last sample: its end state is one more sample of it.
    this.keep(sample(this.phase, this.t0));
    const s = sample(label, this.t0);
    this.marks.push(s);
    if (this.live) appendFileSync(this.live, JSON.stringify({ ...s, highestOfPrevious: this.highest.get(this.phase) }) + '\n');
    this.phase = label;
    this.keep(s);
    return s;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.mark('end');
  }

  /** The marks whose phase raised VmHWM (the high-water mark at the next mark is higher), largest rise first. */
  rises(): { phase: string; from: number; to: number; at: MemSample | undefined }[] {
    const out: { phase: string; from: number; to: number; at: MemSample | undefined }[] = [];
    for (let i = 0; i + 1 < this.marks.length; i++) {
      const a = this.marks[i]!;
      const b = this.marks[i + 1]!;
      if (b.vmHWM > a.vmHWM) out.push({ phase: a.label, from: a.vmHWM, to: b.vmHWM, at: this.highest.get(a.label) });
    }
    return out.sort((x, y) => y.to - x.to);
  }

  write(file: string): void {
    writeFileSync(file, JSON.stringify({ marks: this.marks, highest: [...this.highest.values()] }) + '\n');
  }
}
