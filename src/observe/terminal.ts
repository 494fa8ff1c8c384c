// What a user watches during `occam train`: on a terminal, a live bar for the current round (steps/s,
// samples/s, loss, weights kept, round and run ETA) above a table that grows one row per round,
// both fitted to the terminal's width and redrawn when it is resized; elsewhere (not a TTY) the
// table rows and a progress line every few seconds; with --json every event as a JSON line on
// stdout; with --quiet nothing until the summary.
import { flopsUtilization, type TokenThroughput } from '../training/flops.ts';
import { join } from 'node:path';
import type { StepTimes } from '../wire/protocol.ts';
import { describeStraggler, type RunEvent } from './events.ts';
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
  ['round', 7, (m, rounds) => `${m.round}/${rounds}`],
  ['train', 8, (m) => fixed(m.trainLoss)],
  ['holdback', 9, (m) => fixed(m.holdbackLoss)],
  ['test', 8, (m) => fixed(m.testLoss)],
  ['test acc', 9, (m) => (m.testAccuracy === null ? '—' : `${(100 * m.testAccuracy).toFixed(1)}%`)],
  ['kept', 7, (m) => `${(100 * m.weightsKept).toFixed(1)}%`],
  ['p', 6, (m) => m.p.toFixed(3)],
  ['ms/step', 8, (m) => (m.stepMs.compute + m.stepMs.allreduce + m.stepMs.wait + m.stepMs.update).toFixed(1)],
  ['time', 8, (m) => formatSeconds(m.roundMs / 1000, 1)],
];

/** What the view writes to: a terminal (columns, resize events) or any stream. */
export interface ViewStream {
  write(text: string): unknown;
  columns?: number;
  on?(event: 'resize', listener: () => void): unknown;
}

/** How often a progress line is printed inside a round when the output is not a terminal. */
const PLAIN_PROGRESS_MS = 10_000;

export class TerminalView {
  private lastLineMs = 0;
  private batchSize = 1;
  /** The table's columns, fitted to the terminal's width when the header is printed. */
  private columns: typeof COLUMNS | null = null;
  private readonly roundSeconds: number[] = [];
  /** The live progress line as last drawn (for redrawing it after a resize). */
  private progressLine = '';
  private progressParts: string[] = [];
  private progressFraction = 0;

  constructor(
    private readonly mode: ProgressMode,
    private readonly out: ViewStream = process.stderr,
    private readonly plainProgressMs = PLAIN_PROGRESS_MS,
  ) {
    if (mode === 'tty') out.on?.('resize', () => this.redraw());
  }

  /** Token models: what turns steps/s into tokens/s and MFU (from the ring event). */
  private throughput: TokenThroughput | null = null;
  private peakFlops = 0;

  setBatchSize(batchSize: number): void {
    this.batchSize = batchSize;
  }

