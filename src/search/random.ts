/**
 * The search's seeded generator: xoshiro128** with an explicit, serialisable state, so a checkpoint can store where
 * the stream stands and a resumed search draws exactly the numbers an uninterrupted one would.
 * (src/data/text.ts has a closure-based mulberry32 for window sampling; this one exposes its state.)
 */

/** Mix a seed and any number of integers into a 32-bit value (splitmix32-style finaliser). */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    // fold the high part of non-32-bit inputs too
    h = (h + Math.floor(p / 4294967296)) | 0;
  }
  return h >>> 0;
}

export class Rng {
  private s: Uint32Array;

  /** A generator for `seed` (any number; equal seeds give equal streams). */
  constructor(seed: number) {
    this.s = new Uint32Array(4);
    let x = mixSeed(seed);
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if ((this.s[0]! | this.s[1]! | this.s[2]! | this.s[3]!) === 0) this.s[0] = 1;
  }

  /** The state, for checkpoints. */
  getState(): number[] {
    return Array.from(this.s);
  }

  static fromState(state: number[]): Rng {
    const r = new Rng(0);
    r.s.set(state.map((v) => v >>> 0));
    return r;
  }

  /** Next raw 32-bit value. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.int(items.length)]!;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
