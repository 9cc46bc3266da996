/** The chart of one search run (`dsa-prune search --out x.json` writes it as x.svg), drawn from the search's data. */
import { lineChart } from './charts.js';
import { searchSeries } from './html.js';
import type { SearchCandidate } from './types.js';

/** What the chart reads of a search result (the engine's SearchOutput and the search.json file both have it). */
export interface SearchChartInput {
  history: SearchCandidate[];
  random?: SearchCandidate[];
  method: string;
  sparsity: number;
  /** The search's fitness (default ppl). */
  fitness?: 'ppl' | 'kl';
}

/** SVG chart of a search: every candidate and best-so-far vs evaluations (random search alongside when present). */
export function searchChart(r: SearchChartInput, o: { referenceLines?: { value: number; label: string }[] } = {}): string {
  const finite = [...r.history, ...(r.random ?? [])].map((h) => h.fitness).filter((f): f is number => f !== null && Number.isFinite(f));
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  return lineChart(searchSeries(r.history, r.random), {
    title: `DSA search — ${r.method} ${(r.sparsity * 100).toFixed(0)}%: search-split ${r.fitness === 'kl' ? 'KL to the dense model' : 'perplexity'} vs evaluations`,
    xLabel: 'evaluation',
    yLabel: r.fitness === 'kl' ? 'mean KL(dense ‖ pruned), nats (search split)' : 'perplexity (search split)',
    logY: hi / Math.max(lo, 1e-9) > 20,
    ...(o.referenceLines ? { referenceLines: o.referenceLines } : {}),
  });
}
