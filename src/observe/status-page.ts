// The live status page at the coordinator's `/`: LiveRun follows the RunEvent stream, and the page
// polls `/live.json` for fresh HTML fragments (headline tiles and server-rendered SVG charts: loss
// curves, weights kept and p per round, per-worker step times) that its few lines of script swap in.
import type { OccamConfig } from '../config.ts';
import type { StepTimes } from '../wire/protocol.ts';
import { describeStraggler, type RunEvent } from './events.ts';
import { escapeXml, formatNumber, formatPercent, lineChart, stackedBarChart, type Point } from './plots.ts';
import { formatSeconds, runEtaSeconds, trainingStepRate } from './terminal.ts';
import {
  configLine,
  lossCharts,
  pageShell,
  pruneFractionChart,
  STEP_PHASES,
  stepTimeChart,
  weightsKeptChart,
  type RunRecord,
} from './report.ts';
import { readMetrics, type RoundMetrics, type RunSummary } from '../storage/run-dir.ts';

export interface LiveSnapshot {
  runId: string;
  phase: Phase;
  /** HTML fragments by the name of the page element (data-section) they replace. */
  sections: Record<string, string>;
}

type Phase = 'waiting' | 'training' | 'done';
type ProgressEvent = Extract<RunEvent, { type: 'progress' }>;

/** Per-step loss points kept for the live curve; older points are thinned out beyond this. */
const MAX_STEP_POINTS = 1200;
const MAX_EVENTS = 12;

export class LiveRun {
  private phase: Phase = 'waiting';
  private history: RoundMetrics[] = [];
  private stepLosses: Point[] = [];
  private progress: ProgressEvent | null = null;
  private readonly workers = new Map<string, { times: StepTimes; bytesSent: number }>();
  private members: string[] = [];
  private generation = 0;
  private waiting = { ready: 0, needed: 0 };
  private counts = { resyncs: 0, restarts: 0 };
  private readonly events: { atMs: number; text: string }[] = [];
  private summary: RunSummary | null = null;
  private readonly startedMs = Date.now();

  constructor(readonly info: { runId: string; runDir: string; config: OccamConfig }) {}

  /** Rounds finished so far (a resumed run's history included). */
  get rounds(): RoundMetrics[] {
    return this.history;
  }

  handle(event: RunEvent): void {
    switch (event.type) {
      case 'waiting':
        this.phase = 'waiting';
        this.waiting = { ready: event.ready, needed: event.needed };
        return;
      case 'ring':
        // The committed history: a resumed run's metrics.jsonl was rewritten before the ring formed.
        this.history = readMetrics(this.info.runDir);
        this.phase = 'training';
        this.members = event.workers;
        this.generation = event.generation;
        this.workers.clear();
        return this.note(`ring formed (generation ${event.generation}): ${event.workers.join(', ')}`);
      case 'restart':
        this.counts.restarts++;
        return this.note(`membership changed: ${event.reason}; resuming from the last commit`);
      case 'resync':
        this.counts.resyncs++;
        return this.note(`resynchronised ${event.workerId}: ${event.reason}`);
      case 'straggler':
        return this.note(describeStraggler(event));
      case 'progress':
        return this.onProgress(event);
      case 'steps':
        this.workers.set(event.workerId, { times: event.times, bytesSent: event.bytesSent });
        return;
      case 'round':
        this.history = [...this.history.filter((m) => m.round < event.metrics.round), event.metrics];
        return;
      case 'done':
        this.phase = 'done';
        this.summary = event.summary;
        return this.note('run finished');
    }
  }

