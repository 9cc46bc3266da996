/**
 * The one dtype ↔ file-suffix table (src/model/dtypes.ts) against the installed transformers.js's own mapping, and
 * the file-name split every ONNX file of a folder goes through.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DTYPE_SUFFIX, FILE_SUFFIXES, SUFFIX_DTYPE, dtypeToSuffix } from '../../src/model/dtypes.js';
import { splitOnnxName } from '../../src/model/hook.js';
import { QUANT_SUFFIX } from '../../src/compress/files.js';

const tjsRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../node_modules/@huggingface/transformers');

describe('dtype ↔ file suffix', () => {
  it('is transformers.js 4.3\'s DEFAULT_DTYPE_SUFFIX_MAPPING, entry for entry', async () => {
    const version = (JSON.parse(readFileSync(path.join(tjsRoot, 'package.json'), 'utf8')) as { version: string }).version;
    expect(version.startsWith('4.3.')).toBe(true);
    const tjs = (await import(pathToFileURL(path.join(tjsRoot, 'src/utils/dtypes.js')).href)) as { DEFAULT_DTYPE_SUFFIX_MAPPING: Record<string, string> };
    expect({ ...DTYPE_SUFFIX }).toEqual({ ...tjs.DEFAULT_DTYPE_SUFFIX_MAPPING });
  });

  it('round-trips and splits file names (longest suffix first)', () => {
    for (const [d, s] of Object.entries(DTYPE_SUFFIX)) {
      expect(dtypeToSuffix(d)).toBe(s);
      expect(SUFFIX_DTYPE[s]).toBe(d);
      expect(splitOnnxName(`onnx/model${s}.onnx`)).toEqual({ base: 'model', suffix: s });
      expect(splitOnnxName(`decoder_model_merged${s}.onnx`)).toEqual({ base: 'decoder_model_merged', suffix: s });
    }
    expect(dtypeToSuffix('auto')).toBeUndefined();
    expect(dtypeToSuffix('toString')).toBeUndefined();
    expect(dtypeToSuffix(undefined)).toBeUndefined();
    expect(splitOnnxName('model_q8.onnx')).toEqual({ base: 'model_q8', suffix: '' }); // not a transformers.js suffix
    expect(splitOnnxName('_q4.onnx')).toEqual({ base: '_q4', suffix: '' }); // a suffix alone is a name
    expect(FILE_SUFFIXES.indexOf('_q4f16')).toBeLessThan(FILE_SUFFIXES.indexOf('_q4'));
    expect(QUANT_SUFFIX).toEqual({ q8: '_quantized', q4: '_q4' });
  });
});
