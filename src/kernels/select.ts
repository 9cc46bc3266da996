/**
 * Selection kernels on typed arrays: the k-th smallest value without a full sort (quickselect), and the
 * "first k of a stable ascending sort" cut that every pruning rule of the project reduces to.
 *
 * Order used everywhere: ascending by value, NaN last (as torch.sort), ties broken by the lowest index first
 * (as a stable sort). -0 and +0 compare equal.
 */

/** Anything the selection kernels can read. */
export type NumericArray = Float32Array | Float64Array;

/** The sort key of a value: NaN sorts last, as +Infinity (makes every comparison total). */
const key = (x: number): number => (x !== x ? Infinity : x);

/** Copy `values[start, start+len)` into `scratch[0, len)` as sort keys. */
function copySanitized(values: NumericArray, start: number, len: number, scratch: NumericArray): void {
  for (let i = 0; i < len; i++) scratch[i] = key(values[start + i]);
}

/**
 * In-place quickselect (Wirth / Hoare partition, median-of-three pivot): after the call `a[k]` holds the value
 * at position k of the ascending order of `a[lo, hi)`. `a` must not contain NaN. Expected O(n).
 */
export function quickselectInPlace(a: NumericArray, k: number, lo = 0, hi = a.length): number {
  if (k < lo || k >= hi) throw new RangeError(`quickselect: k=${k} outside [${lo}, ${hi})`);
  let l = lo;
  let r = hi - 1;
  while (l < r) {
    // median of three as the pivot value (keeps sorted and reverse-sorted inputs linear)
    const m = (l + r) >>> 1;
    let x0 = a[l];
    let x1 = a[m];
    const x2 = a[r];
    if (x0 > x1) { const t = x0; x0 = x1; x1 = t; }
    const x = x2 < x0 ? x0 : x2 > x1 ? x1 : x2;
    let i = l;
    let j = r;
    do {
      while (a[i] < x) i++;
      while (x < a[j]) j--;
      if (i <= j) {
        const t = a[i]; a[i] = a[j]; a[j] = t;
        i++; j--;
      }
    } while (i <= j);
    if (j < k) l = i;
    if (k < i) r = j;
  }
  return a[k];
}

/**
 * Value at 0-based position `k` of the ascending order of `values[start, start+len)` (NaN sorts last, as +Infinity).
 * `scratch` (length ≥ len) receives a permuted copy; `values` is not modified.
 */
export function kthSmallest(
  values: NumericArray,
  k: number,
  start = 0,
  len = values.length - start,
  scratch: NumericArray = new Float32Array(len),
): number {
  if (scratch.length < len) throw new RangeError(`kthSmallest: scratch has ${scratch.length} entries, need ${len}`);
  copySanitized(values, start, len, scratch);
  return quickselectInPlace(scratch, k, 0, len);
}

/**
 * Where the first `k` entries of a stable ascending sort end: every value `< value` is in, plus the first
 * `equalTaken` entries (lowest indices) equal to `value`. `value` is NaN when k = 0 (nothing selected).
 */
export interface StableCut {
  value: number;
  equalTaken: number;
}

/**
 * The cut selecting the first `k` entries of a stable ascending sort of `values[start, start+len)`
 * (ties: lowest index first), found with one quickselect and one counting pass instead of a sort.
 */
export function stableCut(
  values: NumericArray,
  k: number,
  start = 0,
  len = values.length - start,
  scratch: NumericArray = new Float32Array(len),
): StableCut {
  if (k <= 0) return { value: NaN, equalTaken: 0 };
  if (k > len) throw new RangeError(`stableCut: k=${k} > ${len} entries`);
  const v = kthSmallest(values, k - 1, start, len, scratch);
  let less = 0;
  for (let i = 0; i < len; i++) if (key(values[start + i]) < v) less++;
  return { value: v, equalTaken: k - less };
}

/**
 * Write `fill` into `out[outStart + i]` for the first `k` entries of a stable ascending sort of
 * `values[start, start+len)`: `fill = 1` marks a Uint8Array mask, `fill = 0` prunes a weight row in place.
 * Returns the number written (k clamped to [0, len]).
 */
export function setSmallest(
  values: NumericArray,
  k: number,
  out: Uint8Array | Float32Array,
  fill: number,
  start = 0,
  len = values.length - start,
  outStart = start,
  scratch?: NumericArray,
): number {
  if (k <= 0) return 0;
  if (k >= len) {
    out.fill(fill, outStart, outStart + len);
    return len;
  }
  const cut = stableCut(values, k, start, len, scratch);
  const v = cut.value;
  let eq = cut.equalTaken;
  for (let i = 0; i < len; i++) {
    const x = key(values[start + i]);
    if (x < v) out[outStart + i] = fill;
    else if (x === v && eq > 0) {
      out[outStart + i] = fill;
      eq--;
    }
  }
  return k;
}

/**
 * The `count` smallest of a short group `values[start, start+width)` by (value, index), written as group offsets
 * into `out[0, count)` in ascending index order. For N:M groups (width = M, a handful of entries): O(count·width).
 */
