/** Reports: the chart module (SVG), the HTML report and its input types. */
export {
  barChart,
  lineChart,
  table,
  escapeXml,
  formatNumber,
  niceTicks,
  logTicks,
  PALETTE,
  type BarSeries,
  type BarChartOptions,
  type LineSeries,
  type LineChartOptions,
  type ChartOptions,
  type Cell,
  type TableOptions,
} from './charts.js';
export { renderReport, blockSeries, searchSeries, type RenderOptions } from './html.js';
export { searchChart, type SearchChartInput } from './search-chart.js';
export { renderFrontier, type FrontierPageInput } from './frontier.js';
export { linearProfileChart, type ProfileLinear } from './profile-chart.js';
export {
  validatePrunedManifest,
  validateSearchResult,
  validateQuality,
  parseReportInput,
  type PrunedManifest,
  type SearchResult,
  type SearchCandidate,
  type QualityScores,
  type TaskScore,
  type ReportInput,
} from './types.js';
export { loadReportInput, writeReport, loadEvalJson, mergeExtras, defaultReportPath, type ReportExtras } from './load.js';
