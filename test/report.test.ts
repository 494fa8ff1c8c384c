import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveConfig, type OccamConfig } from '../src/config.ts';
import { OCCAM_BIN } from '../src/coordinator/local-cluster.ts';
import { renderReport, readRun, writeComparisonReport } from '../src/observe/report.ts';
import type { RoundMetrics } from '../src/storage/run-dir.ts';
import { FailureLog } from '../src/storage/failure-log.ts';

/** A run directory as a finished (or crashed) run leaves it, without training one. */
function fakeRun(parent: string, name: string, config: Partial<OccamConfig>, rounds: number, options: { holdback?: boolean } = {}): string {
  const dir = join(parent, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(resolveConfig(config)));
  const lines = Array.from({ length: rounds }, (_, round): RoundMetrics => {
    const kept = config.strategy === 'none' ? 1 : 0.6 ** round;
    return {
      round: round + 1,
      step: 10 * (round + 1),
      trainLoss: 1 / (round + 1),
      holdbackLoss: options.holdback === false ? null : 1.1 / (round + 1),
      holdbackAccuracy: options.holdback === false ? null : 0.8,
      testLoss: 1.2 / (round + 1),
      testAccuracy: 0.8 + round / 100,
      weightsKept: kept,
      activeParams: Math.round(1000 * kept),
      p: config.strategy === 'none' ? 0 : 0.4,
      samples: 960,
      compute: 960 * 1000 * (round + 1),
      roundMs: 1000,
      elapsedMs: 1000 * (round + 1),
      stepMs: { compute: 10, allreduce: 3, wait: 2, update: 1 },
      bytesPerStep: 4000 * kept,
      tokensPerSecond: null,
      mfu: null,
      workers: 2,
      resyncs: 0,
      restarts: 0,
    };
  });
  writeFileSync(join(dir, 'metrics.jsonl'), lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  return dir;
}

/** data-points / data-bars of every chart, in page order. */
function chartCounts(html: string): number[] {
  return [...html.matchAll(/<svg class="chart"[^>]*data-(?:points|bars)="(\d+)"/g)].map((m) => Number(m[1]));
}

describe('report.html', () => {
  const parent = mkdtempSync(join(tmpdir(), 'occam-report-'));

  it('compares runs on the same axes: one series per run in every per-round chart', () => {
    const none = fakeRun(parent, 'mnist-none', { strategy: 'none' }, 4);
    const occam = fakeRun(parent, 'mnist-occam', { strategy: 'occam' }, 6);
    const out = writeComparisonReport([none, occam], join(parent, 'compare.html'));
    const html = readFileSync(out, 'utf8');
    // train, holdback, test loss; accuracy; kept; p; compute; loss vs compute; step time; bytes.
    expect(chartCounts(html)).toEqual([10, 10, 10, 10, 10, 10, 10, 10, 2, 10]);
    expect(html).toContain('mnist-none');
    expect(html).toContain('mnist-occam');
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/); // opens offline, runs nothing
    expect(html).not.toContain('NaN');
  });

  it('lists what events.jsonl holds, counted, and the restarts in the summary table come from it', () => {
    const dir = fakeRun(parent, 'troubled', { strategy: 'occam' }, 2);
    const log = new FailureLog(dir);
    log.append({ type: 'coordinator-start' });
    log.append({ type: 'commit', step: 10 });
    log.append({ type: 'excluded', worker: 'w2', reason: 'ring link w1 (10.0.0.1:7071) → w2 (10.0.0.2:7071) failed', forMs: 60000 });
    log.append({ type: 'restart', reason: 'ring link w1 → w2 failed', committedStep: 10 });
    log.append({ type: 'coordinator-start' });
    const html = renderReport([readRun(dir)]);
    expect(html).toMatch(
      /Failure history of troubled: 1 ring re-formation\(s\) · 0 worker\(s\) lost · 1 exclusion\(s\) · 0 resync\(s\) · 1 coordinator restart\(s\)/,
    );
    expect(html).toContain('w2 for 60 s: ring link w1 (10.0.0.1:7071) → w2 (10.0.0.2:7071) failed');
    expect(html).toContain('(from the commit at step 10)');
    expect(html).toContain('<td>0 / 1</td>'); // resyncs / restarts
    // A run that lived through nothing has no such section.
    expect(renderReport([readRun(fakeRun(parent, 'calm', { strategy: 'occam' }, 2))])).not.toContain('Failure history');
  });

  it('a run without holdback leaves gaps, not NaN, and names are escaped', () => {
    const dir = fakeRun(parent, 'odd <name> & co', { strategy: 'occam', holdback: 0 }, 3, { holdback: false });
    const html = renderReport([readRun(dir)]);
    expect(html).toContain('odd &lt;name&gt; &amp; co');
    expect(html).not.toContain('<name>');
    expect(html).not.toContain('NaN');
    // The loss chart plots train and test (3 rounds each); holdback was never measured.
    expect(chartCounts(html)[0]).toBe(6);
  });

  it('`occam report` writes one run’s report or a comparison, and names a missing run directory', () => {
    const a = fakeRun(parent, 'cli-a', { strategy: 'none' }, 2);
    const b = fakeRun(parent, 'cli-b', { strategy: 'occam' }, 2);
    const out = join(parent, 'cli-compare.html');
    const compare = spawnSync(process.execPath, [OCCAM_BIN, 'report', a, b, '--out', out], { encoding: 'utf8' });
    expect(compare.status, compare.stderr).toBe(0);
    expect(compare.stdout.trim()).toBe(out);
    expect(readFileSync(out, 'utf8')).toContain('Occam comparison');

    const single = spawnSync(process.execPath, [OCCAM_BIN, 'report', a], { encoding: 'utf8' });
    expect(single.status, single.stderr).toBe(0);
    expect(existsSync(join(a, 'report.html'))).toBe(true);

    const missing = spawnSync(process.execPath, [OCCAM_BIN, 'report', join(parent, 'nope')], { encoding: 'utf8' });
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toContain('is not a run directory');
  });
});
