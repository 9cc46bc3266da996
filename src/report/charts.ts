/**
 * The project's one chart module: pure functions returning self-contained SVG (or HTML) strings.
 * No dependencies, no scripts, no external URLs, no ids (several charts can share one page), deterministic output
 * (same input → same bytes). Values show on hover through SVG `<title>` elements.
 *
 * ```ts
 * import { barChart, lineChart } from 'dsa-prune/report';
 * const svg = barChart([{ name: 'uniform', values: [0.5, 0.5] }, { name: 'OWL', values: [0.45, 0.55] }],
 *   { title: 'Sparsity per block', xLabel: 'block', yLabel: 'sparsity' });
 * ```
 */

/** Okabe–Ito colour-blind-safe palette (black left out), then a few extra distinct colours. */
export const PALETTE = [
  '#0072B2', '#E69F00', '#009E73', '#CC79A7', '#D55E00', '#56B4E9', '#F0E442',
  '#7F3C8D', '#11A579', '#3969AC', '#F2B701', '#E73F74',
] as const;

/** Escape text for XML/HTML content and double- or single-quoted attributes. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;',
  );
}

/** Short, deterministic number text: up to `digits` significant digits, no trailing zeros, no `-0`. */
export function formatNumber(v: number, digits = 4): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '-∞';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return v.toExponential(Math.max(0, digits - 1)).replace(/\.?0+e/, 'e');
  const s = v.toPrecision(digits);
  const t = s.includes('.') ? s.replace(/\.?0+$/, '') : s;
  return t === '-0' ? '0' : t;
}

/** Coordinate text: 2 decimals, trimmed. */
function c(v: number): string {
  const r = Math.round(v * 100) / 100;
  return (Object.is(r, -0) ? 0 : r).toString();
}

/** "Nice" tick values covering [min, max] with about `count` steps (1, 2, 5 × 10^k). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (max < min) [min, max] = [max, min];
  if (max === min) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const start = Math.floor(min / step + 1e-9) * step;
  const ticks: number[] = [];
  for (let i = 0; ; i++) {
    const t = start + i * step;
    // round away binary noise (0.30000000000000004)
    const rounded = Number.parseFloat(t.toPrecision(12));
    ticks.push(Object.is(rounded, -0) ? 0 : rounded);
    if (t >= max - step * 1e-9) break;
    if (i > 1000) break;
  }
  return ticks;
}

/** Tick values for a log axis over [min, max] (min > 0): powers of ten, plus 2× and 5× when the range is short. */
export function logTicks(min: number, max: number): number[] {
  if (!(min > 0) || !(max > 0)) return [];
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const decades = hi - lo;
  const mults = decades <= 1 ? [1, 2, 3, 5, 7] : decades <= 3 ? [1, 2, 5] : [1];
  const out: number[] = [];
  for (let e = lo; e <= hi; e++) {
    for (const m of mults) {
      const v = Number.parseFloat((m * 10 ** e).toPrecision(12));
      if (v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9)) out.push(v);
    }
  }
  if (out.length < 2) return [min, max];
  return out;
}

/** Common layout options of both charts. */
export interface ChartOptions {
  /** Title drawn above the plot (also the SVG's accessible label). */
  title?: string;
  /** Label under the x axis. */
  xLabel?: string;
  /** Label left of the y axis (rotated). */
  yLabel?: string;
  /** Total width in px (default 760). */
  width?: number;
  /** Total height in px (default 340). */
  height?: number;
  /** Fixed lower / upper end of the y axis (defaults: from the data; bar charts include 0). */
  yMin?: number;
  yMax?: number;
  /** Text of a value in tooltips and tick labels (default formatNumber). */
  format?: (v: number) => string;
}

/** One series of a grouped bar chart: one value per category (NaN / ±∞ are drawn as a '×' marker, not a bar). */
export interface BarSeries {
  name: string;
  values: ArrayLike<number>;
  /** CSS colour (default: the palette in order). */
  color?: string;
}

