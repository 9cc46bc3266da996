/**
 * The frontier page (`dsa-prune frontier`): one self-contained offline HTML page with the size–perplexity chart of
 * every variant (Pareto front highlighted), the table, and the one-sentence recommendation. Charts from ./charts.ts.
 */
import { escapeXml, formatNumber, lineChart, table, type LineSeries } from './charts.js';
import { CSS } from './html.js';

/** The fields of a frontier result the page shows (src/frontier.ts FrontierResult). */
export interface FrontierPageInput {
  model: string;
  method: string;
  allocator: string;
  perplexity: { file: string; seqlen: number; windows?: number; files?: string[] };
  points: { name: string; format: string; sparsity: number; dir: string; file: string; bytes: number; ppl: number; ppls?: { file: string; ppl: number }[]; tokensPerSecond?: number; loadMs: number; pareto: boolean }[];
  recommendation: { sentence: string };
}

export function renderFrontier(r: FrontierPageInput, options: { title?: string } = {}): string {
  const title = options.title ?? `Size–quality frontier: ${r.model}`;
  const formats = [...new Set(r.points.map((p) => p.format))];
  const series: LineSeries[] = formats.map((f): LineSeries => {
    const pts = r.points.filter((p) => p.format === f);
    return { name: f, kind: 'scatter' as const, x: pts.map((p) => p.bytes / 1e6), y: pts.map((p) => p.ppl), label: (k: number) => `${pts[k].name}: ${formatNumber(pts[k].bytes / 1e6)} MB, ppl ${formatNumber(pts[k].ppl)}` };
  });
  const front = r.points.filter((p) => p.pareto).sort((a, b) => a.bytes - b.bytes);
  series.push({ name: 'Pareto front', kind: 'step' as const, dashed: true, x: front.map((p) => p.bytes / 1e6), y: front.map((p) => p.ppl), label: (k: number) => front[k].name });
  const chart = lineChart(series, { title: 'file size vs perplexity', xLabel: 'file size (MB)', yLabel: 'perplexity (log scale)', logY: true });
  // Further perplexity texts (the first decides the front) as their own columns.
  const others = (r.perplexity.files ?? [r.perplexity.file]).slice(1);
  const rows = [...r.points].sort((a, b) => a.bytes - b.bytes).map((p) => [
    p.name, p.pareto ? '✓' : '', p.bytes.toLocaleString('en-US'), formatNumber(p.ppl, 5),
    ...others.map((_, k) => (p.ppls?.[k + 1] ? formatNumber(p.ppls[k + 1]!.ppl, 5) : '')),
    p.tokensPerSecond === undefined ? '' : Math.round(p.tokensPerSecond), Math.round(p.loadMs), `${p.dir}/${p.file}`,
  ]);
  const base = (f: string): string => f.split(/[\\/]/).pop() ?? f;
  const body = `<main>
<h1>${escapeXml(title)}</h1>
<p class="source">${escapeXml(r.model)} · ${escapeXml(r.method)} · allocator ${escapeXml(r.allocator)} · perplexity on ${escapeXml(r.perplexity.file)} (windows of ${r.perplexity.seqlen} tokens${r.perplexity.windows ? `, first ${r.perplexity.windows}` : ''})</p>
<section><h2>What to ship</h2>
<p><strong>${escapeXml(r.recommendation.sentence)}</strong></p>
<p class="note">Every size is the file transformers.js downloads for that dtype; every perplexity was measured on that file as transformers.js loads it. Pareto front: no other variant is both smaller and better.</p>
</section>
<section><h2>Size vs perplexity</h2>
<div class="chart-wrap">${chart}</div>
</section>
<section><h2>Variants</h2>
${table(['variant', 'Pareto', 'bytes', others.length ? `ppl ${base(r.perplexity.file)}` : 'ppl', ...others.map((f) => `ppl ${base(f)}`), 'tokens/s (ppl pass)', 'load ms', 'file'], rows)}
</section>
</main>`;
  return `<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>${escapeXml(title)}</title>\n<style>${CSS}</style>\n</head>\n<body>\n${body}\n</body>\n</html>\n`;
}
