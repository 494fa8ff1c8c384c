import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smallConfig, tempRunDir, train } from './helpers/runs.ts';

// Debian's Chromium (CI installs it in .ci/run; OCCAM_CHROMIUM names another); without it these
// tests are skipped, not failed.
const CHROMIUM = process.env.OCCAM_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Points plotted in the chart of one page section (the charts count them in data-points). */
async function plotted(page: Page, section: string): Promise<number> {
  const count = await page.locator(`[data-section="${section}"] svg.chart`).getAttribute('data-points');
  return Number(count);
}

async function waitUntil(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe.skipIf(!existsSync(CHROMIUM))('the status page and the report in Chromium', () => {
  let browser: Browser;

  // Playwright gives each launch a fresh temporary profile of its own.
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('the live page of a running 2-worker job grows its curves as rounds complete; report.html renders with no console errors', async () => {
    const runDir = tempRunDir('browser');
    // Rounds of ~40 steps: long enough for the page (polling every 200 ms) to see them arrive one by one.
    const config = smallConfig({ rounds: 6, trainLimit: 3000, batchSize: 64, workers: 2 });
    let listening: (url: string) => void = () => {};
    const url = new Promise<string>((resolve) => (listening = resolve));
    const run = train(config, { runDir, onListening: (port) => listening(`http://127.0.0.1:${port}/?every=200`) });

    const live = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const liveErrors: string[] = [];
    live.on('pageerror', (error) => liveErrors.push(error.message));
    await live.goto(await url);
    // One finished round plots three points: train, holdback and test loss.
    await waitUntil(async () => (await plotted(live, 'loss')) >= 3, 120_000, 'the first round on the live page');
    const before = await plotted(live, 'loss');
    await waitUntil(async () => (await plotted(live, 'loss')) > before, 120_000, 'a later round on the live page');
    const after = await plotted(live, 'loss');
    expect(after).toBeGreaterThan(before);
    expect(await plotted(live, 'step-loss')).toBeGreaterThan(0);
    expect(await plotted(live, 'kept')).toBeGreaterThan(0);
    expect(await live.locator('[data-section="workers"] svg.chart').getAttribute('data-bars')).toBe('2');
    await live.screenshot({ path: join(runDir, 'status-page.png'), fullPage: true });
    expect(liveErrors).toEqual([]);

    const { summary } = await run;
    expect(summary.rounds).toBe(6);

    const report = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const reportErrors: string[] = [];
    report.on('console', (message) => {
      if (message.type() === 'error') reportErrors.push(message.text());
    });
    report.on('pageerror', (error) => reportErrors.push(error.message));
    await report.goto(pathToFileURL(join(runDir, 'report.html')).href);
    const charts = report.locator('svg.chart');
    expect(await charts.count()).toBe(7);
    for (let i = 0; i < 7; i++) {
      const chart = charts.nth(i);
      const count = Number((await chart.getAttribute('data-points')) ?? (await chart.getAttribute('data-bars')));
      expect(count, `chart ${await chart.getAttribute('aria-label')}`).toBeGreaterThan(0);
      expect((await chart.boundingBox())?.width ?? 0).toBeGreaterThan(200);
    }
    // Every round's three losses, as circles the browser actually laid out.
    expect(await report.locator('svg.chart').first().locator('circle.point').count()).toBe(18);
    await report.screenshot({ path: join(runDir, 'report.png'), fullPage: true });
    expect(reportErrors).toEqual([]);
    expect(existsSync(join(runDir, 'status-page.png')) && existsSync(join(runDir, 'report.png'))).toBe(true);
  });
});