  snapshot(): LiveSnapshot {
    const record: RunRecord = {
      name: this.info.runId,
      runDir: this.info.runDir,
      config: this.info.config,
      metrics: this.history,
      summary: this.summary,
      failures: [],
    };
    return {
      runId: this.info.runId,
      phase: this.phase,
      sections: {
        headline: this.headline(),
        loss: lossCharts([record])[0],
        'step-loss': lineChart({
          title: 'Training loss per step (live, rank 0)',
          xLabel: 'Step',
          yLabel: 'Cross-entropy loss',
          integerX: true,
          series: [{ name: 'train loss', points: this.stepLosses }],
        }),
        kept: weightsKeptChart([record]),
        p: pruneFractionChart([record]),
        workers: this.workerChart(),
        'step-time': stepTimeChart([record]),
        events: `<ul class="events">${this.events.map((e) => `<li>${new Date(e.atMs).toISOString().slice(11, 19)} ${escapeXml(e.text)}</li>`).join('') || '<li>no events yet</li>'}</ul>`,
      },
    };
  }

  private onProgress(event: ProgressEvent): void {
    this.progress = event;
    // After a restart the run redoes steps from the last commit: the curve rewinds with it.
    while (this.stepLosses.length > 0 && this.stepLosses[this.stepLosses.length - 1].x >= event.step) this.stepLosses.pop();
    this.stepLosses.push({ x: event.step, y: event.loss });
    if (this.stepLosses.length > MAX_STEP_POINTS)
      this.stepLosses = this.stepLosses.filter((_, i) => i % 2 === 0 || i === this.stepLosses.length - 1);
  }

  private headline(): string {
    const p = this.progress;
    const last = this.history[this.history.length - 1];
    const stepsPerSecond = trainingStepRate([...this.workers.values()].map((w) => w.times));
    const roundSeconds = this.history.slice(-5).map((m) => m.roundMs / 1000);
    const meanRoundSeconds = roundSeconds.length > 0 ? roundSeconds.reduce((a, b) => a + b, 0) / roundSeconds.length : null;
    const eta = p && this.phase === 'training' ? runEtaSeconds({ ...p, stepsPerSecond, meanRoundSeconds }) : null;
    // The last progress report may belong to a round that has since finished: show the next one.
    const finished = p !== null && last !== undefined && last.round >= p.round;
    const roundLabel = !p || finished ? 'round' : `round (${p.step - p.roundStart}/${p.roundEnd - p.roundStart} steps)`;
    const roundValue = !p ? (last ? `${last.round} done` : '—') : `${Math.min(p.rounds, finished ? p.round + 1 : p.round)} / ${p.rounds}`;
    const roundDone = !p
      ? undefined
      : finished
        ? p.round >= p.rounds
          ? 1
          : 0
        : (p.step - p.roundStart) / Math.max(1, p.roundEnd - p.roundStart);
    const phase = this.phase === 'waiting' ? `waiting (${this.waiting.ready}/${this.waiting.needed} ready)` : this.phase;
    const tiles: [string, string, number?][] = [
      ['phase', phase],
      [roundLabel, roundValue, roundDone],
      ['global step', p ? String(p.step) : '—'],
      ['train loss (live)', p && Number.isFinite(p.loss) ? p.loss.toFixed(4) : '—'],
      ['holdback loss', last?.holdbackLoss != null ? last.holdbackLoss.toFixed(4) : '—'],
      ['test accuracy', last?.testAccuracy != null ? formatPercent(last.testAccuracy) : '—'],
      ['weights kept', p ? formatPercent(p.weightsKept) : last ? formatPercent(last.weightsKept) : '—'],
      ['p (last round)', last ? last.p.toFixed(3) : '—'],
      ['workers (ring generation)', this.members.length > 0 ? `${this.members.length} (${this.generation})` : '—'],
      [
        'steps/s · samples/s',
        stepsPerSecond > 0 ? `${stepsPerSecond.toFixed(1)} · ${formatNumber(stepsPerSecond * this.info.config.batchSize)}` : '—',
      ],
      ['elapsed · ETA', `${formatSeconds((Date.now() - this.startedMs) / 1000)} · ${eta === null ? '—' : formatSeconds(eta)}`],
      ['resyncs · restarts', `${this.counts.resyncs} · ${this.counts.restarts}`],
    ];
    const tile = ([label, value, fraction]: [string, string, number?]) =>
      `<div class="tile"><div class="label">${escapeXml(label)}</div><div class="value">${escapeXml(value)}</div>${fraction === undefined ? '' : `<div class="bar-outer"><div class="bar-inner" style="width:${(100 * Math.min(1, Math.max(0, fraction))).toFixed(1)}%"></div></div>`}</div>`;
    return `<div class="tiles">${tiles.map(tile).join('')}</div>`;
  }

