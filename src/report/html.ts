/**
 * `renderReport`: one self-contained offline HTML page (inline CSS and SVG, no scripts, no external URLs) for a pruned
 * model (its pruning.json) or a search result. Charts come from ./charts.ts, the project's one chart module.
 */
import { barChart, escapeXml, formatNumber, lineChart, table, type BarSeries, type Cell, type LineSeries } from './charts.js';
import type { PrunedManifest, QualityScores, ReportInput, SearchCandidate, SearchResult, StructuredManifest } from './types.js';

export interface RenderOptions {
  /** Page title (default from the input). */
  title?: string;
  /** Where the data came from (file or folder), shown under the title. */
  source?: string;
  /** Timestamp text shown in the footer (left out by default so the output is deterministic). */
  generatedAt?: string;
  /** Log y axis of the search curve: `auto` (default) when the fitness spans more than 10×. */
  logY?: boolean | 'auto';
}

export const CSS = `
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; background: #f6f7f9; color: #1d1f23; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid #dde1e6; padding-bottom: 4px; }
.source { color: #5b6270; font-size: 13px; margin: 0 0 12px; word-break: break-all; }
section { background: #fff; border: 1px solid #e3e6ea; border-radius: 8px; padding: 14px 18px; margin: 14px 0; }
section > h2:first-child { margin-top: 0; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceef1; vertical-align: top; }
th { background: #f1f3f5; font-weight: 600; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
code, .expr { font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace; font-size: 12.5px; word-break: break-all; }
.chart-wrap { overflow-x: auto; }
svg.chart { max-width: 100%; height: auto; display: block; }
.kv th { text-align: left; width: 220px; }
.better { color: #0a7a3d; } .worse { color: #b3261e; }
.note { color: #5b6270; font-size: 12.5px; }
details summary { cursor: pointer; font-weight: 600; margin: 6px 0; }
footer { color: #8a909b; font-size: 12px; margin-top: 28px; }
`;

function pct(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? '' : `${formatNumber(v * 100, 4)}%`;
}

function keyValues(rows: [string, string | number | undefined][]): string {
  const kept = rows.filter(([, v]) => v !== undefined && v !== '');
  return `<table class="kv"><tbody>${kept
    .map(([k, v]) => `<tr><th>${escapeXml(k)}</th><td>${escapeXml(typeof v === 'number' ? formatNumber(v) : (v as string))}</td></tr>`)
    .join('')}</tbody></table>`;
}

function section(title: string, body: string, cls = ''): string {
  return `<section${cls ? ` class="${cls}"` : ''}>\n<h2>${escapeXml(title)}</h2>\n${body}\n</section>`;
}

function expressionText(e: unknown): string | undefined {
  if (e === undefined || e === null) return undefined;
  if (typeof e === 'string') return e;
  if (typeof e === 'object') {
    const o = e as Record<string, unknown>;
    for (const k of ['simplified', 'text', 'expression', 'source']) if (typeof o[k] === 'string') return o[k] as string;
  }
  return JSON.stringify(e);
}

const COMPARE_LABELS: Record<string, string> = { uniform: 'uniform', owl: 'OWL', dsa: 'DSA', atp: 'ATP' };

function label(name: string): string {
  return COMPARE_LABELS[name.toLowerCase()] ?? name;
}

/** The per-block series of a manifest: this run's realised sparsity, then every compared allocation. */
export function blockSeries(m: PrunedManifest): BarSeries[] {
  const series: BarSeries[] = [];
  const compare = m.compare ?? {};
  const order = ['uniform', 'owl', 'dsa', ...Object.keys(compare).filter((k) => !['uniform', 'owl', 'dsa'].includes(k))];
  for (const k of order) {
    const v = compare[k];
    if (v && v.length) series.push({ name: label(k), values: v });
  }
  const own = `this model (${m.allocator ? label(m.allocator.name) : 'realised'})`;
  series.push({ name: own, values: m.blockSparsity });
  return series;
}

