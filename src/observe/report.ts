import { writeAtomically } from '../storage/atomic-file.ts';
import { basename, join, resolve } from 'node:path';
import type { OccamConfig } from '../config.ts';
import { escapeXml, formatModelSizes, formatNumber, formatPercent, lineChart, PALETTE, stackedBarChart, type Series } from './plots.ts';
import { readMetrics, readRunConfig, readSummary, type RoundMetrics, type RunSummary } from '../storage/run-dir.ts';
import { failureCounts, readFailureLog, type FailureEvent } from '../storage/failure-log.ts';
import { failureHistorySection } from './failure-history.ts';

/** What a report needs of one run. */
export interface RunRecord {
  name: string;
  runDir: string;
  config: OccamConfig;
  metrics: RoundMetrics[];
  /** Absent while the run is still going (or when it crashed). */
  summary: RunSummary | null;
  /** events.jsonl: the failure history, as it happened. */
  failures: FailureEvent[];
}

export const REPORT_FILE = 'report.html';

/** The step-time phases, in stacking order, as RoundMetrics.stepMs names them. */
export const STEP_PHASES = [
  { key: 'compute', name: 'compute (forward/backward)', color: '#4e79a7' },
  { key: 'allreduce', name: 'all-reduce transfer', color: '#f28e2b' },
  { key: 'wait', name: 'waiting for peers', color: '#e15759' },
  { key: 'update', name: 'update (Adam)', color: '#76b7b2' },
] as const;

export function readRun(runDir: string): RunRecord {
  const dir = resolve(runDir);
  return {
    name: basename(dir),
    runDir: dir,
    config: readRunConfig(dir),
    metrics: readMetrics(dir),
    summary: readSummary(dir),
    failures: readFailureLog(dir),
  };
}

/** Writes RUN_DIR/report.html and returns its path. */
export function writeRunReport(runDir: string): string {
  const path = join(runDir, REPORT_FILE);
  writeAtomically(path, renderReport([readRun(runDir)]));
  return path;
}

/** Writes one report comparing several runs on the same axes; returns its path. */
export function writeComparisonReport(runDirs: string[], out: string): string {
  const runs = runDirs.map(readRun);
  const seen = new Map<string, number>();
  for (const run of runs) {
    // Two runs named alike (runs/a/x and runs/b/x) stay apart in the legends.
    const count = (seen.get(run.name) ?? 0) + 1;
    seen.set(run.name, count);
    if (count > 1) run.name = `${run.name} (${count})`;
  }
  writeAtomically(out, renderReport(runs));
  return out;
}

export function renderReport(runs: RunRecord[], generatedAt = new Date()): string {
  const single = runs.length === 1;
  const title = single ? `Occam run report — ${runs[0].name}` : `Occam comparison — ${runs.map((r) => r.name).join(' vs ')}`;
  const charts = [...lossCharts(runs), accuracyChart(runs), weightsKeptChart(runs), pruneFractionChart(runs), computeChart(runs)];
  if (!single) charts.push(lossVsComputeChart(runs));
  charts.push(stepTimeChart(runs), bytesChart(runs));
  const body = [
    `<header><h1>${escapeXml(title)}</h1><p class="muted">generated ${escapeXml(generatedAt.toISOString().replace('T', ' ').slice(0, 19))} UTC · ${runs.map((r) => escapeXml(configLine(r.config))).join('<br>')}</p></header>`,
    ...runs
      .filter((r) => r.summary?.failure)
      .map((r) => `<section class="failure"><h2>${escapeXml(r.name)} failed</h2><p>${escapeXml(r.summary?.failure ?? '')}</p></section>`),
    `<section><h2>Summary</h2>${summaryTable(runs)}</section>`,
    `<section><h2>Per round</h2><div class="charts">${charts.map((svg) => `<figure>${svg}</figure>`).join('')}</div></section>`,
    ...runs.map(
      (run) =>
        `<section><details${single ? ' open' : ''}><summary>Rounds of ${escapeXml(run.name)}</summary>${roundTable(run.metrics)}</details></section>`,
    ),
    ...runs.map((run) => failureHistorySection(run.name, run.failures)),
  ].join('\n');
  return pageShell(title, body);
}

