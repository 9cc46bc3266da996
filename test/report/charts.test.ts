import { describe, expect, it } from 'vitest';
import { barChart, escapeXml, formatNumber, lineChart, logTicks, niceTicks, table } from '../../src/report/charts.js';

/** Attributes of every element `<tag ...>` with the given class, parsed naively. */
function elements(svg: string, tag: string, cls: string): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  const re = new RegExp(`<${tag} class="${cls}"([^>]*)>`, 'g');
  for (const m of svg.matchAll(re)) {
    const attrs: Record<string, string> = {};
    for (const a of m[1].matchAll(/([\w-]+)="([^"]*)"/g)) attrs[a[1]] = a[2];
    out.push(attrs);
  }
  return out;
}

/** y-axis tick label value → pixel y, read back from the SVG (gridline y and label text). */
function yScale(svg: string): (v: number) => number {
  const axis = svg.slice(svg.indexOf('<g class="y-axis">'), svg.indexOf('</g>', svg.indexOf('<g class="y-axis">')));
  const pairs = [...axis.matchAll(/<text x="[\d.]+" y="([\d.]+)"[^>]*>([^<]+)<\/text>/g)].map((m) => [Number(m[2]), Number(m[1]) - 3.5]);
  expect(pairs.length).toBeGreaterThanOrEqual(2);
  const [[v0, y0], [v1, y1]] = [pairs[0], pairs[pairs.length - 1]];
  return (v: number) => y0 + ((v - v0) / (v1 - v0)) * (y1 - y0);
}

describe('barChart', () => {
  const uniform = [0.5, 0.5, 0.5, 0.5, 0.5];
  const owl = [0.42, 0.47, 0.5, 0.53, 0.58];
  const dsa = [0.1, 0.3, 0.5, 0.7, 0.9];

  it('draws blocks × series bars whose heights match the values on the drawn axis', () => {
    const svg = barChart(
      [
        { name: 'uniform', values: uniform },
        { name: 'OWL', values: owl },
        { name: 'DSA', values: dsa },
      ],
      { title: 'Sparsity per block', xLabel: 'block', yLabel: 'sparsity' },
    );
    const bars = elements(svg, 'rect', 'bar');
    expect(bars.length).toBe(15);
    const y = yScale(svg);
    const all = [uniform, owl, dsa];
    for (const b of bars) {
      const v = all[Number(b['data-series'])][Number(b['data-category'])];
      const top = Number(b.y);
      const bottom = top + Number(b.height);
      expect(Math.abs(top - y(v))).toBeLessThan(0.05);
      expect(Math.abs(bottom - y(0))).toBeLessThan(0.05);
    }
    // bars of one block sit left to right in series order, blocks in index order
    const x = (s: number, cat: number) => Number(bars.find((b) => b['data-series'] === String(s) && b['data-category'] === String(cat))!.x);
    expect(x(0, 0)).toBeLessThan(x(1, 0));
    expect(x(2, 0)).toBeLessThan(x(0, 1));
    // legend shows every series; hover text carries the value
    for (const n of ['uniform', 'OWL', 'DSA']) expect(svg).toContain(`>${n}</text>`);
    expect(svg).toContain('<title>OWL · block 3: 0.53</title>');
  });

  it('is deterministic and escapes all text', () => {
    const series = [{ name: '<script>alert("x")</script> & co', values: [0.2, 0.4] }];
    const a = barChart(series, { title: 'a<b', xLabel: "it's", categories: ['<0>', '1'] });
    expect(a).toBe(barChart(series, { title: 'a<b', xLabel: "it's", categories: ['<0>', '1'] }));
    expect(a).not.toContain('<script>');
    expect(a).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co');
    expect(a).toContain('a&lt;b');
    expect(a).toContain('&lt;0&gt;');
    expect(a).not.toMatch(/NaN|undefined|Infinity/);
  });

  it('non-finite values become markers, not bars', () => {
    const svg = barChart([{ name: 'dsa', values: [0.5, Number.NaN, 0.6, Number.POSITIVE_INFINITY] }]);
    expect(elements(svg, 'rect', 'bar').length).toBe(2);
    expect(elements(svg, 'text', 'bar-missing').length).toBe(2);
    expect(svg).toContain('dsa · 1: NaN');
  });

  it('stays readable for 80 blocks: all bars inside the plot, thinned x labels', () => {
    const n = 80;
    const s = (k: number) => Array.from({ length: n }, (_, j) => 0.3 + 0.4 * Math.sin(j / 7 + k) ** 2);
    const svg = barChart(
      [
        { name: 'uniform', values: s(0) },
        { name: 'OWL', values: s(1) },
        { name: 'DSA', values: s(2) },
      ],
      { width: 900, xLabel: 'block' },
    );
    const bars = elements(svg, 'rect', 'bar');
    expect(bars.length).toBe(240);
    for (const b of bars) {
      expect(Number(b.x)).toBeGreaterThanOrEqual(0);
      expect(Number(b.x) + Number(b.width)).toBeLessThanOrEqual(900);
      expect(Number(b.width)).toBeGreaterThan(0);
    }
    const xAxis = svg.slice(svg.indexOf('<g class="x-axis">'));
    const labels = [...xAxis.slice(0, xAxis.indexOf('</g>')).matchAll(/<text/g)].length;
    expect(labels).toBeGreaterThan(5);
    expect(labels).toBeLessThanOrEqual(40);
  });
});