function qualityTable(q: { dense?: QualityScores; pruned?: QualityScores }): string {
  const rows: Cell[][] = [];
  const d = q.dense ?? {};
  const p = q.pruned ?? {};
  const delta = (a?: number, b?: number): Cell => (a !== undefined && b !== undefined ? b - a : undefined);
  if (d.ppl !== undefined || p.ppl !== undefined) {
    const data = d.pplData ?? p.pplData;
    rows.push([`perplexity${data ? ` (${data})` : ''} ↓`, d.ppl, p.ppl, delta(d.ppl, p.ppl)]);
  }
  const names = [...new Set([...Object.keys(d.tasks ?? {}), ...Object.keys(p.tasks ?? {})])].sort();
  const get = (s: QualityScores, name: string, key: 'acc' | 'acc_norm'): number | undefined => {
    const t = s.tasks?.[name];
    if (t === undefined) return undefined;
    if (typeof t === 'number') return key === 'acc' ? t : undefined;
    return t[key];
  };
  for (const name of names) {
    for (const key of ['acc', 'acc_norm'] as const) {
      const a = get(d, name, key);
      const b = get(p, name, key);
      if (a === undefined && b === undefined) continue;
      rows.push([`${name} ${key} ↑`, a, b, delta(a, b)]);
    }
  }
  if (rows.length === 0) return '<p class="note">No quality measurements in the data.</p>';
  return table(['metric', 'dense', 'pruned', 'Δ'], rows, { className: 'quality' });
}

function secondsTable(s: Record<string, number>): string {
  const rows: Cell[][] = Object.entries(s).map(([k, v]) => [k, v]);
  return table(['phase', 'seconds'], rows, { className: 'timings', digits: 3 });
}

function beforeAfter(x: { before: number; after: number } | undefined, unit = ''): string | undefined {
  if (!x) return undefined;
  const ratio = x.before > 0 ? ` (${formatNumber(x.after / x.before, 4)}×)` : '';
  return `${x.before.toLocaleString('en-US')}${unit} → ${x.after.toLocaleString('en-US')}${unit}${ratio}`;
}

/** `--method structured`: parameters and bytes before/after, and what each block kept (chart + table). */
export function structuredSection(st: StructuredManifest): string {
  const blocks = st.blocks ?? [];
  const removedSub = new Map<number, string[]>();
  for (const r of st.depth?.removed ?? []) {
    const [b, kind] = r.split('.');
    const list = removedSub.get(Number(b)) ?? [];
    list.push(kind ?? r);
    removedSub.set(Number(b), list);
  }
  const heads = blocks.some((b) => b.headsBefore !== undefined);
  const parts = [
    keyValues([
      ['target', st.target?.join(', ')],
      ['channel score', st.score],
      ['mode', st.mode],
      ['bias compensation', st.biasCompensation === undefined ? undefined : st.biasCompensation ? 'yes' : 'no'],
      ['parameters (whole graph)', beforeAfter(st.params)],
      ['ONNX file bytes', beforeAfter(st.bytes)],
      ['removed sub-layers', st.depth ? (st.depth.removed.join(', ') || 'none') : undefined],
    ]),
  ];
  const ffn = blocks.filter((b) => b.ffnBefore !== undefined && b.ffnAfter !== undefined);
  if (ffn.length) {
    parts.push(`<div class="chart-wrap">${barChart(
      [
        { name: 'FFN width before', values: blocks.map((b) => b.ffnBefore ?? Number.NaN), color: '#9aa3ad' },
        { name: 'FFN width kept', values: blocks.map((b) => b.ffnAfter ?? Number.NaN) },
      ],
      { title: 'FFN channels per block', xLabel: 'block', yLabel: 'channels', categories: blocks.map((b) => String(b.block)) },
    )}</div>`);
  }
  const header = ['block', 'FFN before', 'FFN kept', 'kept share', ...(heads ? ['query heads', 'KV heads'] : []), ...(st.depth ? ['removed sub-layers'] : [])];
  const rows: Cell[][] = blocks.map((b) => [
    b.block, b.ffnBefore, b.ffnAfter,
    b.ffnBefore && b.ffnAfter !== undefined ? pct(b.ffnAfter / b.ffnBefore) : undefined,
    ...(heads ? [`${b.headsAfter ?? '?'} / ${b.headsBefore ?? '?'}`, `${b.kvHeadsAfter ?? '?'} / ${b.kvHeadsBefore ?? '?'}`] : []),
    ...(st.depth ? [(removedSub.get(b.block) ?? []).join(', ') || '—'] : []),
  ]);
  if (rows.length) parts.push(table(header, rows, { className: 'structured-blocks' }));
  return parts.join('\n');
}

