/**
 * Chart of a per-linear allocation: one group of bars per block, one bar per role (q, k, v, o, gate, up, down, …),
 * the target sparsity as a reference line. Drawn by the report module's barChart (src/report/charts.ts).
 */
import { barChart } from './charts.js';

export interface ProfileLinear {
  name: string;
  block: number;
  role: string;
  /** Target (or realised) sparsity of the linear. */
  sparsity: number;
}

/** SVG of the per-linear profile (blocks on x, one series per role). */
export function linearProfileChart(linears: readonly ProfileLinear[], target: number, title = 'Per-linear sparsity'): string {
  const inBlocks = linears.filter((l) => l.block >= 0);
  const nBlocks = Math.max(0, ...inBlocks.map((l) => l.block + 1));
  const roles = [...new Set(inBlocks.map((l) => l.role))];
  const series = roles.map((role) => {
    const values = new Array<number>(nBlocks).fill(NaN);
    for (const l of inBlocks) if (l.role === role) values[l.block] = l.sparsity;
    return { name: role, values };
  });
  return barChart(series, {
    title, xLabel: 'block', yLabel: 'sparsity', categories: Array.from({ length: nBlocks }, (_, b) => String(b)),
    referenceLine: { value: target, label: `target ${(target * 100).toFixed(0)} %` }, yMin: 0, yMax: 1, width: 900,
  });
}
