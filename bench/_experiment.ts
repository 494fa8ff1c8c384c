// Shared by the training benchmarks: run one configuration through the real local cluster (the
// same code path as `occam train`) and tabulate best-round figures.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { resolveConfig, type OccamConfig } from '../src/core/config.ts';
import { trainLocally } from '../src/coordinator/local-cluster.ts';
import { readMetrics, type RoundMetrics, type RunSummary } from '../src/coordinator/run-dir.ts';

export interface ExperimentRun {
  label: string;
  config: OccamConfig;
  summary: RunSummary;
  metrics: RoundMetrics[];
  wallMs: number;
}

/** Trains one run; prints one line per finished round to stderr so long benchmarks show progress. */
export async function runExperiment(label: string, settings: Partial<OccamConfig>): Promise<ExperimentRun> {
  const config = resolveConfig(settings);
  const runDir = join(mkdtempSync(join(tmpdir(), 'occam-bench-')), label.replace(/\W+/g, '-'));
  const started = Date.now();
  const summary = await trainLocally({
    config,
    runDir,
    runId: label,
    log: pino({ level: 'warn' }),
    onEvent: (event) => {
      if (event.type !== 'round') return;
      const m = event.metrics;
      process.stderr.write(`  ${label}: round ${m.round + 1}/${event.rounds} holdback ${fmt(m.holdbackLoss)} test ${fmt(m.testLoss)} kept ${(100 * m.weightsKept).toFixed(1)}% (${(m.roundMs / 1000).toFixed(1)} s)\n`);
    },
  });
  return { label, config, summary, metrics: readMetrics(runDir), wallMs: Date.now() - started };
}

/** Markdown table of best-round figures: one row per run. */
export function bestRoundTable(runs: ExperimentRun[]): string {
  const header = '| run | best round | test loss | test accuracy | weights kept | compute (weights × samples) | compute vs first | wall time |';
  const rule = '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |';
  const baseCompute = runs[0]?.summary.best?.compute ?? 1;
  const rows = runs.map((run) => {
    const best = run.summary.best;
    if (!best) return `| ${run.label} | — | — | — | — | — | — | ${(run.wallMs / 1000).toFixed(1)} s |`;
    return `| ${run.label} | ${best.round + 1} | ${fmt(best.testLoss)} | ${fmt(best.testAccuracy)} | ${(100 * best.weightsKept).toFixed(1)} % | ${best.compute.toExponential(3)} | ${(best.compute / baseCompute).toFixed(2)} | ${(run.wallMs / 1000).toFixed(1)} s |`;
  });
  return [header, rule, ...rows].join('\n');
}

export function fmt(value: number | null | undefined, digits = 4): string {
  return value === null || value === undefined ? '—' : value.toFixed(digits);
}

/** `--key value` pairs after the benchmark name, as config settings. */
export function benchArgs(): Record<string, string> {
  const args = process.argv.slice(2);
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i += 2) out[args[i].replace(/^--/, '')] = args[i + 1];
  return out;
}