  /** Mean ms per step by phase, per worker, from its latest report. */
  private workerChart(): string {
    const ids = [...this.workers.keys()].sort((a, b) => rankOf(this.members, a) - rankOf(this.members, b) || a.localeCompare(b));
    const mean = (id: string, key: keyof StepTimes) => {
      const times = (this.workers.get(id) as { times: StepTimes }).times;
      return times.steps > 0 ? times[key] / times.steps : 0;
    };
    const keys = { compute: 'computeMs', allreduce: 'allreduceMs', wait: 'waitMs', update: 'updateMs' } as const;
    return stackedBarChart({
      title: 'Step time per worker (latest segment)',
      xLabel: 'Worker',
      yLabel: 'ms per step',
      categories: ids.map((id) => (rankOf(this.members, id) >= 0 ? `${id} (rank ${rankOf(this.members, id)})` : id)),
      stacks: STEP_PHASES.map((phase) => ({ name: phase.name, color: phase.color, values: ids.map((id) => mean(id, keys[phase.key])) })),
    });
  }

  private note(text: string): void {
    this.events.unshift({ atMs: Date.now(), text });
    this.events.length = Math.min(this.events.length, MAX_EVENTS);
  }
}

/** The whole page, with the current sections already in place (it reads fine without script too). */
export function renderStatusPage(live: LiveRun): string {
  const snapshot = live.snapshot();
  const section = (name: string) => `<div data-section="${name}">${snapshot.sections[name]}</div>`;
  const figure = (name: string) => `<figure data-section="${name}">${snapshot.sections[name]}</figure>`;
  const body = `
<header><h1>Occam — ${escapeXml(snapshot.runId)}</h1>
<p class="muted">${escapeXml(configLine(live.info.config))}</p>
<p class="muted"><span id="updated">live: refreshes every second</span> · <a href="report.html">report</a> · <a href="metrics">metrics</a> · <a href="status.json">status.json</a></p></header>
<section>${section('headline')}</section>
<section><h2>Training</h2><div class="charts">${['loss', 'step-loss', 'kept', 'p', 'workers', 'step-time'].map(figure).join('')}</div></section>
<section><h2>Events</h2>${section('events')}</section>`;
  return pageShell(`Occam — ${snapshot.runId}`, body, CLIENT_SCRIPT).replace('<body>', `<body data-phase="${snapshot.phase}">`);
}

// Polls live.json (relative, so the page also works behind a path-prefixing proxy) and swaps in
// the fragments that changed; stops once the run is done. ?every=MS sets the interval.
const CLIENT_SCRIPT = `
(() => {
  const every = Number(new URLSearchParams(location.search).get('every')) || 1000;
  const shown = {};
  const updated = document.getElementById('updated');
  async function refresh() {
    try {
      const response = await fetch('live.json', { cache: 'no-store' });
      if (!response.ok) throw new Error('HTTP ' + response.status);
      const live = await response.json();
      for (const [name, html] of Object.entries(live.sections)) {
        const element = document.querySelector('[data-section="' + name + '"]');
        if (element && shown[name] !== html) { element.innerHTML = html; shown[name] = html; }
      }
      document.body.dataset.phase = live.phase;
      updated.textContent = (live.phase === 'done' ? 'run finished · ' : 'live · ') + 'updated ' + new Date().toLocaleTimeString();
      if (live.phase === 'done') return;
    } catch (error) {
      updated.textContent = 'coordinator unreachable (' + error.message + '); retrying';
    }
    setTimeout(refresh, every);
  }
  setTimeout(refresh, every);
})();
`;

function rankOf(members: string[], id: string): number {
  return members.indexOf(id);
}