function renderPruned(m: PrunedManifest, o: RenderOptions): { title: string; body: string[] } {
  const title = o.title ?? `Pruning report — ${m.model ? `${m.model}, ` : ''}${m.method} ${pct(m.sparsity)}`;
  const body: string[] = [];
  const cal = m.calibration;
  const expr = expressionText(m.allocator?.expression);
  body.push(
    section(
      'Summary',
      keyValues([
        ['model', m.model],
        ['method', m.method],
        ['pattern', m.pattern],
        ['target sparsity', pct(m.sparsity)],
        ['realised sparsity', pct(m.realizedSparsity)],
        ['budget', m.budget],
        ['allocator', m.allocator ? label(m.allocator.name) : undefined],
        ['allocator expression', expr],
        ['λ', m.allocator?.lambda],
        ['blocks', m.blockSparsity.length],
        ['linears pruned', m.linears?.length],
        ['calibration', cal?.source],
        ['calibration size', cal?.nsamples !== undefined ? `${cal.nsamples} × ${cal.seqlen ?? '?'} tokens` : undefined],
        ['calibration sha256', cal?.sha256],
        ['written by', [m.tool, m.version].filter(Boolean).join(' ') || undefined],
      ]),
    ),
  );
  const series = blockSeries(m);
  body.push(
    section(
      'Sparsity per block',
      `<div class="chart-wrap">${barChart(series, {
        title: series.length > 1 ? 'Sparsity per block: allocations compared' : 'Sparsity per block',
        xLabel: 'block',
        yLabel: 'sparsity',
        referenceLine: { value: m.sparsity, label: 'target' },
      })}</div>` +
        (series.length === 1 ? '<p class="note">Only this model\'s allocation is in the data (no <code>compare</code> field).</p>' : ''),
    ),
  );
  if (m.structured) body.push(section('Structured: what was removed', structuredSection(m.structured)));
  body.push(section('Quality: dense vs pruned', m.quality ? qualityTable(m.quality) : '<p class="note">No quality measurements in the data (run <code>dsa-prune eval</code> on both models).</p>'));
  if (m.seconds && Object.keys(m.seconds).length) body.push(section('Timings', secondsTable(m.seconds)));
  if (m.linears && m.linears.length) {
    const rows: Cell[][] = m.linears.map((l) => [l.name, l.block, l.role, l.params, l.target !== undefined ? l.target : undefined, l.sparsity]);
    body.push(
      section(
        'Linears',
        `<details><summary>${m.linears.length} linears</summary>${table(['name', 'block', 'role', 'params', 'target', 'sparsity'], rows, { className: 'linears' })}</details>`,
      ),
    );
  }
  if (m.notes && m.notes.length) body.push(section('Notes', `<ul>${m.notes.map((n) => `<li>${escapeXml(n)}</li>`).join('')}</ul>`));
  return { title, body };
}

function finiteFitness(list: SearchCandidate[]): number[] {
  return list.map((h) => h.fitness).filter((f): f is number => f !== null && Number.isFinite(f));
}

/** Series of the search-curve chart: every candidate (dots) and best so far (step line), random alongside. */
export function searchSeries(history: SearchCandidate[], random?: SearchCandidate[]): LineSeries[] {
  const make = (list: SearchCandidate[], name: string, dashed: boolean): LineSeries[] => {
    const sorted = [...list].sort((a, b) => a.evaluation - b.evaluation);
    const x = sorted.map((h) => h.evaluation);
    const y = sorted.map((h) => (h.fitness === null ? Number.NaN : h.fitness));
    const bx: number[] = [];
    const by: number[] = [];
    let best = Number.POSITIVE_INFINITY;
    for (let k = 0; k < x.length; k++) {
      if (Number.isFinite(y[k]) && y[k] < best) best = y[k];
      if (Number.isFinite(best)) {
        bx.push(x[k]);
        by.push(best);
      }
    }
    return [
      {
        name: `${name}: every candidate`,
        x,
        y,
        kind: 'scatter',
        label: (k) =>
          `${name} #${x[k]}${sorted[k].generation !== undefined ? ` (gen ${sorted[k].generation})` : ''}: ${formatNumber(y[k])}${sorted[k].expression ? ` — ${sorted[k].expression}` : ''}`,
      },
      { name: `${name}: best so far`, x: bx, y: by, kind: 'step', dashed },
    ];
  };
  const out = make(history, 'evolution', false);
  if (random && random.length) {
    const r = make(random, 'random', true);
    out.push(...r);
  }
  // colours: evolution blue, random orange, dots and line of one search share the colour
  const colors = ['#0072B2', '#0072B2', '#D55E00', '#D55E00'];
  out.forEach((s, i) => (s.color = colors[i]));
  return out;
}

