/**
 * Smaller on disk: prune-then-quantize (q8 / q4 variants transformers.js loads) and compressed sparse storage
 * (bitmask + non-zero values, plain ONNX). See docs/compression.md.
 */
export { quantizeModel, quantizeQ4, checkQ4BlockSize, checkQ4Options, q4HeadWeights, q4HeadBlockSize, DEFAULT_Q4_HEAD_BLOCK, halfPrecision, quantizeInt8, type QuantizeKind, type QuantizeOptions, type QuantizeReport, type Q4Packed } from './quantize.js';
export { sparseQ4Model, encodeSparseQ4, decodeSparseQ4, unpackZeroPoints, isSparseQuantized, SPARSE_Q_PREFIX, type SparseQ4Encoded, type SparseQuantOptions, type SparseQuantReport } from './sparse-q4.js';
export { compressModel, densifyModel, isCompressed, encodeSparse, decodeSparse, SPARSE_PREFIX, type CompressOptions, type CompressReport } from './sparse.js';
export {
  writeQuantized, compressFolder, postProcessSaved, quantizeKinds, floatOnnxFile, onnxFileSize, writeModelAtomic, QUANT_SUFFIX,
  type FileSize, type PostSaveOptions, type PostSaveResult,
} from './files.js';
export {
  gptqModel, gptqFromGram, gptqQuantizeLayer, packGptqQ4, q4GroupParams, q4Code, GPTQ_SWEEP_BLOCK, GPTQ_PERCDAMP,
  type GptqLayerOptions, type GptqLayerResult, type GptqModelOptions, type GptqModelResult, type GptqLinearReport,
} from './gptq.js';
