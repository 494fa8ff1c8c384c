// Shared by the training benchmarks: run one configuration through the real local cluster (the
// same code path as `occam train`) and tabulate best-round figures.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { resolveConfig, type OccamConfig } from '../src/config.ts';
import { trainLocally } from '../src/coordinator/local-cluster.ts';
import { readMetrics, type RoundMetrics, type RunSummary } from '../src/storage/run-dir.ts';

export interface ExperimentRun {
  label: string;
  config: OccamConfig;
  summary: RunSummary;
  metrics: RoundMetrics[];
  wallMs: number;
}

/** Trains one run; prints one line per finished round to stderr so long benchmarks show progress (unless `quiet`). */
export async function runExperiment(
  label: string,
  settings: Partial<OccamConfig>,
  options: { quiet?: boolean } = {},
): Promise<ExperimentRun> {
  const config = resolveConfig(settings);
  const runDir = join(mkdtempSync(join(tmpdir(), 'occam-bench-')), label.replace(/\W+/g, '-'));
  const started = Date.now();
  const summary = await trainLocally({
    config,
    runDir,
    runId: label,
    // quiet also drops warn-level chatter (a worker disconnecting at the normal end of a run).
    log: pino({ level: options.quiet ? 'error' : 'warn' }),
    onEvent: (event) => {
      if (event.type !== 'round' || options.quiet) return;
      const m = event.metrics;
      process.stderr.write(
        `  ${label}: round ${m.round}/${event.rounds} holdback ${fmt(m.holdbackLoss)} test ${fmt(m.testLoss)} kept ${(100 * m.weightsKept).toFixed(1)}% (${(m.roundMs / 1000).toFixed(1)} s)\n`,
      );
    },
  });
  return { label, config, summary, metrics: readMetrics(runDir), wallMs: Date.now() - started };
}

/** Markdown table of best-round figures: one row per run. */
export function bestRoundTable(runs: ExperimentRun[]): string {
  const header =
    '| run | best round | test loss | test accuracy | weights kept | compute (weights × samples) | compute vs first | wall time |';
  const rule = '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |';
  const baseCompute = runs[0]?.summary.best?.compute ?? 1;
  const rows = runs.map((run) => {
    const best = run.summary.best;
    if (!best) return `| ${run.label} | — | — | — | — | — | — | ${(run.wallMs / 1000).toFixed(1)} s |`;
    return `| ${run.label} | ${best.round} | ${fmt(best.testLoss)} | ${fmt(best.testAccuracy)} | ${(100 * best.weightsKept).toFixed(1)} % | ${best.compute.toExponential(3)} | ${(best.compute / baseCompute).toFixed(2)} | ${(run.wallMs / 1000).toFixed(1)} s |`;
  });
  return [header, rule, ...rows].join('\n');
}

export function fmt(value: number | null | undefined, digits = 4): string {
  return value === null || value === undefined ? '—' : value.toFixed(digits);
}

// ——— Shared by the paper-reproduction benchmarks (image-mlp, image-cnn, tabular) ———

/** The best-round figures a results table reports for one run. */
export interface BestFigures {
  bestRound: number;
  holdbackLoss: number | null;
  testLoss: number | null;
  testAccuracy: number | null;
  /** Fraction of prunable weights kept in the best round's model. */
  weightsKept: number;
  activeParams: number;
  /** Active weights × samples, summed from the start through the best round. */
  computeToBest: number;
  /** Active weights × samples over the whole run (every run trains all its rounds). */
  totalCompute: number;
  wallS: number;
}

export function bestFigures(run: ExperimentRun): BestFigures {
  const best = run.summary.best;
  return {
    bestRound: best ? best.round : 0,
    holdbackLoss: best?.holdbackLoss ?? null,
    testLoss: best?.testLoss ?? null,
    testAccuracy: best?.testAccuracy ?? null,
    weightsKept: best?.weightsKept ?? 1,
    activeParams: best?.activeParams ?? 0,
    computeToBest: best?.compute ?? 0,
    totalCompute: run.summary.totalCompute,
    wallS: run.wallMs / 1000,
  };
}

/** One round of a run, kept in the JSON results so a reader can recheck the best-round choice. */
export type RoundRow = [
  round: number,
  holdbackLoss: number | null,
  testLoss: number | null,
  testAccuracy: number | null,
  weightsKept: number,
];

export function roundRows(run: ExperimentRun): RoundRow[] {
  const r = (v: number | null) => (v === null ? null : Number(v.toFixed(5)));
  return run.metrics.map((m) => [m.round, r(m.holdbackLoss), r(m.testLoss), r(m.testAccuracy), Number(m.weightsKept.toFixed(5))]);
}

/** The backend the run's first worker used, from its log (the workers choose it, not the bench). */
export function workerBackend(run: ExperimentRun): string {
  const path = join(run.summary.runDir, 'worker-0.log');
  if (!existsSync(path)) return 'unknown';
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const match = /"backend":"(\w+)"/.exec(line);
    if (match) return match[1];
  }
  return 'unknown';
}

/** Deletes a run's temporary folder (checkpoints of big models add up over dozens of runs). */
export function removeRunDir(run: ExperimentRun): void {
  const folder = dirname(run.summary.runDir);
  // Only the folder runExperiment made: never a run directory someone passed in elsewhere.
  if (folder.startsWith(join(tmpdir(), 'occam-bench-'))) rmSync(folder, { recursive: true, force: true });
}

export interface Stats {
  mean: number;
  /** Sample standard deviation (n − 1); 0 for a single value. */
  std: number;
  n: number;
}

/** Mean and sample standard deviation of the finite values (a missing figure is left out). */
export function stats(values: (number | null)[]): Stats {
  const xs = values.filter((v): v is number => v !== null && Number.isFinite(v));
  const n = xs.length;
  if (n === 0) return { mean: NaN, std: NaN, n };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

/** "mean ± sd", values multiplied by `scale` first (100 for percentages). */
export function fmtStats(s: Stats, digits = 4, scale = 1): string {
  if (s.n === 0) return '—';
  return `${(s.mean * scale).toFixed(digits)} ± ${(s.std * scale).toFixed(digits)}`;
}

/** A power of ten to print large figures (compute) in, so a column reads "2.41 ± 0.10" under "×10^11". */
export function powerOfTen(values: number[]): number {
  const largest = Math.max(...values.filter((v) => Number.isFinite(v) && v > 0), 1);
  return Math.floor(Math.log10(largest));
}

/** Where the reproduction benchmarks write: docs/results/<name>.json and .md. */
export function writeResults(name: string, result: object, markdown: string): { json: string; md: string } {
  const dir = fileURLToPath(new URL('../docs/results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const json = join(dir, `${name}.json`);
  const md = join(dir, `${name}.md`);
  // Arrays of numbers (a round's figures, a load average) on one line keep the file readable and small;
  // arrays holding strings or objects keep JSON.stringify's layout, so no string is ever touched.
  const text = JSON.stringify(result, null, 1).replace(/\[\s+([^[\]{}"]*?)\s+\]/g, (_, inner: string) => `[${inner.replace(/\s+/g, ' ')}]`);
  writeFileSync(json, `${text}\n`);
  writeFileSync(md, markdown.endsWith('\n') ? markdown : `${markdown}\n`);
  return { json, md };
}

/** The machine a result came from: CPU, cores and load (wall times only compare on a quiet machine). */
export function machine(): { cpu: string; cores: number; memoryGiB: number; node: string; loadAverage: number[] } {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    node: process.version,
    loadAverage: loadavg().map((l) => Number(l.toFixed(2))),
  };
}