  handle(event: RunEvent): void {
    if (this.mode === 'json') {
      // Per-worker step reports are for metrics; 'progress' already carries what a script follows.
      if (event.type === 'steps') return;
      const json = event.type === 'progress' ? { ...event, workers: Object.fromEntries(event.workers) } : event;
      process.stdout.write(`${JSON.stringify(json)}\n`);
      return;
    }
    if (this.mode === 'quiet') return;
    switch (event.type) {
      case 'waiting':
        return this.line(`waiting for workers: ${event.ready}/${event.needed} ready`);
      case 'ring': {
        this.throughput = event.throughput;
        this.peakFlops = event.peakFlops.reduce((a, b) => a + b, 0);
        const peak =
          this.throughput && this.peakFlops > 0
            ? `; MFU against their measured matrix-product rate, ${formatFlops(this.peakFlops)} in all`
            : '';
        return this.line(
          `ring formed (generation ${event.generation}): ${event.workers.map((w, i) => `${w} (${event.hardware[i]})`).join(', ')}${peak}`,
        );
      }
      case 'restart':
        return this.line(`membership changed (${event.reason}); resuming from the last commit`);
      case 'resync':
        return this.line(`resynchronised ${event.workerId}: ${event.reason}`);
      case 'straggler':
        return this.line(describeStraggler(event));
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
    const now = Date.now();
    const plain = this.mode !== 'tty';
    if (now - this.lastLineMs < (plain ? this.plainProgressMs : 200) && (plain || event.step < event.roundEnd)) return;
    this.lastLineMs = now;
    const total = Math.max(1, event.roundEnd - event.roundStart);
    const done = event.step - event.roundStart;
    const stepsPerSecond = trainingStepRate(event.workers.values());
    const roundEta = stepsPerSecond > 0 ? (total - done) / stepsPerSecond : Infinity;
    const recent = this.roundSeconds.slice(-5);
    const meanRoundSeconds = recent.length > 0 ? recent.reduce((a, b) => a + b, 0) / recent.length : null;
    const runEta = runEtaSeconds({ ...event, stepsPerSecond, meanRoundSeconds });
    // In the order they are dropped from the end when the terminal is narrow; the bar goes first of all.
    const parts = [
      `round ${event.round}/${event.rounds}`,
      `${done}/${total}`,
      `loss ${event.loss.toFixed(4)}`,
      `kept ${(100 * event.weightsKept).toFixed(1)}%`,
      `${stepsPerSecond.toFixed(1)} steps/s`,
      `ETA ${formatSeconds(roundEta)} (run ${formatSeconds(runEta)})`,
      `${(stepsPerSecond * this.batchSize).toFixed(0)} samples/s`,
    ];
    if (this.throughput) {
      // A transformer's rate is read in tokens, and its efficiency as MFU.
      const tokensPerSecond = stepsPerSecond * this.throughput.tokensPerStep;
      const mfu = flopsUtilization(tokensPerSecond, this.throughput.flopsPerToken, this.peakFlops);
      parts.splice(parts.length - 1, 1, `${Math.round(tokensPerSecond).toLocaleString('en-US')} tok/s`);
      if (mfu !== null) parts.push(`MFU ${(100 * mfu).toFixed(1)}%`);
    }
    if (plain) return this.line(parts.join(' · '));
    this.progressParts = parts;
    this.progressFraction = done / total;
    this.draw();
  }

  /** The progress line fitted to the width: never wider, so it never wraps and always redraws in place. */
  private draw(): void {
    const width = (this.out.columns ?? 160) - 1;
    const [head, ...rest] = this.progressParts;
    let text = head;
    const barWidth = 20;
    const filled = Math.round(barWidth * this.progressFraction);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}`;
    const withBar = rest.reduce((line, part) => `${line} · ${part}`, `${head} ${bar}`);
    if (withBar.length <= width) text = withBar;
    else for (const part of rest) if (`${text} · ${part}`.length <= width) text = `${text} · ${part}`;
    this.progressLine = text.slice(0, width);
    // \x1b7 saves the cursor at the line's start: a resize may rewrap the line over several rows.
    this.out.write(`\r\x1b7\x1b[2K${this.progressLine}`);
  }

  /**
   * After a resize: terminals that reflow may have wrapped the progress line over several rows
   * (some wrap the cursor's line, some cut it). Back to its saved start (\x1b8; terminals move the
   * saved position with the reflow), erase to the end of the screen, and draw it to fit.
   */
  private redraw(): void {
    const width = this.out.columns ?? 160;
    // A table wider than the terminal now: the next round prints a header of the columns that fit.
    if (this.columns && this.columns.reduce((n, [, w]) => n + w + 1, 0) > width) this.columns = null;
    if (!this.progressLine) return;
    this.out.write('\x1b8\x1b[J');
    this.draw();
  }

  private round(m: RoundMetrics, rounds: number): void {
    this.roundSeconds.push(m.roundMs / 1000);
    if (!this.columns) {
      // As many columns as fit the terminal, from the left ('round' always).
      const width = this.mode === 'tty' ? (this.out.columns ?? 160) : Infinity;
      const ends = COLUMNS.map((_, i) => COLUMNS.slice(0, i + 1).reduce((n, [, w]) => n + w + 1, 0));
      this.columns = COLUMNS.filter((_, i) => ends[i] <= width || i === 0);
      this.line(this.columns.map(([name, w]) => name.padStart(w)).join(' '));
    }
    this.line(this.columns.map(([, w, cell]) => cell(m, rounds).padStart(w)).join(' '));
  }

  private line(text: string): void {
    this.progressLine = '';
    this.out.write(this.mode === 'tty' ? `\r\x1b[2K${text}\n` : `${text}\n`);
  }
}

/**
 * Training steps per second from the workers' step times (they step in lockstep, so any one's
 * rate is the ring's): time spent stepping only, not evaluation or pruning between rounds.
 */
/** FLOP/s in G or T. */
export function formatFlops(flops: number): string {
  return flops >= 1e12 ? `${(flops / 1e12).toFixed(2)} TFLOP/s` : `${(flops / 1e9).toFixed(1)} GFLOP/s`;
}

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
  const roundsAfter = Math.max(0, p.rounds - p.round);
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
    ['best round', best ? String(best.round) : '—'],
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
