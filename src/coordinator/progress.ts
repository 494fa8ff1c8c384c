// What a user watches during `occam train`: on a terminal, one live line per round (bar, steps/s,
// samples/s, loss, weights kept, ETA) and a line per finished round; elsewhere one line per round;
// with --json every event as a JSON line on stdout; with --quiet nothing until the summary.
import type { RunEvent } from './coordinator.ts';
import type { RunSummary } from './run-dir.ts';

export type ProgressMode = 'tty' | 'plain' | 'json' | 'quiet';

export function progressMode(flags: { json?: boolean; quiet?: boolean }, stream: NodeJS.WriteStream): ProgressMode {
  if (flags.json) return 'json';
  if (flags.quiet) return 'quiet';
  return stream.isTTY ? 'tty' : 'plain';
}

export class ProgressView {
  private lastLineMs = 0;
  private roundStartedMs = Date.now();
  private roundStartStep = 0;
  private batchSize = 1;

  constructor(
    private readonly mode: ProgressMode,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}

  setBatchSize(batchSize: number): void {
    this.batchSize = batchSize;
  }

  handle(event: RunEvent): void {
    if (this.mode === 'json') {
      const { workers: _w, ...rest } = event as RunEvent & { workers?: unknown };
      process.stdout.write(JSON.stringify(rest) + '\n');
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
      case 'done':
        return;
    }
  }

  private progress(event: Extract<RunEvent, { type: 'progress' }>): void {
    if (event.step === event.roundStart || this.roundStartStep !== event.roundStart) {
      this.roundStartStep = event.roundStart;
      this.roundStartedMs = Date.now();
    }
    if (this.mode !== 'tty') return;
    const now = Date.now();
    if (now - this.lastLineMs < 200 && event.step < event.roundEnd) return;
    this.lastLineMs = now;
    const total = Math.max(1, event.roundEnd - event.roundStart);
    const done = event.step - event.roundStart;
    const seconds = Math.max(1e-3, (now - this.roundStartedMs) / 1000);
    const stepsPerSecond = done / seconds;
    const eta = stepsPerSecond > 0 ? (total - done) / stepsPerSecond : 0;
    const width = 24;
    const filled = Math.round((width * done) / total);
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    const text = `round ${event.round + 1}/${event.rounds} ${bar} ${done}/${total} · ${stepsPerSecond.toFixed(1)} steps/s · ${(stepsPerSecond * this.batchSize).toFixed(0)} samples/s · loss ${event.loss.toFixed(4)} · kept ${(100 * event.weightsKept).toFixed(1)}% · ETA ${formatSeconds(eta)}`;
    this.out.write(`\r\x1b[2K${text}`);
  }

  private round(m: RunSummary['final'] & object, rounds: number): void {
    const fmt = (x: number | null, digits = 4) => (x === null ? '—' : x.toFixed(digits));
    const text = `round ${m.round + 1}/${rounds}: train ${fmt(m.trainLoss)} · holdback ${fmt(m.holdbackLoss)} · test ${fmt(m.testLoss)} (acc ${fmt(m.testAccuracy, 3)}) · kept ${(100 * m.weightsKept).toFixed(1)}% · p ${m.p.toFixed(3)} · ${(m.roundMs / 1000).toFixed(1)} s`;
    this.line(text);
  }

  private line(text: string): void {
    this.out.write(this.mode === 'tty' ? `\r\x1b[2K${text}\n` : `${text}\n`);
  }
}

/** The end-of-run table. */
export function formatSummary(summary: RunSummary): string {
  const best = summary.best;
  const rows: [string, string][] = [
    ['run directory', summary.runDir],
    ['strategy', summary.strategy],
    ['rounds', String(summary.rounds)],
    ['best round', best ? String(best.round + 1) : '—'],
    ['best holdback loss', best ? best.holdbackLoss.toFixed(4) : '—'],
    ['test loss', best?.testLoss != null ? best.testLoss.toFixed(4) : '—'],
    ['test accuracy', best?.testAccuracy != null ? best.testAccuracy.toFixed(4) : '—'],
    ['weights kept', best ? `${(100 * best.weightsKept).toFixed(1)}%` : '—'],
    ['compute (active weights × samples)', best ? best.compute.toExponential(3) : '—'],
    ['wall time', `${(summary.wallMs / 1000).toFixed(1)} s`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '—';
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}
