// The strategy comparison shared by the reproduction benchmarks (image-mlp, image-cnn, tabular):
// for every seed, Occam first, then the baselines pruned to the density Occam's best round kept
// with that seed, all through the local cluster; then mean ± sd tables per data set.
import type { OccamConfig } from '../src/config.ts';
import {
  bestFigures,
  machine,
  writeResults,
  fmtStats,
  powerOfTen,
  removeRunDir,
  roundRows,
  runExperiment,
  stats,
  workerBackend,
  type BestFigures,
  type RoundRow,
  type Stats,
} from './_experiment.ts';

export type Strategy = OccamConfig['strategy'];

/** One data set of an experiment and the settings every strategy shares on it. */
export interface DatasetSpec {
  key: string;
  title: string;
  settings: Partial<OccamConfig>;
}

/** One finished training run, as stored in docs/results/<experiment>.json. */
export interface RunRecord {
  dataset: string;
  strategy: Strategy;
  seed: number;
  /** posttrain and gradual: the density they pruned to (Occam's best-round density, same seed). */
  targetDensity: number | null;
  backend: string;
  figures: BestFigures;
  rounds: RoundRow[];
}

/** Prints progress lines with the experiment's elapsed time, so a long benchmark shows where it is. */
export class Progress {
  private readonly started = Date.now();
  private done = 0;
  constructor(
    private readonly experiment: string,
    private readonly total: number,
  ) {}

  get elapsedS(): number {
    return (Date.now() - this.started) / 1000;
  }

  log(message: string): void {
    process.stderr.write(`[${this.experiment} ${(this.elapsedS / 60).toFixed(1)} min] ${message}\n`);
  }

  /** Counts a finished run and prints its headline figures with an estimate of the time left. */
  finished(label: string, f: BestFigures): void {
    this.done++;
    const left = this.done < this.total ? `, ~${(((this.elapsedS / this.done) * (this.total - this.done)) / 60).toFixed(1)} min left` : '';
    const loss = f.testLoss === null ? '—' : f.testLoss.toFixed(4);
    const accuracy = f.testAccuracy === null ? '—' : (100 * f.testAccuracy).toFixed(2);
    this.log(
      `${this.done}/${this.total} ${label}: best round ${f.bestRound}, test loss ${loss}, accuracy ${accuracy} %, kept ${(100 * f.weightsKept).toFixed(1)} % (${f.wallS.toFixed(1)} s${left})`,
    );
  }
}

/**
 * Trains `strategies` on one data set for every seed. Occam always runs (first), because the
 * pruning baselines take its best-round density as their target.
 */
export async function compareStrategies(
  dataset: DatasetSpec,
  seeds: number[],
  strategies: Strategy[],
  fineTuneRounds: number,
  progress: Progress,
  quiet = false,
): Promise<RunRecord[]> {
  const order: Strategy[] = ['occam', ...strategies.filter((s) => s !== 'occam')];
  const records: RunRecord[] = [];
  for (const seed of seeds) {
    let occamDensity = 1;
    for (const strategy of order) {
      const targetDensity = strategy === 'posttrain' || strategy === 'gradual' ? occamDensity : null;
      const settings: Partial<OccamConfig> = {
        ...dataset.settings,
        seed,
        strategy,
        ...(targetDensity === null ? {} : { targetDensity }),
        ...(strategy === 'posttrain' ? { fineTuneRounds } : {}),
      };
      const label = `${dataset.key} seed ${seed} ${strategy}${targetDensity === null ? '' : ` @ ${(100 * targetDensity).toFixed(1)} %`}`;
      const run = await runExperiment(label, settings, { quiet });
      const figures = bestFigures(run);
      if (strategy === 'occam') occamDensity = figures.weightsKept;
      records.push({ dataset: dataset.key, strategy, seed, targetDensity, backend: workerBackend(run), figures, rounds: roundRows(run) });
      removeRunDir(run);
      progress.finished(label, figures);
    }
  }
  return records;
}

/** One row of a summary table: a method and its figures over the seeds (absent columns print —). */
export interface SummaryRow {
  label: string;
  testLoss: (number | null)[];
  testAccuracy: (number | null)[];
  weightsKept?: number[];
  computeToBest?: number[];
  totalCompute?: number[];
  wallS: number[];
}

export function strategyRows(records: RunRecord[], dataset: string, strategies: Strategy[], fineTuneRounds: number): SummaryRow[] {
  return strategies.map((strategy) => {
    const figures = records.filter((r) => r.dataset === dataset && r.strategy === strategy).map((r) => r.figures);
    return {
      label: strategyLabel(strategy, fineTuneRounds),
      testLoss: figures.map((f) => f.testLoss),
      testAccuracy: figures.map((f) => f.testAccuracy),
      weightsKept: figures.map((f) => f.weightsKept),
      computeToBest: figures.map((f) => f.computeToBest),
      totalCompute: figures.map((f) => f.totalCompute),
      wallS: figures.map((f) => f.wallS),
    };
  });
}

