// The live terminal view in a real terminal emulator (xterm.js, headless): at 60 columns the
// progress line keeps loss and weights kept, and after a resize to 40 columns mid-run the screen
// holds no stale fragment of an earlier progress line and no row wider than the terminal.
import { Terminal } from '@xterm/headless';
import { describe, expect, it } from 'vitest';
import type { RunEvent } from '../src/observe/events.ts';
import { TerminalView, type ViewStream } from '../src/observe/terminal.ts';
import type { RoundMetrics } from '../src/storage/run-dir.ts';
import type { StepTimes } from '../src/training/step-loop.ts';

const times = (steps: number): StepTimes => ({ steps, computeMs: 10 * steps, allreduceMs: 2 * steps, waitMs: steps, updateMs: steps });

/** Progress of round `round` (counted from 1) at global step `step`; 63 steps a round. */
function progress(round: number, step: number): RunEvent {
  return {
    type: 'progress',
    round,
    rounds: 12,
    step,
    roundStart: (round - 1) * 63,
    roundEnd: round * 63,
    loss: 0.4321,
    weightsKept: 0.6,
    workers: new Map([['w0', times(step - (round - 1) * 63)]]),
  };
}

function roundDone(round: number): RunEvent {
  const metrics: RoundMetrics = {
    round,
    step: round * 63,
    trainLoss: 0.5,
    holdbackLoss: 0.45,
    holdbackAccuracy: 0.9,
    testLoss: 0.44,
    testAccuracy: 0.91,
    weightsKept: 0.6,
    activeParams: 1000,
    p: 0.4,
    samples: 8000,
    compute: 8e6,
    roundMs: 4200,
    elapsedMs: 4200 * round,
    stepMs: { compute: 10, allreduce: 2, wait: 1, update: 1 },
    bytesPerStep: 1000,
    tokensPerSecond: null,
    mfu: null,
    workers: 1,
    resyncs: 0,
    restarts: 0,
  };
  return { type: 'round', metrics, rounds: 12 };
}

/** Everything on the screen and in the scrollback, one string per row. */
function screen(term: Terminal): string[] {
  const buffer = term.buffer.active;
  return Array.from({ length: buffer.length }, (_, i) => buffer.getLine(i)?.translateToString(true) ?? '').filter((row) => row !== '');
}

const flush = (term: Terminal) => new Promise<void>((resolve) => term.write('', resolve));

describe('the terminal view in a narrow terminal', () => {
  it('fits 60 columns, and redraws cleanly when resized to 40 mid-run', async () => {
    const term = new Terminal({ cols: 60, rows: 40, allowProposedApi: true });
    let onResize = () => {};
    const stream: ViewStream = { columns: 60, write: (text) => term.write(text), on: (_event, listener) => (onResize = listener) };
    const view = new TerminalView('tty', stream);
    // Progress lines are drawn at most every 200 ms; let each one through.
    const at = async (event: RunEvent) => {
      (view as unknown as { lastLineMs: number }).lastLineMs = 0;
      view.handle(event);
      await flush(term);
    };
    view.handle({ type: 'ring', generation: 1, workers: ['w0'], hardware: ['blas'], peakFlops: [1e9], throughput: null });
    for (const step of [10, 30, 50]) await at(progress(1, step));
    await at(roundDone(1));
    await at(progress(2, 70));
    const wide = screen(term);
    expect(wide[0]).toBe('ring formed (generation 1): w0 (blas)');
    const live = wide[wide.length - 1];
    expect(live).toMatch(/^round 2\/12 · 7\/63 · loss 0\.4321 · kept 60\.0%/);
    expect(wide.every((row) => row.length <= 60)).toBe(true);

    term.resize(40, 40);
    stream.columns = 40;
    onResize();
    await flush(term);
    for (const step of [90, 110]) await at(progress(2, step));
    await at(roundDone(2));
    await at(progress(3, 140));
    const narrow = screen(term);
    // Exactly one progress line: the live one, last; nothing left of the earlier, wider ones.
    const progressRows = narrow.filter((row) => /loss 0\.4321|steps\/s|samples\/s|ETA|kept 60\.0%$/.test(row));
    expect(progressRows, narrow.join('\n')).toEqual([narrow[narrow.length - 1]]);
    expect(narrow[narrow.length - 1]).toMatch(/^round 3\/12 · 14\/63 · loss 0\.4321/);
    // Nothing printed before the resize is lost: the first table row, rewrapped, is all there.
    expect(narrow.join('')).toContain('   1/12   0.5000    0.4500   0.4400     91.0%   60.0%');
    // Rows drawn after the resize fit: the table re-fits its columns with a new header.
    const afterResize = narrow.slice(
      narrow.lastIndexOf(narrow.find((row, i) => i > 0 && row.trimStart().startsWith('round') && !row.includes('/')) ?? ''),
    );
    expect(
      afterResize.every((row) => row.length <= 40),
      afterResize.join('\n'),
    ).toBe(true);
    term.dispose();
  });

  it('a transformer reads tokens/s and MFU against the peak the ring event states', async () => {
    const term = new Terminal({ cols: 160, rows: 10, allowProposedApi: true });
    const view = new TerminalView('tty', { columns: 160, write: (text) => term.write(text) });
    // 4,096 tokens a step, 1 MFLOP a token; steps of 14 ms (times()): 71.4 steps/s = 292,571 tok/s = 292.6 GFLOP/s of 1 TFLOP/s.
    view.handle({
      type: 'ring',
      generation: 1,
      workers: ['w0', 'w1'],
      hardware: ['blas', 'blas'],
      peakFlops: [5e11, 5e11],
      throughput: { tokensPerStep: 4096, flopsPerToken: 1e6 },
    });
    view.handle(progress(1, 10));
    await flush(term);
    const rows = screen(term);
    expect(rows[0]).toBe(
      'ring formed (generation 1): w0 (blas), w1 (blas); MFU against their measured matrix-product rate, 1.00 TFLOP/s in all',
    );
    expect(rows[rows.length - 1]).toMatch(/ · 292,571 tok\/s · MFU 29\.3%$/);
    expect(rows[rows.length - 1]).not.toContain('samples/s');
    term.dispose();
  });

  it('without a terminal it prints a progress line every few seconds inside a round', () => {
    const lines: string[] = [];
    const view = new TerminalView('plain', { write: (text) => lines.push(text) }, 0);
    view.handle(progress(1, 10));
    view.handle(progress(1, 20));
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(
      /^round 1\/12 · 20\/63 · loss 0\.4321 · kept 60\.0% · \d+\.\d steps\/s · ETA \S+ \(run \S+\) · \d+ samples\/s\n$/,
    );
    expect(lines.join('')).not.toContain('\u001b');
    const quiet: string[] = [];
    const seldom = new TerminalView('plain', { write: (text) => quiet.push(text) }, 60_000);
    seldom.handle(progress(1, 10));
    seldom.handle(progress(1, 20));
    expect(quiet, 'at most one line per interval').toHaveLength(1);
  });
});