// ─── charts (shared with the live status page) ─────────────────────────────────────────────────

/** One chart of train/holdback/test loss for a single run; one chart per split for several. */
export function lossCharts(runs: RunRecord[]): string[] {
  const splits = [
    { key: 'trainLoss', name: 'train' },
    { key: 'holdbackLoss', name: 'holdback' },
    { key: 'testLoss', name: 'test' },
  ] as const;
  if (runs.length === 1) {
    const [run] = runs;
    const best = run.summary?.best;
    return [
      lineChart({
        title: 'Loss per round',
        xLabel: 'Round',
        yLabel: 'Cross-entropy loss',
        integerX: true,
        series: splits.map((s, i) => ({ name: `${s.name} loss`, color: PALETTE[i], points: perRound(run, (m) => m[s.key]) })),
        marker: best ? { x: best.round, label: `best round ${best.round}` } : undefined,
      }),
    ];
  }
  return splits.map((s) =>
    lineChart({
      title: `${capitalize(s.name)} loss per round`,
      xLabel: 'Round',
      yLabel: 'Cross-entropy loss',
      integerX: true,
      series: perRun(runs, (m) => m[s.key], `${s.name} loss`),
    }),
  );
}

export function accuracyChart(runs: RunRecord[]): string {
  const series: Series[] =
    runs.length === 1
      ? [
          { name: 'holdback accuracy', color: PALETTE[1], points: perRound(runs[0], (m) => m.holdbackAccuracy) },
          { name: 'test accuracy', color: PALETTE[2], points: perRound(runs[0], (m) => m.testAccuracy) },
        ]
      : perRun(runs, (m) => m.testAccuracy, 'test accuracy');
  return lineChart({
    title: runs.length === 1 ? 'Accuracy per round' : 'Test accuracy per round',
    xLabel: 'Round',
    yLabel: 'Accuracy',
    integerX: true,
    series,
    formatY: formatPercent,
  });
}

export function weightsKeptChart(runs: RunRecord[]): string {
  return lineChart({
    title: 'Fraction of weights kept (while training the round)',
    xLabel: 'Round',
    yLabel: 'Weights kept',
    integerX: true,
    series: perRun(runs, (m) => m.weightsKept, 'weights kept'),
    yInclude: [0, 1],
    formatY: formatPercent,
  });
}

export function pruneFractionChart(runs: RunRecord[]): string {
  return lineChart({
    title: 'Pruning fraction p (after the round)',
    xLabel: 'Round',
    yLabel: 'p',
    integerX: true,
    series: perRun(runs, (m) => m.p, 'p'),
    yInclude: [0],
  });
}

export function computeChart(runs: RunRecord[]): string {
  return lineChart({
    title: 'Compute, cumulative (active weights × samples)',
    xLabel: 'Round',
    yLabel: 'Weight-samples',
    integerX: true,
    series: perRun(runs, (m) => m.compute, 'compute'),
    yInclude: [0],
  });
}

/** The paper's trade-off: what test loss a run reached for the compute it spent. */
export function lossVsComputeChart(runs: RunRecord[]): string {
  const series = runs.map((run, i) => ({
    name: run.name,
    color: PALETTE[i % PALETTE.length],
    points: run.metrics.map((m) => ({ x: m.compute, y: m.testLoss ?? m.holdbackLoss })),
  }));
  return lineChart({ title: 'Test loss against compute', xLabel: 'Compute (weight-samples)', yLabel: 'Test loss', series });
}

/** Mean milliseconds per step by phase: per round for one run, per run (over its rounds) for several. */
export function stepTimeChart(runs: RunRecord[]): string {
  if (runs.length === 1) {
    const metrics = runs[0].metrics;
    return stackedBarChart({
      title: 'Step time breakdown per round',
      xLabel: 'Round',
      yLabel: 'ms per step',
      categories: metrics.map((m) => String(m.round)),
      stacks: STEP_PHASES.map((phase) => ({ name: phase.name, color: phase.color, values: metrics.map((m) => m.stepMs[phase.key]) })),
    });
  }
  const means = runs.map((run) => meanStepMs(run.metrics));
  return stackedBarChart({
    title: 'Step time breakdown (mean over rounds)',
    xLabel: 'Run',
    yLabel: 'ms per step',
    categories: runs.map((r) => r.name),
    stacks: STEP_PHASES.map((phase) => ({ name: phase.name, color: phase.color, values: means.map((m) => m[phase.key]) })),
  });
}

