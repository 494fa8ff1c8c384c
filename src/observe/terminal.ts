// What a user watches during `occam train`: on a terminal, a live bar for the current round (steps/s,
// samples/s, loss, weights kept, round and run ETA) above a table that grows one row per round;
// elsewhere (not a TTY) just the table rows; with --json every event as a JSON line on stdout;
// with --quiet nothing until the summary.
import { join } from 'node:path';
import type { StepTimes } from '../wire/protocol.ts';
import type { RunEvent } from './events.ts';
import { formatModelSizes } from './plots.ts';
import { REPORT_FILE } from './report.ts';
import type { RoundMetrics, RunSummary } from '../storage/run-dir.ts';

export type ProgressMode = 'tty' | 'plain' | 'json' | 'quiet';

export function terminalMode(flags: { json?: boolean; quiet?: boolean }, stream: NodeJS.WriteStream): ProgressMode {
  if (flags.json) return 'json';
  if (flags.quiet) return 'quiet';
  return stream.isTTY ? 'tty' : 'plain';
}

/** The round table's columns: header, width, and how a round fills it. */
const COLUMNS: [string, number, (m: RoundMetrics, rounds: number) => string][] = [
  ['round', 7, (m, rounds) => `${m.round + 1}/${rounds}`],
  ['train', 8, (m) => fixed(m.trainLoss)],
  ['holdback', 9, (m) => fixed(m.holdbackLoss)],
  ['test', 8, (m) => fixed(m.testLoss)],
  ['test acc', 9, (m) => (m.testAccuracy === null ? '—' : `${(100 * m.testAccuracy).toFixed(1)}%`)],
  ['kept', 7, (m) => `${(100 * m.weightsKept).toFixed(1)}%`],
  ['p', 6, (m) => m.p.toFixed(3)],
  ['ms/step', 8, (m) => (m.stepMs.compute + m.stepMs.allreduce + m.stepMs.wait + m.stepMs.update).toFixed(1)],
  ['time', 8, (m) => formatSeconds(m.roundMs / 1000, 1)],
];

export class TerminalView {
  private lastLineMs = 0;
  private batchSize = 1;
  private headerShown = false;
  private readonly roundSeconds: number[] = [];