export interface BarChartOptions extends ChartOptions {
  /** Category labels (default: 0, 1, 2, … — block indices). */
  categories?: string[];
  /** Reference line drawn across the plot, e.g. the global target sparsity. */
  referenceLine?: { value: number; label: string };
}

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function frame(o: ChartOptions, legendRows: number): Frame {
  const width = Math.max(200, o.width ?? 760);
  const height = Math.max(160, o.height ?? 340);
  const top = (o.title ? 30 : 10) + legendRows * 18 + 6;
  const left = o.yLabel ? 64 : 48;
  const bottom = height - (o.xLabel ? 44 : 28);
  return { width, height, left, right: width - 16, top, bottom };
}

function svgOpen(f: Frame, o: ChartOptions, kind: string): string[] {
  const label = o.title ?? kind;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" class="chart ${kind}" viewBox="0 0 ${f.width} ${f.height}" width="${f.width}" height="${f.height}" role="img" aria-label="${escapeXml(label)}" font-family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" font-size="11">`,
    `<rect class="background" x="0" y="0" width="${f.width}" height="${f.height}" fill="#ffffff"/>`,
    ...(o.title
      ? [`<text class="title" x="${c(f.width / 2)}" y="19" text-anchor="middle" font-size="14" font-weight="600" fill="#222">${escapeXml(o.title)}</text>`]
      : []),
  ];
}

/** Legend entries laid out in rows that fit the width; returns the SVG and the number of rows. */
function legend(
  items: { name: string; color: string; shape: 'rect' | 'line' | 'dot' | 'dash' }[],
  f: Pick<Frame, 'left' | 'right'>,
  y0: number,
): { svg: string[]; rows: number } {
  const svg: string[] = [];
  let x = f.left;
  let row = 0;
  for (const it of items) {
    const w = 22 + Math.min(40, it.name.length) * 6.2 + 14;
    if (x + w > f.right && x > f.left) {
      row++;
      x = f.left;
    }
    const y = y0 + row * 18;
    let mark: string;
    if (it.shape === 'rect') mark = `<rect x="${c(x)}" y="${c(y - 9)}" width="14" height="10" fill="${it.color}"/>`;
    else if (it.shape === 'dot') mark = `<circle cx="${c(x + 7)}" cy="${c(y - 4)}" r="3" fill="${it.color}" fill-opacity="0.55"/>`;
    else
      mark = `<line x1="${c(x)}" y1="${c(y - 4)}" x2="${c(x + 16)}" y2="${c(y - 4)}" stroke="${it.color}" stroke-width="2.5"${it.shape === 'dash' ? ' stroke-dasharray="5 3"' : ''}/>`;
    svg.push(`<g class="legend-item">${mark}<text x="${c(x + 20)}" y="${c(y)}" fill="#333">${escapeXml(it.name.slice(0, 60))}</text></g>`);
    x += w;
  }
  return { svg, rows: items.length === 0 ? 0 : row + 1 };
}

function legendRowCount(names: string[], left: number, right: number): number {
  let x = left;
  let rows = names.length ? 1 : 0;
  for (const n of names) {
    const w = 22 + Math.min(40, n.length) * 6.2 + 14;
    if (x + w > right && x > left) {
      rows++;
      x = left;
    }
    x += w;
  }
  return rows;
}

function axisLabels(f: Frame, o: ChartOptions): string[] {
  const out: string[] = [];
  if (o.xLabel)
    out.push(`<text class="x-label" x="${c((f.left + f.right) / 2)}" y="${c(f.height - 8)}" text-anchor="middle" fill="#333">${escapeXml(o.xLabel)}</text>`);
  if (o.yLabel) {
    const cy = (f.top + f.bottom) / 2;
    out.push(`<text class="y-label" x="14" y="${c(cy)}" text-anchor="middle" transform="rotate(-90 14 ${c(cy)})" fill="#333">${escapeXml(o.yLabel)}</text>`);
  }
  return out;
}

function yAxis(f: Frame, ticks: number[], y: (v: number) => number, fmt: (v: number) => string): string[] {
  const out: string[] = [`<g class="y-axis">`];
  for (const t of ticks) {
    const yy = y(t);
    if (yy < f.top - 0.5 || yy > f.bottom + 0.5) continue;
    out.push(`<line x1="${f.left}" y1="${c(yy)}" x2="${f.right}" y2="${c(yy)}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${f.left - 6}" y="${c(yy + 3.5)}" text-anchor="end" fill="#555">${escapeXml(fmt(t))}</text>`);
  }
  out.push(`<line x1="${f.left}" y1="${f.top}" x2="${f.left}" y2="${f.bottom}" stroke="#888"/>`);
  out.push(`</g>`);
  return out;
}

/** Every k-th label so that at most about `maxLabels` show. */
function labelStride(n: number, maxLabels: number): number {
  if (n <= maxLabels) return 1;
  const raw = Math.ceil(n / maxLabels);
  for (const s of [2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000]) if (s >= raw) return s;
  return raw;
}

/**
 * Grouped bar chart: one group per category (block), one bar per series in each group.
 * Each bar is `<rect class="bar" data-series=i data-category=j>` with a `<title>` "series · category: value".
 */
export function barChart(series: BarSeries[], options: BarChartOptions = {}): string {
  const fmt = options.format ?? ((v: number) => formatNumber(v));
  const n = Math.max(0, ...series.map((s) => s.values.length), options.categories?.length ?? 0);
  const categories = Array.from({ length: n }, (_, j) => options.categories?.[j] ?? String(j));
  const colors = series.map((s, i) => s.color ?? PALETTE[i % PALETTE.length]);

  const width = Math.max(200, options.width ?? 760);
  const rows = series.length > 0 ? legendRowCount(series.map((s) => s.name), options.yLabel ? 64 : 48, width - 16) : 0;
  const f = frame(options, rows);

  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const s of series)
    for (let j = 0; j < s.values.length; j++) {
      const v = s.values[j];
      if (Number.isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    }
  if (options.referenceLine && Number.isFinite(options.referenceLine.value)) {
    lo = Math.min(lo, options.referenceLine.value);
    hi = Math.max(hi, options.referenceLine.value);
  }
  if (!Number.isFinite(lo)) {
    lo = 0;
    hi = 1;
  }
  lo = Math.min(0, lo);
  hi = Math.max(0, hi);
  if (options.yMin !== undefined) lo = options.yMin;
  if (options.yMax !== undefined) hi = options.yMax;
  let ticks = niceTicks(lo, hi, 5);
  if (options.yMin === undefined) lo = Math.min(lo, ticks[0] ?? lo);
  if (options.yMax === undefined) hi = Math.max(hi, ticks.at(-1) ?? hi);
  if (hi === lo) hi = lo + 1;
  ticks = ticks.filter((t) => t >= lo - 1e-12 && t <= hi + 1e-12);
  const y = (v: number) => f.bottom - ((v - lo) / (hi - lo)) * (f.bottom - f.top);

  const out = svgOpen(f, options, 'bar-chart');
  if (rows > 0) out.push(...legend(series.map((s, i) => ({ name: s.name, color: colors[i], shape: 'rect' as const })), f, (options.title ? 30 : 10) + 12).svg);
  out.push(...yAxis(f, ticks, y, fmt));

  const plotW = f.right - f.left;
  const groupW = n > 0 ? plotW / n : plotW;
  const inner = groupW * (n > 40 ? 0.9 : 0.8);
  const barW = series.length > 0 ? inner / series.length : inner;
  const y0 = y(Math.min(Math.max(0, lo), hi));

  out.push(`<g class="bars">`);
  for (let j = 0; j < n; j++) {
    const gx = f.left + j * groupW + (groupW - inner) / 2;
    for (let i = 0; i < series.length; i++) {
      const v = series[i].values[j];
      const x = gx + i * barW;
      const tip = `${series[i].name} · ${options.xLabel ? `${options.xLabel} ` : ''}${categories[j]}: ${v === undefined ? 'missing' : fmt(v)}`;
      if (v === undefined || !Number.isFinite(v)) {
        out.push(
          `<text class="bar-missing" x="${c(x + barW / 2)}" y="${c(y0 - 2)}" text-anchor="middle" font-size="${Math.max(6, Math.min(11, barW * 1.6)).toFixed(0)}" fill="${colors[i]}"><title>${escapeXml(tip)}</title>×</text>`,
        );
        continue;
      }
      const yv = y(Math.min(hi, Math.max(lo, v)));
      const top = Math.min(yv, y0);
      const h = Math.max(Math.abs(y0 - yv), v === 0 ? 0 : 0.75);
      out.push(
        `<rect class="bar" data-series="${i}" data-category="${j}" x="${c(x)}" y="${c(top)}" width="${c(Math.max(0.5, barW - (barW > 4 ? 1 : 0)))}" height="${c(h)}" fill="${colors[i]}"><title>${escapeXml(tip)}</title></rect>`,
      );
    }
  }
  out.push(`</g>`);

  // x axis with category labels
  out.push(`<g class="x-axis">`);
  out.push(`<line x1="${f.left}" y1="${c(y0)}" x2="${f.right}" y2="${c(y0)}" stroke="#888"/>`);
  const stride = labelStride(n, Math.max(2, Math.floor(plotW / 28)));
  for (let j = 0; j < n; j += stride) {
    const cx = f.left + (j + 0.5) * groupW;
    out.push(`<text x="${c(cx)}" y="${c(f.bottom + 14)}" text-anchor="middle" fill="#555">${escapeXml(categories[j])}</text>`);
  }
  out.push(`</g>`);

  if (options.referenceLine && Number.isFinite(options.referenceLine.value)) {
    const ry = y(options.referenceLine.value);
    out.push(
      `<g class="reference-line"><line x1="${f.left}" y1="${c(ry)}" x2="${f.right}" y2="${c(ry)}" stroke="#222" stroke-dasharray="4 3" stroke-width="1"/><text x="${f.right - 2}" y="${c(ry - 4)}" text-anchor="end" fill="#222" stroke="#ffffff" stroke-width="3" paint-order="stroke">${escapeXml(`${options.referenceLine.label} ${fmt(options.referenceLine.value)}`)}</text></g>`,
    );
  }
  out.push(...axisLabels(f, options));
  out.push(`</svg>`);
  return out.join('\n');
}

/** A point series of a line chart. */
export interface LineSeries {
  name: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  /** `line` joins points, `step` draws a staircase (best-so-far), `scatter` draws dots only (default line). */
  kind?: 'line' | 'step' | 'scatter';
  /** Dashed stroke (e.g. the baseline series). */
  dashed?: boolean;
  color?: string;
  /** Tooltip text of point k (default "name: x, y"). Scatter dots only. */
  label?: (k: number) => string;
}

export interface LineChartOptions extends ChartOptions {
  /** Logarithmic y axis; points with y ≤ 0 are left out. */
  logY?: boolean;
  /** Fixed x range (default: from the data). */
  xMin?: number;
  xMax?: number;
  /** Horizontal reference lines (e.g. the fitness of uniform and OWL), included in the y range. */
  referenceLines?: { value: number; label: string }[];
}

/**
 * Line / step / scatter chart over numeric x (e.g. fitness vs evaluation index). Non-finite points are left out
 * (and, with `logY`, non-positive ones). Scatter dots are `<circle class="point" data-series=i>` with a `<title>`;
 * lines are `<path class="line" data-series=i>`.
 */
export function lineChart(series: LineSeries[], options: LineChartOptions = {}): string {
  const fmt = options.format ?? ((v: number) => formatNumber(v));
  const logY = options.logY === true;
  const colors = series.map((s, i) => s.color ?? PALETTE[i % PALETTE.length]);
  const width = Math.max(200, options.width ?? 760);
  const rows = series.length > 0 ? legendRowCount(series.map((s) => s.name), options.yLabel ? 64 : 48, width - 16) : 0;
  const f = frame(options, rows);

  const ok = (xv: number, yv: number) => Number.isFinite(xv) && Number.isFinite(yv) && (!logY || yv > 0);
  let xlo = Number.POSITIVE_INFINITY;
  let xhi = Number.NEGATIVE_INFINITY;
  let ylo = Number.POSITIVE_INFINITY;
  let yhi = Number.NEGATIVE_INFINITY;
  for (const s of series) {
    const m = Math.min(s.x.length, s.y.length);
    for (let k = 0; k < m; k++) {
      const xv = s.x[k];
      const yv = s.y[k];
      if (!ok(xv, yv)) continue;
      if (xv < xlo) xlo = xv;
      if (xv > xhi) xhi = xv;
      if (yv < ylo) ylo = yv;
      if (yv > yhi) yhi = yv;
    }
  }
  const refs = (options.referenceLines ?? []).filter((r) => Number.isFinite(r.value) && (!logY || r.value > 0));
  for (const r of refs) {
    if (r.value < ylo) ylo = r.value;
    if (r.value > yhi) yhi = r.value;
  }
  if (!Number.isFinite(xlo)) {
    xlo = 0;
    xhi = 1;
  }
  if (!Number.isFinite(ylo)) {
    ylo = logY ? 1 : 0;
    yhi = logY ? 10 : 1;
  }
  if (options.xMin !== undefined) xlo = options.xMin;
  if (options.xMax !== undefined) xhi = options.xMax;
  if (options.yMin !== undefined && (!logY || options.yMin > 0)) ylo = options.yMin;
  if (options.yMax !== undefined) yhi = options.yMax;
  if (xhi === xlo) {
    xlo -= 0.5;
    xhi += 0.5;
  }

  let yTicks: number[];
  let ty: (v: number) => number;
  if (logY) {
    if (yhi === ylo) {
      ylo /= 1.5;
      yhi *= 1.5;
    }
    yTicks = logTicks(ylo, yhi);
    const l0 = Math.log10(ylo);
    const l1 = Math.log10(yhi);
    ty = (v) => f.bottom - ((Math.log10(v) - l0) / (l1 - l0)) * (f.bottom - f.top);
  } else {
    const pad = (yhi - ylo) * 0.05 || Math.abs(yhi) * 0.1 || 1;
    if (options.yMin === undefined) ylo -= pad;
    if (options.yMax === undefined) yhi += pad;
    yTicks = niceTicks(ylo, yhi, 5).filter((t) => t >= ylo && t <= yhi);
    ty = (v) => f.bottom - ((v - ylo) / (yhi - ylo)) * (f.bottom - f.top);
  }
  const tx = (v: number) => f.left + ((v - xlo) / (xhi - xlo)) * (f.right - f.left);

  const out = svgOpen(f, options, 'line-chart');
  if (rows > 0) {
    out.push(
      ...legend(
        series.map((s, i) => ({
          name: s.name,
          color: colors[i],
          shape: s.kind === 'scatter' ? ('dot' as const) : s.dashed ? ('dash' as const) : ('line' as const),
        })),
        f,
        (options.title ? 30 : 10) + 12,
      ).svg,
    );
  }
  out.push(...yAxis(f, yTicks, ty, fmt));
  out.push(`<g class="x-axis">`);
  out.push(`<line x1="${f.left}" y1="${f.bottom}" x2="${f.right}" y2="${f.bottom}" stroke="#888"/>`);
  for (const t of niceTicks(xlo, xhi, Math.max(2, Math.min(10, Math.floor((f.right - f.left) / 70))))) {
    if (t < xlo - 1e-9 || t > xhi + 1e-9) continue;
    const xx = tx(t);
    out.push(`<line x1="${c(xx)}" y1="${f.bottom}" x2="${c(xx)}" y2="${f.bottom + 4}" stroke="#888"/>`);
    out.push(`<text x="${c(xx)}" y="${c(f.bottom + 15)}" text-anchor="middle" fill="#555">${escapeXml(formatNumber(t))}</text>`);
  }
  out.push(`</g>`);

  const inside = (xv: number, yv: number) => xv >= xlo && xv <= xhi && (logY ? yv >= ylo && yv <= yhi : yv >= ylo && yv <= yhi);
  // scatter first, lines on top
  const order = series.map((s, i) => i).sort((a, b) => Number(series[b].kind === 'scatter') - Number(series[a].kind === 'scatter'));
  for (const i of order) {
    const s = series[i];
    const m = Math.min(s.x.length, s.y.length);
    if (s.kind === 'scatter') {
      out.push(`<g class="points" data-series="${i}">`);
      for (let k = 0; k < m; k++) {
        const xv = s.x[k];
        const yv = s.y[k];
        if (!ok(xv, yv) || !inside(xv, yv)) continue;
        const tip = s.label ? s.label(k) : `${s.name}: ${formatNumber(xv)}, ${fmt(yv)}`;
        out.push(
          `<circle class="point" data-series="${i}" cx="${c(tx(xv))}" cy="${c(ty(yv))}" r="3" fill="${colors[i]}" fill-opacity="0.45"><title>${escapeXml(tip)}</title></circle>`,
        );
      }
      out.push(`</g>`);
      continue;
    }
    const d: string[] = [];
    let prevY: number | undefined;
    for (let k = 0; k < m; k++) {
      const xv = s.x[k];
      const yv = s.y[k];
      if (!ok(xv, yv)) continue;
      const cx = c(tx(Math.min(xhi, Math.max(xlo, xv))));
      const cy = c(ty(Math.min(yhi, Math.max(ylo, yv))));
      if (d.length === 0) d.push(`M${cx} ${cy}`);
      else if (s.kind === 'step' && prevY !== undefined) d.push(`H${cx}`, `V${cy}`);
      else d.push(`L${cx} ${cy}`);
      prevY = yv;
    }
    if (d.length === 0) continue;
    out.push(
      `<path class="line" data-series="${i}" d="${d.join(' ')}" fill="none" stroke="${colors[i]}" stroke-width="2.2" stroke-linejoin="round"${s.dashed ? ' stroke-dasharray="6 4"' : ''}><title>${escapeXml(s.name)}</title></path>`,
    );
  }
  for (const r of refs) {
    const ry = ty(Math.min(yhi, Math.max(ylo, r.value)));
    out.push(
      `<g class="reference-line"><line x1="${f.left}" y1="${c(ry)}" x2="${f.right}" y2="${c(ry)}" stroke="#444" stroke-dasharray="2 3" stroke-width="1"/><text x="${f.right - 2}" y="${c(ry - 4)}" text-anchor="end" fill="#333" stroke="#ffffff" stroke-width="3" paint-order="stroke">${escapeXml(`${r.label} ${fmt(r.value)}`)}</text></g>`,
    );
  }
  out.push(...axisLabels(f, options));
  out.push(`</svg>`);
  return out.join('\n');
}

/** A cell of `table`: text, a number (formatted with formatNumber), or empty. */
export type Cell = string | number | null | undefined;

export interface TableOptions {
  caption?: string;
  /** CSS class of the <table>. */
  className?: string;
  /** Per-column alignment (default: numbers right, text left). */
  align?: ('left' | 'right' | 'center')[];
  /** Digits for numeric cells (default 4 significant). */
  digits?: number;
}

/** An HTML <table> with escaped cells: `table(['model', 'ppl'], [['dense', 5.81], ['pruned', 9.2]])`. */
export function table(header: string[], rows: Cell[][], options: TableOptions = {}): string {
  const cell = (v: Cell) => (v === null || v === undefined ? '' : typeof v === 'number' ? formatNumber(v, options.digits ?? 4) : v);
  const alignOf = (k: number, v: Cell) => options.align?.[k] ?? (typeof v === 'number' ? 'right' : 'left');
  const out: string[] = [`<table${options.className ? ` class="${escapeXml(options.className)}"` : ''}>`];
  if (options.caption) out.push(`<caption>${escapeXml(options.caption)}</caption>`);
  out.push(`<thead><tr>${header.map((h, k) => `<th style="text-align:${options.align?.[k] ?? 'left'}">${escapeXml(h)}</th>`).join('')}</tr></thead>`);
  out.push('<tbody>');
  for (const r of rows) {
    out.push(`<tr>${r.map((v, k) => `<td style="text-align:${alignOf(k, v)}">${escapeXml(cell(v))}</td>`).join('')}</tr>`);
  }
  out.push('</tbody></table>');
  return out.join('\n');
}