export function bytesChart(runs: RunRecord[]): string {
  return lineChart({
    title: 'All-reduce bytes sent per step (rank 0)',
    xLabel: 'Round',
    yLabel: 'Bytes per step',
    integerX: true,
    series: perRun(runs, (m) => m.bytesPerStep, 'bytes per step'),
    yInclude: [0],
  });
}

/** Step-weighted mean of the per-round step times. */
export function meanStepMs(metrics: RoundMetrics[]): RoundMetrics['stepMs'] {
  const total = { compute: 0, allreduce: 0, wait: 0, update: 0 };
  let steps = 0;
  let previousStep = 0;
  for (const m of metrics) {
    const n = Math.max(0, m.step - previousStep);
    previousStep = m.step;
    for (const phase of STEP_PHASES) total[phase.key] += m.stepMs[phase.key] * n;
    steps += n;
  }
  for (const phase of STEP_PHASES) total[phase.key] /= Math.max(1, steps);
  return total;
}

// ─── tables and page ──────────────────────────────────────────────────────────────────────────

function summaryTable(runs: RunRecord[]): string {
  const header = [
    'run',
    'strategy',
    'rounds',
    'best round',
    'best holdback loss',
    'test loss',
    'test accuracy',
    'weights kept',
    'compute',
    'model size (sparse / dense)',
    'wall time',
    'workers',
    'resyncs / restarts',
  ];
  const rows = runs.map((run) => {
    const best = bestOf(run);
    const last = run.metrics[run.metrics.length - 1];
    const wallMs = run.summary?.wallMs ?? last?.elapsedMs;
    return [
      run.name,
      run.config.strategy,
      `${run.metrics.length}${run.summary?.failure ? ' (failed)' : run.summary ? '' : ' (unfinished)'}`,
      best ? String(best.round) : '—',
      best ? best.holdbackLoss.toFixed(4) : '—',
      best?.testLoss != null ? best.testLoss.toFixed(4) : '—',
      best?.testAccuracy != null ? formatPercent(best.testAccuracy) : '—',
      best ? formatPercent(best.weightsKept) : '—',
      best ? formatNumber(best.compute) : '—',
      run.summary?.modelSizes ? formatModelSizes(run.summary.modelSizes) : '—',
      wallMs !== undefined ? `${(wallMs / 1000).toFixed(1)} s` : '—',
      last ? String(last.workers) : '—',
      last ? `${last.resyncs} / ${failureCounts(run.failures).restarts}` : '—',
    ];
  });
  return `${table(header, rows)}<p class="muted">Best round: the lowest holdback loss; test loss, accuracy, weights kept and compute are those of its model.</p>`;
}

function roundTable(metrics: RoundMetrics[]): string {
  const fixed = (x: number | null, digits = 4) => (x === null ? '—' : x.toFixed(digits));
  // A token model's rounds carry tokens/s and MFU (MFU against the workers' measured matrix-product rate).
  const tokens = metrics.some((m) => m.tokensPerSecond != null);
  const header = [
    'round',
    'step',
    'train loss',
    'holdback loss',
    'test loss',
    'test acc',
    'kept',
    'p',
    'ms/step',
    'compute / all-reduce / wait / update (ms)',
    'bytes/step',
    ...(tokens ? ['tokens/s', 'MFU'] : []),
    'round time',
  ];
  const rows = metrics.map((m) => [
    String(m.round),
    String(m.step),
    fixed(m.trainLoss),
    fixed(m.holdbackLoss),
    fixed(m.testLoss),
    m.testAccuracy === null ? '—' : formatPercent(m.testAccuracy),
    formatPercent(m.weightsKept),
    m.p.toFixed(3),
    (m.stepMs.compute + m.stepMs.allreduce + m.stepMs.wait + m.stepMs.update).toFixed(1),
    STEP_PHASES.map((phase) => m.stepMs[phase.key].toFixed(1)).join(' / '),
    formatNumber(m.bytesPerStep),
    ...(tokens ? [m.tokensPerSecond == null ? '—' : formatNumber(m.tokensPerSecond), m.mfu == null ? '—' : formatPercent(m.mfu)] : []),
    `${(m.roundMs / 1000).toFixed(1)} s`,
  ]);
  return table(header, rows);
}

