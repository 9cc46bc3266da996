/**
 * The report in a real headless browser (Debian chromium through playwright-core): charts render with non-zero size,
 * one bar per block × allocation, one dot per valid candidate, no network requests, and the screenshot shows the chart
 * colours. Skips when /usr/bin/chromium is absent (CI: `apt-get update && apt-get install -y chromium`).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserContext } from 'playwright-core';
import { renderReport } from '../../src/report/html.js';
import { validatePrunedManifest, validateSearchResult } from '../../src/report/types.js';
import { decodePng } from './png.js';

const CHROMIUM = '/usr/bin/chromium';
const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, 'fixtures');
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  console.warn(`skipping the browser report test: ${CHROMIUM} not found (install with: apt-get update && apt-get install -y chromium)`);
}

/** Screenshots stay here after the run for a human to look at. */
export const SCREENSHOT_DIR = path.join(os.tmpdir(), 'dsa-prune-report-screenshots');

describe.skipIf(!haveChromium)('report in headless chromium', () => {
  let context: BrowserContext;
  let profile: string;
  let work: string;
  const external: string[] = [];

  beforeAll(async () => {
    const { chromium } = await import('playwright-core');
    profile = mkdtempSync(path.join(os.tmpdir(), 'dsa-chromium-profile-'));
    work = mkdtempSync(path.join(os.tmpdir(), 'dsa-report-'));
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1100, height: 900 },
    });
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:') || url.startsWith('data:') || url === 'about:blank') return route.continue();
      external.push(url);
      return route.abort();
    });
  });

  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  async function open(html: string, name: string) {
    const file = path.join(work, `${name}.html`);
    writeFileSync(file, html);
    const page = await context.newPage();
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
    return page;
  }

  function colourStats(png: Buffer, targets: [number, number, number][]) {
    const { rgba, width, height } = decodePng(new Uint8Array(png));
    const distinct = new Set<number>();
    const hits = targets.map(() => 0);
    for (let i = 0; i < width * height; i++) {
      const r = rgba[i * 4];
      const g = rgba[i * 4 + 1];
      const b = rgba[i * 4 + 2];
      distinct.add((r << 16) | (g << 8) | b);
      targets.forEach(([tr, tg, tb], k) => {
        if (Math.abs(r - tr) + Math.abs(g - tg) + Math.abs(b - tb) <= 6) hits[k]++;
      });
    }
    return { distinct: distinct.size, hits, width, height };
  }

  it('pruned model report: per-block chart with blocks × allocations bars, quality table, no network', async () => {
    const file = path.join(fixtures, 'pruning-stories260k.json');
    const m = validatePrunedManifest(JSON.parse(readFileSync(file, 'utf8')), file);
    const page = await open(renderReport({ kind: 'pruned', manifest: m }, { source: file }), 'pruned');

    const svgBoxes = await page.$$eval('svg.chart', (els) => els.map((e) => e.getBoundingClientRect()).map((r) => [r.width, r.height]));
    expect(svgBoxes.length).toBe(1);
    for (const [w, h] of svgBoxes) {
      expect(w).toBeGreaterThan(300);
      expect(h).toBeGreaterThan(150);
    }
    const series = 1 + Object.keys(m.compare ?? {}).length; // this model + uniform, OWL, DSA
    const bars = await page.$$eval('svg.bar-chart rect.bar', (els) => els.map((e) => e.getBoundingClientRect()).map((r) => [r.width, r.height]));
    expect(bars.length).toBe(m.blockSparsity.length * series);
    for (const [w, h] of bars) {
      expect(w).toBeGreaterThan(1);
      expect(h).toBeGreaterThan(1);
    }
    // the tallest bar is the highest sparsity in the data
    const heights = bars.map(([, h]) => h);
    const values = [...m.blockSparsity, ...Object.values(m.compare ?? {}).flatMap((v) => v ?? [])];
    const k = heights.indexOf(Math.max(...heights));
    expect(k).toBeGreaterThanOrEqual(0);
    expect(Math.max(...heights) / Math.min(...heights)).toBeCloseTo(Math.max(...values) / Math.min(...values), 1);

    const qualityRows = await page.$$eval('table.quality tbody tr', (rows) => rows.map((r) => r.textContent ?? ''));
    expect(qualityRows.some((t) => t.includes('perplexity') && t.includes('5.816') && t.includes('7.91'))).toBe(true);
    expect(await page.$$eval('script', (s) => s.length)).toBe(0);

    const shot = await page.screenshot({ fullPage: true, path: path.join(SCREENSHOT_DIR, 'pruned.png') });
    // palette colours of the four series: #0072B2, #E69F00, #009E73, #CC79A7
    const stats = colourStats(shot, [
      [0x00, 0x72, 0xb2],
      [0xe6, 0x9f, 0x00],
      [0x00, 0x9e, 0x73],
      [0xcc, 0x79, 0xa7],
    ]);
    expect(stats.distinct).toBeGreaterThan(50);
    for (const h of stats.hits) expect(h).toBeGreaterThan(200);
    expect(external).toEqual([]);
    await page.close();
  });

  it('search report: one dot per valid candidate, best-so-far lines, block chart', async () => {
    const file = path.join(fixtures, 'search-bench12l.json');
    const r = validateSearchResult(JSON.parse(readFileSync(file, 'utf8')), file);
    const page = await open(renderReport({ kind: 'search', result: r }, { source: file }), 'search');
    const valid = [...r.history, ...(r.random ?? [])].filter((h) => h.fitness !== null).length;
    const dots = await page.$$eval('svg.line-chart circle.point', (els) => els.map((e) => e.getBoundingClientRect()).map((b) => b.width));
    expect(dots.length).toBe(valid);
    for (const w of dots) expect(w).toBeGreaterThan(2);
    const lines = await page.$$eval('svg.line-chart path.line', (els) => els.map((e) => e.getBoundingClientRect()).map((b) => [b.width, b.height]));
    expect(lines.length).toBe(2);
    for (const [w] of lines) expect(w).toBeGreaterThan(300);
    const blockBars = await page.$$eval('svg.bar-chart rect.bar', (els) => els.length);
    expect(blockBars).toBe((r.best.blockSparsity?.length ?? 0) * (1 + Object.keys(r.compare ?? {}).length));
    const shot = await page.screenshot({ fullPage: true, path: path.join(SCREENSHOT_DIR, 'search.png') });
    const stats = colourStats(shot, [
      [0x00, 0x72, 0xb2],
      [0xd5, 0x5e, 0x00],
    ]);
    expect(stats.distinct).toBeGreaterThan(50);
    for (const h of stats.hits) expect(h).toBeGreaterThan(100);
    expect(external).toEqual([]);
    await page.close();
  });
});