export function strategyLabel(strategy: Strategy, fineTuneRounds: number): string {
  switch (strategy) {
    case 'none':
      return 'plain GD (`none`)';
    case 'occam':
      return 'Occam GD (`occam`)';
    case 'posttrain':
      return `post-train prune + ${fineTuneRounds} fine-tune round(s) (\`posttrain\`)`;
    case 'gradual':
      return 'gradual prune, Zhu & Gupta (`gradual`)';
  }
}

/** Mean ± sd of every column, for the JSON results. */
export function rowStats(row: SummaryRow): Record<string, Stats | string> {
  const out: Record<string, Stats | string> = {
    label: row.label,
    testLoss: stats(row.testLoss),
    testAccuracy: stats(row.testAccuracy),
    wallS: stats(row.wallS),
  };
  if (row.weightsKept) out.weightsKept = stats(row.weightsKept);
  if (row.computeToBest) out.computeToBest = stats(row.computeToBest);
  if (row.totalCompute) out.totalCompute = stats(row.totalCompute);
  return out;
}

/** The Markdown table of one data set: mean ± sd over the seeds of every best-round figure. */
export function summaryTable(rows: SummaryRow[]): string {
  const exponent = powerOfTen(rows.flatMap((r) => r.totalCompute ?? []));
  const unit = 10 ** exponent;
  const scaled = (values: number[] | undefined) => (values ? fmtStats(stats(values.map((v) => v / unit)), 2) : '—');
  const header = `| method | n | test loss | test accuracy (%) | weights kept (%) | compute to best (×10^${exponent}) | total compute (×10^${exponent}) | wall time (s) |`;
  const rule = '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |';
  const lines = rows.map((row) => {
    const kept = row.weightsKept ? fmtStats(stats(row.weightsKept), 1, 100) : '—';
    return `| ${row.label} | ${stats(row.testLoss).n} | ${fmtStats(stats(row.testLoss), 4)} | ${fmtStats(stats(row.testAccuracy), 2, 100)} | ${kept} | ${scaled(row.computeToBest)} | ${scaled(row.totalCompute)} | ${fmtStats(stats(row.wallS), 1)} |`;
  });
  return [header, rule, ...lines].join('\n');
}

/** Per-seed differences of Occam minus each baseline (same seed = same split, init and batches). */
export function pairedTable(records: RunRecord[], dataset: string, baselines: Strategy[], fineTuneRounds: number): string {
  const header =
    '| Occam vs | Δ test loss (Occam − other) | Occam lower loss | Δ accuracy (points) | Occam higher accuracy | compute to best, Occam / other | total compute, Occam / other |';
  const rule = '| --- | ---: | ---: | ---: | ---: | ---: | ---: |';
  const occam = new Map(records.filter((r) => r.dataset === dataset && r.strategy === 'occam').map((r) => [r.seed, r.figures]));
  const lines = baselines.map((baseline) => {
    const pairs = records
      .filter((r) => r.dataset === dataset && r.strategy === baseline && occam.has(r.seed))
      .map((r) => [occam.get(r.seed) as BestFigures, r.figures] as const);
    const lossDiff = pairs.map(([o, b]) => (o.testLoss ?? NaN) - (b.testLoss ?? NaN));
    const accDiff = pairs.map(([o, b]) => (o.testAccuracy ?? NaN) - (b.testAccuracy ?? NaN));
    const lower = lossDiff.filter((d) => d < 0).length;
    const higher = accDiff.filter((d) => d > 0).length;
    const ties = accDiff.filter((d) => d === 0).length;
    const bestRatio = stats(pairs.map(([o, b]) => o.computeToBest / b.computeToBest));
    const totalRatio = stats(pairs.map(([o, b]) => o.totalCompute / b.totalCompute));
    return `| ${strategyLabel(baseline, fineTuneRounds)} | ${fmtStats(stats(lossDiff), 4)} | ${lower}/${pairs.length} | ${fmtStats(stats(accDiff), 2, 100)} | ${higher}/${pairs.length}${ties ? ` (${ties} tied)` : ''} | ${fmtStats(bestRatio, 2)} | ${fmtStats(totalRatio, 2)} |`;
  });
  return [header, rule, ...lines].join('\n');
}

/** The opening lines of a results page: what ran, on which machine, the notes, and what the figures are. */
export function resultsHeader(h: {
  title: string;
  command: string;
  /** e.g. "3 seeds (1, 2, 3)" */
  runs: string;
  /** What the standard deviations are over: "seeds" or "splits". */
  over: string;
  totalWallS: number;
  machineAtStart: ReturnType<typeof machine>;
  machineAtEnd: ReturnType<typeof machine>;
  backends: string;
  notes: string[];
  skipped: { key: string; reason: string }[];
}): string[] {
  const start = h.machineAtStart;
  return [
    `# ${h.title}`,
    '',
    `Command: \`${h.command}\` — ${h.runs}, total time ${(h.totalWallS / 60).toFixed(1)} min.`,
    `Machine: ${start.cpu}, ${start.cores} cores, backend ${h.backends}, Node ${start.node}; load average (1/5/15 min) ${start.loadAverage.join(' / ')} at the start, ${h.machineAtEnd.loadAverage.join(' / ')} at the end.`,
    '',
    ...h.notes.map((n) => `- ${n}`),
    ...h.skipped.map((s) => `- Skipped ${s.key}: ${s.reason}`),
    '',
    `Figures are those of each run's best round (lowest holdback loss), mean ± sample standard deviation over the ${h.over}.`,
    '',
  ];
}