function renderSearch(r: SearchResult, o: RenderOptions): { title: string; body: string[] } {
  const title = o.title ?? `Search report — ${r.model ? `${r.model}, ` : ''}${r.method ?? 'DSA'}${r.sparsity !== undefined ? ` ${pct(r.sparsity)}` : ''}`;
  const body: string[] = [];
  const best = r.best;
  const totalSeconds = typeof r.seconds === 'number' ? r.seconds : r.seconds?.total;
  body.push(
    section(
      'Best allocation function',
      keyValues([
        ['expression', best.expression],
        ['simplified', best.simplified],
        ['λ', best.lambda],
        ['fitness (search-split perplexity, lower is better)', best.fitness],
        ['fitness with the faithful prune', best.faithful?.fitness],
        ...Object.entries(r.baselines ?? {}).map(([k, v]) => [`fitness of ${label(k)}`, v] as [string, number]),
        ['evaluations', r.evaluations],
        ['random-search baseline', r.random ? `${r.random.length} evaluations, best ${formatNumber(Math.min(...finiteFitness(r.random)))}` : undefined],
        ['model', r.model],
        ['method', r.method],
        ['target sparsity', pct(r.sparsity)],
        ['mode', r.mode],
        ['seed', r.seed],
        ['wall time', totalSeconds !== undefined ? `${formatNumber(totalSeconds)} s` : undefined],
        ['evaluations per minute', r.evalsPerMinute],
        ['parallel settings', r.settings ? Object.entries(r.settings).map(([k, v]) => `${k} ${v}`).join(', ') : undefined],
      ]),
    ),
  );
  const fits = [...finiteFitness(r.history), ...finiteFitness(r.random ?? [])].filter((f) => f > 0);
  const spread = fits.length ? Math.max(...fits) / Math.min(...fits) : 1;
  const logY = o.logY === undefined || o.logY === 'auto' ? spread > 10 : o.logY;
  body.push(
    section(
      'Search curve',
      `<div class="chart-wrap">${lineChart(searchSeries(r.history, r.random), {
        title: 'Fitness vs evaluations',
        xLabel: 'evaluation',
        yLabel: `fitness (perplexity${logY ? ', log scale' : ''})`,
        logY,
        referenceLines: Object.entries(r.baselines ?? {}).map(([k, v]) => ({ value: v, label: label(k) })),
      })}</div>` +
        `<p class="note">${r.history.length} candidates${r.history.some((h) => h.fitness === null) ? `, ${r.history.filter((h) => h.fitness === null).length} invalid (not drawn)` : ''}.</p>`,
    ),
  );
  const series: BarSeries[] = [];
  for (const [k, v] of Object.entries(r.compare ?? {})) if (v && v.length) series.push({ name: label(k), values: v });
  if (best.blockSparsity && best.blockSparsity.length) series.push({ name: 'best found', values: best.blockSparsity });
  if (series.length) {
    body.push(
      section(
        'Sparsity per block',
        `<div class="chart-wrap">${barChart(series, {
          title: 'Sparsity per block',
          xLabel: 'block',
          yLabel: 'sparsity',
          ...(r.sparsity !== undefined ? { referenceLine: { value: r.sparsity, label: 'target' } } : {}),
        })}</div>`,
      ),
    );
  }
  const top = [...r.history]
    .filter((h) => h.fitness !== null && Number.isFinite(h.fitness))
    .sort((a, b) => (a.fitness as number) - (b.fitness as number) || a.evaluation - b.evaluation)
    .slice(0, 10);
  if (top.length) {
    body.push(
      section(
        'Top candidates',
        table(
          ['evaluation', 'generation', 'fitness', 'λ', 'expression'],
          top.map((h) => [h.evaluation, h.generation, h.fitness, h.lambda, h.simplified ?? h.expression]),
          { className: 'top' },
        ),
      ),
    );
  }
  if (r.seconds && typeof r.seconds === 'object' && Object.keys(r.seconds).length) body.push(section('Timings', secondsTable(r.seconds)));
  return { title, body };
}

/** Render the report page. Deterministic: the same input and options give the same bytes. */
export function renderReport(input: ReportInput, options: RenderOptions = {}): string {
  const { title, body } = input.kind === 'pruned' ? renderPruned(input.manifest, options) : renderSearch(input.result, options);
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeXml(title)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    '<main>',
    `<h1>${escapeXml(title)}</h1>`,
    options.source ? `<p class="source">${escapeXml(options.source)}</p>` : '',
    ...body,
    `<footer>dsa-prune report${options.generatedAt ? ` · ${escapeXml(options.generatedAt)}` : ''} · self-contained page: no scripts, no network.</footer>`,
    '</main>',
    '</body>',
    '</html>',
    '',
  ]
    .filter((l) => l !== '')
    .join('\n');
}