/** The summary's best round, or (for an unfinished run) the round with the lowest holdback loss so far. */
function bestOf(run: RunRecord): RunSummary['best'] {
  if (run.summary?.best) return run.summary.best;
  let best: RunSummary['best'] = null;
  for (const m of run.metrics) {
    const loss = m.holdbackLoss ?? m.trainLoss;
    if (loss === null || !Number.isFinite(loss) || (best && loss >= best.holdbackLoss)) continue;
    best = {
      round: m.round,
      holdbackLoss: loss,
      testLoss: m.testLoss,
      testAccuracy: m.testAccuracy,
      weightsKept: m.weightsKept,
      activeParams: m.activeParams,
      compute: m.compute,
    };
  }
  return best;
}

function table(header: string[], rows: string[][]): string {
  const head = header.map((h) => `<th>${escapeXml(h)}</th>`).join('');
  const body = rows.map((row) => `<tr>${row.map((cell) => `<td>${escapeXml(cell)}</td>`).join('')}</tr>`).join('');
  return `<div class="scroll"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}

export function configLine(config: OccamConfig): string {
  const model = config.model === 'gpt' ? `gpt (${config.layers} layers, width ${config.width})` : `${config.model} (${config.units} units)`;
  return `${config.dataset} · ${model} · strategy ${config.strategy} · p0 ${config.p0} · ${config.workers} workers · batch ${config.batchSize} · lr ${config.learningRate} · ${config.rounds} rounds · seed ${config.seed}`;
}

const PAGE_CSS = `
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; padding: 16px 24px 40px; max-width: 1400px; color: #1b1b1b; background: #f6f7f9; }
  h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 24px 0 8px; }
  .muted { color: #666; font-size: 13px; margin: 4px 0; }
  .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 14px; }
  figure { margin: 0; background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: 6px; }
  svg.chart { width: 100%; height: auto; display: block; }
  .scroll { overflow-x: auto; }
  table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
  th, td { border: 1px solid #e1e4e8; padding: 4px 9px; text-align: right; white-space: nowrap; }
  th { background: #f0f2f5; font-weight: 600; white-space: normal; vertical-align: bottom; } td:first-child, th:first-child { text-align: left; }
  summary { cursor: pointer; font-weight: 600; margin: 6px 0; }
  .tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
  .tile { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: 8px 10px; }
  .tile .label { color: #666; font-size: 12px; } .tile .value { font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
  .bar-outer { height: 8px; background: #e6e8eb; border-radius: 4px; overflow: hidden; margin-top: 4px; } .bar-inner { height: 100%; background: #4e79a7; }
  ul.events { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: 8px 28px; margin: 0; font-size: 13px; }
`;

/** A complete page: inline styles only, an empty icon so the browser fetches nothing else. */
export function pageShell(title: string, body: string, script = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${escapeXml(title)}</title>
<style>${PAGE_CSS}</style>
</head>
<body>
${body}
${script ? `<script>${script}</script>` : ''}
</body>
</html>
`;
}

// ─── helpers ──────────────────────────────────────────────────────────────────────────────────

function perRound(run: RunRecord, pick: (m: RoundMetrics) => number | null): { x: number; y: number | null }[] {
  return run.metrics.map((m) => ({ x: m.round, y: pick(m) }));
}

/** A series per run named after it; a single run's one series is named after what it shows. */
function perRun(runs: RunRecord[], pick: (m: RoundMetrics) => number | null, singleName: string): Series[] {
  return runs.map((run, i) => ({
    name: runs.length === 1 ? singleName : run.name,
    color: PALETTE[i % PALETTE.length],
    points: perRound(run, pick),
  }));
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