  constructor(
    private readonly mode: ProgressMode,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  setBatchSize(batchSize: number): void {
    this.batchSize = batchSize;
  }

  handle(event: RunEvent): void {
    if (this.mode === 'json') {
      // Per-worker step reports are for metrics; 'progress' already carries what a script follows.
      if (event.type === 'steps') return;
      const { workers: _w, ...rest } = event as RunEvent & { workers?: unknown };
      process.stdout.write(`${JSON.stringify(rest)}\n`);
      return;
    }
    if (this.mode === 'quiet') return;
    switch (event.type) {
      case 'waiting':
        return this.line(`waiting for workers: ${event.ready}/${event.needed} ready`);
      case 'ring':
        return this.line(`ring formed (generation ${event.generation}): ${event.workers.join(', ')}`);
      case 'restart':
        return this.line(`membership changed (${event.reason}); resuming from the last commit`);
      case 'resync':
        return this.line(`resynchronised ${event.workerId}: ${event.reason}`);
      case 'progress':
        return this.progress(event);
      case 'round':
        return this.round(event.metrics, event.rounds);
      case 'steps':
      case 'done':
        return;
    }
  }

  private progress(event: Extract<RunEvent, { type: 'progress' }>): void {
    if (this.mode !== 'tty') return;
    const now = Date.now();
    if (now - this.lastLineMs < 200 && event.step < event.roundEnd) return;
    this.lastLineMs = now;
    const total = Math.max(1, event.roundEnd - event.roundStart);
    const done = event.step - event.roundStart;
    const stepsPerSecond = trainingStepRate(event.workers.values());
    const roundEta = stepsPerSecond > 0 ? (total - done) / stepsPerSecond : Infinity;
    const recent = this.roundSeconds.slice(-5);
    const meanRoundSeconds = recent.length > 0 ? recent.reduce((a, b) => a + b, 0) / recent.length : null;
    const runEta = runEtaSeconds({ ...event, stepsPerSecond, meanRoundSeconds });
    const width = 20;
    const filled = Math.round((width * done) / total);
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    const text = `round ${event.round + 1}/${event.rounds} ${bar} ${done}/${total} · ETA ${formatSeconds(roundEta)} (run ${formatSeconds(runEta)}) · loss ${event.loss.toFixed(4)} · kept ${(100 * event.weightsKept).toFixed(1)}% · ${stepsPerSecond.toFixed(1)} steps/s · ${(stepsPerSecond * this.batchSize).toFixed(0)} samples/s`;
    // Never wrap (a wrapped line could not be redrawn in place): narrow terminals lose the tail.
    const columns = this.out.columns ?? 160;
    this.out.write(`\r\x1b[2K${text.length > columns - 1 ? `${text.slice(0, columns - 2)}…` : text}`);
  }

  private round(m: RoundMetrics, rounds: number): void {
    this.roundSeconds.push(m.roundMs / 1000);
    if (!this.headerShown) {
      this.headerShown = true;
      this.line(COLUMNS.map(([name, width]) => name.padStart(width)).join(' '));
    }
    this.line(COLUMNS.map(([, width, cell]) => cell(m, rounds).padStart(width)).join(' '));
  }

  private line(text: string): void {
    this.out.write(this.mode === 'tty' ? `\r\x1b[2K${text}\n` : `${text}\n`);
  }
}

/**
 * Training steps per second from the workers' step times (they step in lockstep, so any one's
 * rate is the ring's): time spent stepping only, not evaluation or pruning between rounds.
 */
export function trainingStepRate(times: Iterable<StepTimes>): number {
  let steps = 0;
  let ms = 0;
  for (const t of times) {
    steps += t.steps;
    ms += t.computeMs + t.allreduceMs + t.waitMs + t.updateMs;
  }
  return ms > 0 ? (1000 * steps) / ms : 0;
}

/**
 * Seconds left in the run: the rest of the current round at its step rate, then each later round at
 * the mean time of recent rounds (evaluation and pruning included), or at the step rate before any.
 */
export function runEtaSeconds(p: {
  round: number;
  rounds: number;
  step: number;
  roundStart: number;
  roundEnd: number;
  stepsPerSecond: number;
  meanRoundSeconds: number | null;
}): number {
  const roundLeft = p.stepsPerSecond > 0 ? (p.roundEnd - p.step) / p.stepsPerSecond : Infinity;
  const roundsAfter = Math.max(0, p.rounds - p.round - 1);
  if (roundsAfter === 0) return roundLeft;
  const perRound = p.meanRoundSeconds ?? (p.stepsPerSecond > 0 ? (p.roundEnd - p.roundStart) / p.stepsPerSecond : Infinity);
  return roundLeft + roundsAfter * perRound;
}

/** The end-of-run table. */
export function formatSummary(summary: RunSummary): string {
  const best = summary.best;
  const final = summary.final;
  const rows: [string, string][] = [
    ['run directory', summary.runDir],
    ['strategy', summary.strategy],
    ['rounds', summary.stopReason ? `${summary.rounds} (${summary.stopReason})` : String(summary.rounds)],
    ['best round', best ? String(best.round + 1) : '—'],
    ['best holdback loss', best ? best.holdbackLoss.toFixed(4) : '—'],
    ['test loss', best?.testLoss != null ? best.testLoss.toFixed(4) : '—'],
    ['test accuracy', best?.testAccuracy != null ? best.testAccuracy.toFixed(4) : '—'],
    [
      'weights kept',
      best
        ? `${(100 * best.weightsKept).toFixed(1)}%${final && final.round !== best.round ? ` (last round: ${(100 * final.weightsKept).toFixed(1)}%)` : ''}`
        : '—',
    ],
    ['compute (active weights × samples)', best ? best.compute.toExponential(3) : '—'],
    ['model size (sparse / dense)', summary.modelSizes ? formatModelSizes(summary.modelSizes) : '—'],
    ['wall time', `${(summary.wallMs / 1000).toFixed(1)} s`],
    ['resyncs / restarts', `${summary.resyncs} / ${summary.restarts}`],
    ['report', join(summary.runDir, REPORT_FILE)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

/** "42s", "3m05s", "1h02m"; `digits` keeps tenths for short times. */
export function formatSeconds(seconds: number, digits = 0): string {
  if (!Number.isFinite(seconds)) return '—';
  if (seconds < 60 && digits > 0) return `${seconds.toFixed(digits)}s`;
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

function fixed(x: number | null, digits = 4): string {
  return x === null ? '—' : x.toFixed(digits);
}
