/**
 * The one dtype ↔ ONNX file-suffix table: transformers.js 4.3's DEFAULT_DTYPE_SUFFIX_MAPPING
 * (@huggingface/transformers src/utils/dtypes.js), so `onnx/model<suffix>.onnx` means here what it means to
 * `from_pretrained(dir, { dtype })`. test/model/dtypes.test.ts compares it with the installed transformers.js.
 */
export const DTYPE_SUFFIX = {
  fp32: '',
  fp16: '_fp16',
  int8: '_int8',
  uint8: '_uint8',
  q8: '_quantized',
  q4: '_q4',
  q2: '_q2',
  q1: '_q1',
  q4f16: '_q4f16',
  q2f16: '_q2f16',
  q1f16: '_q1f16',
  bnb4: '_bnb4',
} as const;

/** A transformers.js dtype with a file of its own (`auto` is resolved by transformers.js, not a file). */
export type ModelDtype = keyof typeof DTYPE_SUFFIX;

/** File suffix → dtype. */
export const SUFFIX_DTYPE: Readonly<Record<string, ModelDtype>> = Object.fromEntries(
  Object.entries(DTYPE_SUFFIX).map(([d, s]) => [s, d as ModelDtype]),
);

/** The file suffix of a dtype (`undefined` for an unknown dtype or none given). */
export function dtypeToSuffix(dtype: string | undefined): string | undefined {
  return dtype !== undefined && Object.hasOwn(DTYPE_SUFFIX, dtype) ? DTYPE_SUFFIX[dtype as ModelDtype] : undefined;
}

/** The non-empty suffixes, longest first (so `_q4f16` is tried before `_q4` when splitting a file name). */
export const FILE_SUFFIXES: readonly string[] = Object.values(DTYPE_SUFFIX).filter((s) => s !== '').sort((a, b) => b.length - a.length);