describe('lineChart', () => {
  it('best-so-far step line equals a naive running minimum; log axis maps decades evenly', () => {
    const fitness = [900, 400, 650, 300, Number.NaN, 310, 120, 500, 130, 110];
    const x = fitness.map((_, i) => i);
    const best: number[] = [];
    let m = Infinity;
    for (const f of fitness) {
      if (Number.isFinite(f)) m = Math.min(m, f);
      best.push(m);
    }
    const svg = lineChart(
      [
        { name: 'every candidate', x, y: fitness, kind: 'scatter' },
        { name: 'best so far', x, y: best, kind: 'step' },
      ],
      { logY: true, yLabel: 'ppl', xLabel: 'evaluation' },
    );
    expect(elements(svg, 'circle', 'point').length).toBe(9); // NaN dropped
    const path = elements(svg, 'path', 'line')[0].d;
    // walk the path: M x y, then H x V y pairs; collect the y at each vertex
    const ys: number[] = [];
    for (const tok of path.matchAll(/([MHVL])([\d.\s-]+)/g)) {
      const nums = tok[2].trim().split(/\s+/).map(Number);
      if (tok[1] === 'M' || tok[1] === 'L') ys.push(nums[1]);
      if (tok[1] === 'V') ys.push(nums[0]);
    }
    expect(ys.length).toBe(best.length);
    // invert the log scale from two ticks and compare with the naive running minimum
    const axis = svg.slice(svg.indexOf('<g class="y-axis">'), svg.indexOf('</g>', svg.indexOf('<g class="y-axis">')));
    const pairs = [...axis.matchAll(/<text x="[\d.]+" y="([\d.]+)"[^>]*>([^<]+)<\/text>/g)].map((q) => [Math.log10(Number(q[2])), Number(q[1]) - 3.5]);
    const [[l0, y0], [l1, y1]] = [pairs[0], pairs[pairs.length - 1]];
    ys.forEach((yy, k) => {
      const v = 10 ** (l0 + ((yy - y0) / (y1 - y0)) * (l1 - l0));
      expect(Math.abs(v - best[k]) / best[k]).toBeLessThan(0.01);
    });
  });

  it('draws a dashed second series (random search) and a legend', () => {
    const svg = lineChart(
      [
        { name: 'evolution', x: [0, 1, 2], y: [3, 2, 1], kind: 'step' },
        { name: 'random', x: [0, 1, 2], y: [3, 2.5, 2], kind: 'step', dashed: true },
      ],
      {},
    );
    expect(elements(svg, 'path', 'line').length).toBe(2);
    expect(svg).toContain('stroke-dasharray="6 4"');
    expect(svg).toContain('>random</text>');
  });

  it('empty input still gives a valid frame', () => {
    const svg = lineChart([], { title: 'nothing' });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.endsWith('</svg>')).toBe(true);
    expect(svg).not.toMatch(/NaN|Infinity/);
  });
});

describe('helpers', () => {
  it('niceTicks cover the range with 1/2/5 steps', () => {
    expect(niceTicks(0, 0.58, 5)).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(120, 980, 4)).toEqual([0, 200, 400, 600, 800, 1000]);
  });
  it('logTicks', () => {
    expect(logTicks(100, 1000)).toEqual([100, 200, 300, 500, 700, 1000]);
    expect(logTicks(1, 10000)).toEqual([1, 10, 100, 1000, 10000]);
  });
  it('formatNumber and escapeXml', () => {
    expect(formatNumber(0.5)).toBe('0.5');
    expect(formatNumber(5.81634)).toBe('5.816');
    expect(formatNumber(-0.00001)).toBe('-1e-5');
    expect(formatNumber(Number.NaN)).toBe('NaN');
    expect(escapeXml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });
  it('table escapes cells and right-aligns numbers', () => {
    const html = table(['metric', 'value'], [['<b>ppl</b>', 5.8163], ['none', null]], { caption: 'Q' });
    expect(html).toContain('&lt;b&gt;ppl&lt;/b&gt;');
    expect(html).toContain('<td style="text-align:right">5.816</td>');
    expect(html).toContain('<caption>Q</caption>');
    expect((html.match(/<tr>/g) ?? []).length).toBe(3);
  });
});
