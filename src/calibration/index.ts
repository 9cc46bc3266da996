/**
 * Calibration engine: per-linear input statistics (Σx² per feature, XᵀX) computed inside onnxruntime on per-block
 * sub-graphs, in the sequential protocol (pruned outputs feed the next block) or one-shot. See docs/calibration.md.
 */
export {
  runCalibration,
  denseStatistics,
  type CalibrationModel,
  type CalibrationOptions,
  type CalibrationReport,
  type BlockReport,
} from './runner.js';
export { planGraph, buildPrefix, buildBlock, blockOfNode, configureGramSlicing, configureSqReduction, gramSlices, type GraphPlan, type StatsInput, type SubgraphSpec, type BlockGraphOptions, type SqReduction } from './graph.js';
