/**
 * A small bzip2 decompressor (Node's zlib has none, and the project avoids extra dependencies): enough to read the
 * full HellaSwag `.txt.bz2` directly. Follows the format of bzip2 1.0 (decompress.c): Huffman +
 * MTF + RUNA/RUNB, inverse BWT, then the initial run-length stage; concatenated streams are supported, randomised
 * blocks (obsolete since 0.9.5) are not. Block CRCs are verified.
 */
import { DsaPruneError } from '../errors.js';

class BitReader {
  private byte = 0; // next byte to load
  private acc = 0; // the last `count` unread bits, right-aligned
  private count = 0;
  constructor(private readonly buf: Uint8Array, private readonly where: string) {}
  /** Read n ≤ 24 bits, MSB first. */
  bits(n: number): number {
    while (this.count < n) {
      if (this.byte >= this.buf.length) throw new DsaPruneError(`${this.where}: truncated bzip2 data`);
      this.acc = ((this.acc << 8) | this.buf[this.byte++]!) >>> 0;
      this.count += 8;
    }
    this.count -= n;
    const v = (this.acc >>> this.count) & ((1 << n) - 1);
    this.acc &= (1 << this.count) - 1;
    return v;
  }
  bit(): number {
    return this.bits(1);
  }
  /** 32 bits (CRCs). */
  u32(): number {
    return ((this.bits(16) << 16) | this.bits(16)) >>> 0;
  }
  alignToByte(): void {
    this.count -= this.count & 7;
    this.acc &= (1 << this.count) - 1;
  }
  get atEnd(): boolean {
    return this.byte >= this.buf.length && this.count < 8;
  }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** Growable byte output. */
class Out {
  buf = new Uint8Array(1 << 20);
  len = 0;
  push(b: number): void {
    if (this.len === this.buf.length) {
      const n = new Uint8Array(this.buf.length * 2);
      n.set(this.buf);
      this.buf = n;
    }
    this.buf[this.len++] = b;
  }
}

/** Decompress bzip2 data (`where` names the file in errors). */
export function bunzip2(data: Uint8Array, where = 'bzip2 data'): Uint8Array {
  const br = new BitReader(data, where);
  const out = new Out();
  const bad = (what: string) => new DsaPruneError(`${where}: corrupt bzip2 data (${what})`, { hint: 'check the file with `bzip2 -t`' });
  let streams = 0;
  while (!br.atEnd) {
    if (br.bits(8) !== 0x42 || br.bits(8) !== 0x5a || br.bits(8) !== 0x68) {
      if (streams > 0) break; // trailing padding after a complete stream
      throw bad('no "BZh" signature');
    }
    const level = br.bits(8) - 0x30;
    if (level < 1 || level > 9) throw bad('block size');
    const tt = new Uint32Array(level * 100000);
    for (;;) {
      const m1 = br.bits(24);
      const m2 = br.bits(24);
      const crc = br.u32();
      if (m1 === 0x177245 && m2 === 0x385090) break; // end of stream (crc = combined CRC)
      if (m1 !== 0x314159 || m2 !== 0x265359) throw bad('block signature');
      const n = decodeBlock(br, tt, bad);
      const origPtr = blockOrigPtr;
      // Inverse BWT (tt low byte = L column; high bits = link) then the initial run-length stage.
      const count = new Int32Array(256);
      for (let i = 0; i < n; i++) count[tt[i]! & 0xff]!++;
      for (let c = 0, sum = 0; c < 256; c++) {
        const k = count[c]!;
        count[c] = sum;
        sum += k;
      }
      for (let i = 0; i < n; i++) {
        const c = tt[i]! & 0xff;
        tt[count[c]!] = (tt[count[c]!]! | (i << 8)) >>> 0;
        count[c]!++;
      }
      if (origPtr >= n && n > 0) throw bad('origPtr');
      let tPos = n > 0 ? tt[origPtr]! >>> 8 : 0;
      let blockCrc = 0xffffffff;
      let last = -1;
      let run = 0;
      const emit = (b: number) => {
        out.push(b);
        blockCrc = ((blockCrc << 8) ^ CRC_TABLE[((blockCrc >>> 24) ^ b) & 0xff]!) >>> 0;
      };
      for (let i = 0; i < n; i++) {
        const e = tt[tPos]!;
        const b = e & 0xff;
        tPos = e >>> 8;
        if (run === 4) {
          for (let k = 0; k < b; k++) emit(last);
          run = 0;
          last = -1;
          continue;
        }
        if (b === last) run++;
        else {
          last = b;
          run = 1;
        }
        emit(b);
      }
      if ((~blockCrc >>> 0) !== crc) throw bad('block CRC mismatch');
    }
    br.alignToByte();
    streams++;
  }
  return out.buf.slice(0, out.len);
}

let blockOrigPtr = 0;

/** Decode one block's symbols into tt (low byte = BWT last column); returns its length, origPtr in blockOrigPtr. */
function decodeBlock(br: BitReader, tt: Uint32Array, bad: (w: string) => DsaPruneError): number {
  if (br.bit()) throw bad('randomised blocks are not supported');
  blockOrigPtr = br.bits(24);
  // Symbol map: which byte values occur.
  const used = br.bits(16);
  const seqToUnseq: number[] = [];
  for (let i = 0; i < 16; i++) {
    if (used & (0x8000 >>> i)) {
      const bits = br.bits(16);
      for (let j = 0; j < 16; j++) if (bits & (0x8000 >>> j)) seqToUnseq.push(i * 16 + j);
    }
  }
  if (seqToUnseq.length === 0) throw bad('empty symbol map');
  const alphaSize = seqToUnseq.length + 2;
  const nGroups = br.bits(3);
  if (nGroups < 2 || nGroups > 6) throw bad('number of Huffman groups');
  const nSelectors = br.bits(15);
  if (nSelectors < 1) throw bad('number of selectors');
  const mtfGroups = Array.from({ length: nGroups }, (_, i) => i);
  const selectors = new Uint8Array(nSelectors);
  for (let i = 0; i < nSelectors; i++) {
    let j = 0;
    while (br.bit()) {
      j++;
      if (j >= nGroups) throw bad('selector');
    }
    const v = mtfGroups[j]!;
    mtfGroups.splice(j, 1);
    mtfGroups.unshift(v);
    selectors[i] = v;
  }
  // Code lengths (delta coded) and canonical decode tables per group (as bzip2's hbCreateDecodeTables).
  const limit: Int32Array[] = [];
  const base: Int32Array[] = [];
  const perm: Int32Array[] = [];
  const minLens: number[] = [];
  for (let g = 0; g < nGroups; g++) {
    const len = new Uint8Array(alphaSize);
    let curr = br.bits(5);
    for (let s = 0; s < alphaSize; s++) {
      for (;;) {
        if (curr < 1 || curr > 20) throw bad('code length');
        if (!br.bit()) break;
        curr += br.bit() ? -1 : 1;
      }
      len[s] = curr;
    }
    let minLen = 32;
    let maxLen = 0;
    for (let s = 0; s < alphaSize; s++) {
      minLen = Math.min(minLen, len[s]!);
      maxLen = Math.max(maxLen, len[s]!);
    }
    const p = new Int32Array(alphaSize);
    let pp = 0;
    for (let l = minLen; l <= maxLen; l++) for (let s = 0; s < alphaSize; s++) if (len[s] === l) p[pp++] = s;
    const b = new Int32Array(23);
    for (let s = 0; s < alphaSize; s++) b[len[s]! + 1]!++;
    for (let i = 1; i < 23; i++) b[i] = b[i]! + b[i - 1]!;
    const lim = new Int32Array(23).fill(-1);
    let vec = 0;
    for (let i = minLen; i <= maxLen; i++) {
      vec += b[i + 1]! - b[i]!;
      lim[i] = vec - 1;
      vec <<= 1;
    }
    for (let i = minLen + 1; i <= maxLen; i++) b[i] = ((lim[i - 1]! + 1) << 1) - b[i]!;
    limit.push(lim);
    base.push(b);
    perm.push(p);
    minLens.push(minLen);
  }
  // Symbols: MTF indices with RUNA/RUNB zero-runs, until EOB.
  const EOB = alphaSize - 1;
  const mtf = new Uint8Array(256);
  for (let i = 0; i < 256; i++) mtf[i] = i;
  let n = 0;
  let sel = 0;
  let left = 0;
  let g = 0;
  let runLen = 0;
  let runPos = 0;
  const maxN = tt.length;
  for (;;) {
    if (left === 0) {
      if (sel >= nSelectors) throw bad('ran out of selectors');
      g = selectors[sel++]!;
      left = 50;
    }
    left--;
    const lim = limit[g]!;
    let zn = minLens[g]!;
    let zvec = br.bits(zn);
    while (zn <= 20 && zvec > lim[zn]!) {
      zn++;
      zvec = (zvec << 1) | br.bit();
    }
    if (zn > 20) throw bad('Huffman code');
    const sym = perm[g]![zvec - base[g]![zn]!]!;
    if (sym <= 1) {
      if (runPos === 0) {
        runPos = 1;
        runLen = 0;
      }
      runLen += runPos << sym; // RUNA adds runPos, RUNB 2·runPos
      runPos <<= 1;
      if (runLen > maxN) throw bad('run too long');
      continue;
    }
    if (runPos !== 0) {
      if (n + runLen > maxN) throw bad('block too long');
      const b = seqToUnseq[mtf[0]!]!;
      tt.fill(b, n, n + runLen);
      n += runLen;
      runPos = 0;
    }
    if (sym === EOB) break;
    const idx = sym - 1;
    const v = mtf[idx]!;
    mtf.copyWithin(1, 0, idx);
    mtf[0] = v;
    if (n >= maxN) throw bad('block too long');
    tt[n++] = seqToUnseq[v]!;
  }
  return n;
}
