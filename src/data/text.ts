/**
 * Text → token ids → windows: the one tokenization/windowing path shared by perplexity and calibration, following
 * the reference protocol (docs/evaluation.md): the whole text is tokenized as ONE string with the
 * tokenizer's defaults (post-processor included, so a Llama tokenizer adds one BOS at the very start), windows are
 * cut from that single id stream, and no BOS is inserted per window.
 */
import { readFile } from 'node:fs/promises';
import { DsaPruneError } from '../errors.js';

/**
 * The part of a transformers.js tokenizer this module needs (`PreTrainedTokenizer` satisfies it).
 * `add_special_tokens` defaults to true (the tokenizer.json post-processor runs).
 */
export interface TextTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): number[];
}

/** Tokenize `text` as one string with the tokenizer defaults. Ids are returned as an Int32Array. */
export function tokenizeText(tokenizer: TextTokenizer, text: string): Int32Array {
  return Int32Array.from(tokenizer.encode(text));
}

/**
 * Read a UTF-8 text file. Throws DsaPruneError naming the path when the file is missing, unreadable, empty
 * (or only whitespace), or not valid UTF-8. A leading BOM is removed.
 */
export async function readTextFile(path: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new DsaPruneError(`text file not found: ${path}`, { code: 'not-found', hint: 'check the path (relative paths are resolved from the current directory)', cause: e });
    }
    if (code === 'EISDIR') {
      throw new DsaPruneError(`expected a text file but ${path} is a directory`, { code: 'invalid-input', hint: 'pass the path of a .txt file', cause: e });
    }
    throw new DsaPruneError(`cannot read text file ${path}: ${(e as Error).message}`, { cause: e });
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new DsaPruneError(`text file ${path} is not valid UTF-8`, { code: 'invalid-data',
      hint: 'convert it to UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or pass a plain-text file',
      cause: e,
    });
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim().length === 0) {
    throw new DsaPruneError(`text file ${path} is empty`, { code: 'invalid-data', hint: 'pass a file with some text in it' });
  }
  return text;
}

/** Options of takeWindows. */
export interface TakeWindowsOptions {
  /**
   * Absent: the first `n` non-overlapping windows from the start (the reference protocol).
   * Given: `n` distinct non-overlapping window slots drawn at random with this seed (reproducible).
   */
  seed?: number;
  /** Words used in the "too little text" error (e.g. "calibration"); default "text". */
  purpose?: string;
}

/**
 * `n` windows of `seqlen` tokens as one contiguous Int32Array [n × seqlen] (row-major).
 * Throws DsaPruneError saying how many tokens are needed vs present when the text is too short.
 */
export function takeWindows(ids: ArrayLike<number>, seqlen: number, n: number, options: TakeWindowsOptions = {}): Int32Array {
  if (!Number.isInteger(seqlen) || seqlen < 2) {
    throw new DsaPruneError(`seqlen must be an integer ≥ 2, got ${seqlen}`);
  }
  if (!Number.isInteger(n) || n < 1) throw new DsaPruneError(`number of windows must be an integer ≥ 1, got ${n}`);
  const slots = Math.floor(ids.length / seqlen);
  if (slots < n) {
    const what = options.purpose ?? 'text';
    throw new DsaPruneError(
      `not enough ${what}: ${n} windows of ${seqlen} tokens need ${n * seqlen} tokens, the text has ${ids.length}`,
      { hint: `use a longer text, fewer windows (at most ${slots}) or a shorter seqlen` },
    );
  }
  let starts: number[];
  if (options.seed === undefined) {
    starts = Array.from({ length: n }, (_, i) => i * seqlen);
  } else {
    // Partial Fisher–Yates over the slot indices with a seeded generator: n distinct, non-overlapping windows.
    const rand = mulberry32(options.seed);
    const idx = Array.from({ length: slots }, (_, i) => i);
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(rand() * (slots - i));
      const t = idx[i]!;
      idx[i] = idx[j]!;
      idx[j] = t;
    }
    starts = idx.slice(0, n).map((s) => s * seqlen);
  }
  const out = new Int32Array(n * seqlen);
  for (let w = 0; w < n; w++) {
    const s = starts[w]!;
    for (let t = 0; t < seqlen; t++) out[w * seqlen + t] = ids[s + t]!;
  }
  return out;
}

/** Number of complete non-overlapping windows of `seqlen` in `tokens` tokens (the remainder is dropped). */
export function countWindows(tokens: number, seqlen: number): number {
  return Math.floor(tokens / seqlen);
}

/** Small deterministic PRNG (mulberry32): uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