/** How the two pruning baselines of the image experiments are run, for their notes. */
export function baselinesNote(rounds: number, fineTuneRounds: number): string {
  return `\`posttrain\` trains ${rounds} rounds dense, prunes once to Occam's best-round density (same seed) and fine-tunes ${fineTuneRounds} round(s); \`gradual\` prunes after rounds 2 to ${rounds - 2} on the Zhu & Gupta cubic schedule to that density and trains the last 2 rounds at it; both pick their best round only among rounds at the target density.`;
}

/** `--seeds 5` means seeds 1..5; `--seeds 4,7` those seeds; absent, 1..`count`. */
export function seedList(arg: string | undefined, count: number): number[] {
  if (arg?.includes(',')) return arg.split(',').map(Number);
  const n = arg ? Number(arg) : count;
  if (!Number.isInteger(n) || n < 1) throw new Error(`--seeds: expected a count or a comma-separated list (got '${arg}')`);
  return Array.from({ length: n }, (_, i) => i + 1);
}

/** A whole strategy-comparison benchmark over some data sets: the image experiments are exactly this. */
export interface Comparison {
  /** Benchmark name: `npm run bench -- <name>`, docs/results/<name>.json and .md. */
  name: string;
  title: string;
  /** The command line that reproduces the results, as documented. */
  command: string;
  datasets: DatasetSpec[];
  /** Data sets left out, with the reason (e.g. the Debian package is not installed). */
  skipped: { key: string; reason: string }[];
  /** Sizes and choices a reader needs (subsets, widths, rounds), one Markdown bullet each. */
  notes: string[];
  seeds: number[];
  strategies: Strategy[];
  fineTuneRounds: number;
  /** false for a quick trial: print the tables, leave docs/results alone. */
  write: boolean;
}

/** Runs every data set × seed × strategy, prints the tables and writes docs/results/<name>.{json,md}. */
export async function runComparison(c: Comparison): Promise<void> {
  const progress = new Progress(c.name, c.datasets.length * c.seeds.length * c.strategies.length);
  const machineAtStart = machine();
  progress.log(
    `${c.title}: ${c.datasets.map((d) => d.key).join(', ')} × seeds ${c.seeds.join(',')} × ${c.strategies.join('/')} (load ${machineAtStart.loadAverage.join(' ')})`,
  );
  for (const s of c.skipped) progress.log(`skipping ${s.key}: ${s.reason}`);
  const records: RunRecord[] = [];
  for (const dataset of c.datasets) records.push(...(await compareStrategies(dataset, c.seeds, c.strategies, c.fineTuneRounds, progress)));
  const totalWallS = progress.elapsedS;
  const machineAtEnd = machine();

  const sections = c.datasets.map((dataset) => {
    const rows = strategyRows(records, dataset.key, c.strategies, c.fineTuneRounds);
    const baselines = c.strategies.filter((s) => s !== 'occam');
    return {
      dataset,
      rows,
      markdown: [`## ${dataset.title}`, '', summaryTable(rows), '', pairedTable(records, dataset.key, baselines, c.fineTuneRounds)].join(
        '\n',
      ),
    };
  });
  const backends = [...new Set(records.map((r) => r.backend))].join(', ');
  const markdown = [
    ...resultsHeader({
      ...c,
      runs: `${c.seeds.length} seeds (${c.seeds.join(', ')})`,
      over: 'seeds',
      totalWallS,
      machineAtStart,
      machineAtEnd,
      backends,
    }),
    ...sections.flatMap((s) => [s.markdown, '']),
  ].join('\n');
  console.log(`\n${markdown}`);
  if (!c.write) return;
  const result = {
    experiment: c.name,
    title: c.title,
    command: c.command,
    finishedAt: new Date().toISOString(),
    totalWallS: Number(totalWallS.toFixed(1)),
    machine: { ...machineAtStart, loadAverageAtEnd: machineAtEnd.loadAverage, backends },
    seeds: c.seeds,
    strategies: c.strategies,
    fineTuneRounds: c.fineTuneRounds,
    notes: c.notes,
    skipped: c.skipped,
    datasets: c.datasets,
    summary: Object.fromEntries(sections.map((s) => [s.dataset.key, s.rows.map(rowStats)])),
    runs: records,
  };
  const paths = writeResults(c.name, result, markdown);
  progress.log(`wrote ${paths.json} and ${paths.md}`);
}