export function smallestInGroup(
  values: NumericArray,
  start: number,
  width: number,
  count: number,
  out: Int32Array,
): number {
  const c = Math.min(count, width);
  // repeated minimum: with a bit set of taken offsets; M ≤ 32 uses one integer, larger groups a slower path
  if (width <= 32) {
    let taken = 0;
    for (let t = 0; t < c; t++) {
      let best = -1;
      let bestV = Infinity;
      for (let i = 0; i < width; i++) {
        if (taken & (1 << i)) continue;
        const x = key(values[start + i]);
        if (best < 0 || x < bestV) {
          best = i;
          bestV = x;
        }
      }
      taken |= 1 << best;
    }
    let o = 0;
    for (let i = 0; i < width; i++) if (taken & (1 << i)) out[o++] = i;
    return c;
  }
  const mask = new Uint8Array(width);
  setSmallest(values, c, mask, 1, start, width, 0);
  let o = 0;
  for (let i = 0; i < width; i++) if (mask[i]) out[o++] = i;
  return c;
}

/** quickselectInPlace specialised to Float32Array (monomorphic: V8 keeps one fast element kind). No NaN allowed. */
function quickselectF32(a: Float32Array, k: number, lo: number, hi: number): number {
  let l = lo;
  let r = hi - 1;
  while (l < r) {
    const m = (l + r) >>> 1;
    let x0 = a[l]!;
    let x1 = a[m]!;
    const x2 = a[r]!;
    if (x0 > x1) { const t = x0; x0 = x1; x1 = t; }
    const x = x2 < x0 ? x0 : x2 > x1 ? x1 : x2;
    let i = l;
    let j = r;
    do {
      while (a[i]! < x) i++;
      while (x < a[j]!) j--;
      if (i <= j) {
        const t = a[i]!; a[i] = a[j]!; a[j] = t;
        i++; j--;
      }
    } while (i <= j);
    if (j < k) l = i;
    if (k < i) r = j;
  }
  return a[k]!;
}

/** Histogram of the top 11 bits of non-negative float32 keys (sign bit clear), and the keys' bit patterns. */
const radixHist = new Int32Array(2048);
let radixKeys = new Uint32Array(0);
const vBits = new Float32Array(1);
const vBitsU = new Uint32Array(vBits.buffer);

/**
 * setSmallest(values, k, out, 0, vStart, len, outStart, scratch) for float32 values: zero `out[outStart + i]` for the
 * first `k` entries of a stable ascending sort of `values[vStart, vStart+len)` (NaN last, ties: lowest index first).
 * Same result, bit for bit (test/kernels/select.test.ts), about 2× faster than the generic path on Wanda's rows:
 * non-negative float32 values order as their bit patterns, so one histogram pass over the top 11 bits finds the bin
 * holding the k-th value, and quickselect runs on that bin's entries only. A row with a negative value takes the
 * quickselect path.
 */
export function zeroSmallestF32(
  values: Float32Array, k: number, out: Float32Array, vStart: number, len: number, outStart: number, scratch: Float32Array,
): number {
  if (k <= 0) return 0;
  if (k >= len) {
    out.fill(0, outStart, outStart + len);
    return len;
  }
  if (radixKeys.length < len) radixKeys = new Uint32Array(len);
  const keys = radixKeys;
  const f = new Float32Array(keys.buffer, 0, len);
  const hist = radixHist;
  hist.fill(0);
  let negative = false;
  for (let i = 0; i < len; i++) {
    const x = values[vStart + i]!;
    f[i] = (x !== x ? Infinity : x) + 0; // NaN sorts last; + 0 turns -0 into +0 (they compare equal)
    const u = keys[i]!;
    if (u >= 0x80000000) {
      negative = true;
      break;
    }
    hist[u >>> 20]++;
  }
  let v: number;
  let less: number;
  if (negative) {
    for (let i = 0; i < len; i++) {
      const x = values[vStart + i]!;
      f[i] = (x !== x ? Infinity : x) + 0;
    }
    scratch.set(f);
    v = quickselectF32(scratch, k - 1, 0, len);
    // After the select every entry left of k-1 is ≤ v: the ones < v are all there.
    less = 0;
    for (let i = 0; i < k - 1; i++) if (scratch[i]! < v) less++;
  } else {
    let b = 0;
    let below = 0;
    while (below + hist[b]! < k) below += hist[b++]!;
    let c = 0;
    for (let i = 0; i < len; i++) if (keys[i]! >>> 20 === b) scratch[c++] = f[i]!;
    const r = k - 1 - below;
    v = quickselectF32(scratch, r, 0, c);
    less = below;
    for (let i = 0; i < r; i++) if (scratch[i]! < v) less++;
  }
  let eq = k - less;
  if (!negative) {
    // Branch-free: keys and v are non-negative float bits, so key < v ⇔ (key − v) < 0; the mask clears those entries
    // (+0, as out.fill(0) would write). Then the first `eq` entries equal to v (few: a predictable branch).
    const ob = new Uint32Array(out.buffer, out.byteOffset + outStart * 4, len);
    vBits[0] = v;
    const vb = vBitsU[0]!;
    for (let i = 0; i < len; i++) ob[i] &= ~((keys[i]! - vb) >> 31);
    for (let i = 0; i < len && eq > 0; i++) {
      if (keys[i] === vb) {
        ob[i] = 0;
        eq--;
      }
    }
    return k;
  }
  for (let i = 0; i < len; i++) {
    const x = f[i]!;
    if (x < v) out[outStart + i] = 0;
    else if (x === v && eq > 0) {
      out[outStart + i] = 0;
      eq--;
    }
  }
  return k;
}
