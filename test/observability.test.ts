import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { RunEvent } from '../src/observe/events.ts';
import { CoordinatorMetrics } from '../src/observe/metrics.ts';
import { createLogger, setLogContext } from '../src/common/log.ts';
import { parsePrometheusText, seriesValue, type MetricFamily } from './helpers/prometheus.ts';
import type { RoundMetrics } from '../src/storage/run-dir.ts';
import { smallConfig, smallGptConfig, train } from './helpers/runs.ts';

const ROUNDS = 5;

/** A writable that keeps what a logger writes, line by line. */
function captureLines(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { stream, lines };
}

describe('a running coordinator observed from outside', () => {
  it('serves /metrics in Prometheus text format whose counters move between scrapes; logs carry role, run id and rank', async () => {
    const coordinatorLog = captureLines();
    const log = createLogger({ role: 'coordinator', destination: coordinatorLog.stream, context: { runId: 'obs-run' } });
    let base = '';
    const scrapes: Promise<{ round: number; text: string; health: number; ready: number } | null>[] = [];
    // Scrape right after each round commits, while the next one trains.
    const onEvent = (event: RunEvent) => {
      if (event.type !== 'round') return;
      const round = event.metrics.round;
      scrapes.push(
        Promise.all([fetch(`${base}/metrics`), fetch(`${base}/healthz`), fetch(`${base}/readyz`)]).then(
          async ([metrics, health, ready]) => ({ round, text: await metrics.text(), health: health.status, ready: ready.status }),
          () => null, // the last round's scrape may find the server closed
        ),
      );
    };
    const { summary, runDir } = await train(smallConfig({ rounds: ROUNDS, workers: 2 }), {
      log,
      runId: 'obs-run',
      onEvent,
      onListening: (port) => (base = `http://127.0.0.1:${port}`),
    });
    expect(summary.rounds).toBe(ROUNDS);

    const done = (await Promise.all(scrapes)).filter((s) => s !== null);
    expect(done.length).toBeGreaterThanOrEqual(2);
    const first = done[0];
    const last = done[done.length - 1];
    expect(last.round).toBeGreaterThan(first.round);
    expect(first.health).toBe(200);
    expect(first.ready).toBe(200);
    const a = parsePrometheusText(first.text);
    const b = parsePrometheusText(last.text);

    expect(seriesValue(a, 'occam_phase', { phase: 'training' })).toBe(1);
    expect(seriesValue(a, 'occam_members')).toBe(2);
    expect(seriesValue(a, 'occam_rounds_planned')).toBe(ROUNDS);
    expect(seriesValue(b, 'occam_rounds_done')).toBeGreaterThan(seriesValue(a, 'occam_rounds_done') as number);
    expect(seriesValue(b, 'occam_steps_done')).toBeGreaterThan(seriesValue(a, 'occam_steps_done') as number);
    for (const split of ['train', 'holdback', 'test']) expect(Number.isFinite(seriesValue(b, 'occam_loss', { split }))).toBe(true);
    expect(seriesValue(b, 'occam_weights_kept_ratio')).toBeLessThan(1);
    for (const worker of ['local-0', 'local-1']) {
      expect(seriesValue(b, 'occam_worker_steps_total', { worker })).toBeGreaterThan(
        seriesValue(a, 'occam_worker_steps_total', { worker }) as number,
      );
      expect(seriesValue(b, 'occam_bytes_sent_total', { worker })).toBeGreaterThan(
        seriesValue(a, 'occam_bytes_sent_total', { worker }) as number,
      );
      expect(seriesValue(b, 'occam_step_phase_seconds_total', { worker, phase: 'compute' })).toBeGreaterThan(
        seriesValue(a, 'occam_step_phase_seconds_total', { worker, phase: 'compute' }) as number,
      );
      expect(seriesValue(b, 'occam_bus_bandwidth_bytes_per_second', { worker })).toBeGreaterThan(0);
    }
    // No counter ever goes down between scrapes.
    const counters = (families: Map<string, MetricFamily>) =>
      [...families.values()].filter((f) => f.type === 'counter').flatMap((f) => f.samples);
    for (const sample of counters(a)) {
      expect(seriesValue(b, sample.name, sample.labels), `${sample.name} ${JSON.stringify(sample.labels)}`).toBeGreaterThanOrEqual(
        sample.value,
      );
    }

    // Logs: the coordinator's lines carry role and run id; each worker's, once it has been
    // welcomed and placed in the ring, its run id and rank.
    const coordinatorLines = coordinatorLog.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(coordinatorLines.length).toBeGreaterThan(0);
    for (const line of coordinatorLines) expect(line).toMatchObject({ role: 'coordinator', runId: 'obs-run' });
    for (const worker of [0, 1]) {
      const lines = readFileSync(join(runDir, `worker-${worker}.log`), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const ringAt = lines.findIndex((l) => l.msg === 'ring formed');
      expect(ringAt).toBeGreaterThan(0);
      for (const line of lines.slice(ringAt)) expect(line).toMatchObject({ role: 'worker', runId: 'obs-run', rank: worker });
      // A run that went well leaves no warning in a worker's log, its normal end included.
      expect(lines.filter((l) => (l.level as number) >= 40).map((l) => l.msg)).toEqual([]);
    }
    expect(existsSync(join(runDir, 'report.html'))).toBe(true);
  });

  it('a transformer run exposes tokens/s per worker and for the cluster, MFU and each worker’s peak', async () => {
    const metrics = new CoordinatorMetrics({ runId: 'unit', config: smallGptConfig() });
    metrics.handle({
      type: 'ring',
      generation: 1,
      workers: ['w0', 'w1'],
      hardware: ['blas', 'blas'],
      peakFlops: [2e10, 3e10],
      throughput: { tokensPerStep: 1000, flopsPerToken: 1e5 },
    });
    // 4 steps of 500 ms each: 500 tokens of its shard per step = 1,000 tokens/s.
    metrics.handle({
      type: 'steps',
      workerId: 'w1',
      step: 4,
      times: { steps: 4, computeMs: 1600, allreduceMs: 300, waitMs: 50, updateMs: 50 },
      bytesSent: 0,
      final: true,
    });
    const families = parsePrometheusText(await metrics.render());
    expect(seriesValue(families, 'occam_worker_peak_flops', { worker: 'w0' })).toBe(2e10);
    expect(seriesValue(families, 'occam_worker_tokens_per_second', { worker: 'w1' })).toBeCloseTo(1000, 9);
    const round = roundMetrics({ step: 4 });
    metrics.handle({ type: 'round', metrics: round, rounds: 3 });
    const after = parsePrometheusText(await metrics.render());
    expect(seriesValue(after, 'occam_tokens_per_second', {})).toBe(2000);
    expect(seriesValue(after, 'occam_model_flops_utilization', {})).toBe(0.004);
  });

  it('counters add each worker’s progress once, across segments and a re-formed ring', async () => {
    const metrics = new CoordinatorMetrics({ runId: 'unit', config: smallConfig() });
    const times = (steps: number) => ({ steps, computeMs: 10 * steps, allreduceMs: 2 * steps, waitMs: steps, updateMs: steps });
    const steps = (n: number, final: boolean): RunEvent => ({
      type: 'steps',
      workerId: 'w',
      step: n,
      times: times(n),
      bytesSent: 100 * n,
      final,
    });
    const scrape = async () => parsePrometheusText(await metrics.render());
    // Segment 1: progress at 3 steps, done at 5; segment 2: progress at 2 (its own count from 0).
    for (const event of [steps(3, false), steps(5, true), steps(2, false)]) metrics.handle(event);
    let families = await scrape();
    expect(seriesValue(families, 'occam_worker_steps_total', { worker: 'w' })).toBe(7);
    expect(seriesValue(families, 'occam_bytes_sent_total', { worker: 'w' })).toBe(700);
    expect(seriesValue(families, 'occam_step_phase_seconds_total', { worker: 'w', phase: 'compute' })).toBeCloseTo(0.07, 9);
    // The ring re-forms mid-segment: the next report counts from 0 again, without going negative.
    metrics.handle({ type: 'restart', reason: 'worker lost' });
    metrics.handle({ type: 'ring', generation: 2, workers: ['w'], hardware: ['cpu'], peakFlops: [1e9], throughput: null });
    metrics.handle(steps(1, false));
    families = await scrape();
    expect(seriesValue(families, 'occam_worker_steps_total', { worker: 'w' })).toBe(8);
    expect(seriesValue(families, 'occam_restarts_total')).toBe(1);
    expect(seriesValue(families, 'occam_ring_generation')).toBe(2);
    expect(seriesValue(families, 'occam_bus_bandwidth_bytes_per_second', { worker: 'w' })).toBe(100 / 0.002);
  });

  it('a straggler is flagged per worker in /metrics, and cleared when it keeps up', async () => {
    const metrics = new CoordinatorMetrics({ runId: 'unit', config: smallConfig() });
    const straggler = (slow: boolean): RunEvent => ({ type: 'straggler', workerId: 'w1', slow, msPerStep: 60, othersMsPerStep: 20 });
    metrics.handle(straggler(true));
    expect(seriesValue(parsePrometheusText(await metrics.render()), 'occam_worker_straggler', { worker: 'w1' })).toBe(1);
    metrics.handle(straggler(false));
    expect(seriesValue(parsePrometheusText(await metrics.render()), 'occam_worker_straggler', { worker: 'w1' })).toBe(0);
  });

  it('the step gauge does not jump back to the last round’s end when a ring forms at a later commit', async () => {
    const metrics = new CoordinatorMetrics({ runId: 'unit', config: smallConfig() });
    const progress = (step: number): RunEvent => ({
      type: 'progress',
      round: 2,
      rounds: 3,
      step,
      roundStart: 15,
      roundEnd: 30,
      loss: 1,
      weightsKept: 1,
      workers: new Map(),
    });
    const round1 = roundMetrics({ round: 1, step: 15 });
    metrics.handle(progress(25));
    // A joiner is admitted at the commit of step 25: the new ring restores the rounds so far.
    metrics.restore([round1]);
    metrics.handle({
      type: 'ring',
      generation: 2,
      workers: ['w0', 'w1'],
      hardware: ['cpu', 'cpu'],
      peakFlops: [1e9, 1e9],
      throughput: null,
    });
    expect(seriesValue(parsePrometheusText(await metrics.render()), 'occam_steps_done')).toBe(25);
    // A fresh coordinator resuming the run starts from the history's last round.
    const resumed = new CoordinatorMetrics({ runId: 'unit', config: smallConfig() });
    resumed.restore([round1]);
    expect(seriesValue(parsePrometheusText(await resumed.render()), 'occam_steps_done')).toBe(15);
  });

  it('pretty logs show role, rank and run id on one readable line', () => {
    const out = captureLines();
    const log = createLogger({ role: 'worker', pretty: true, destination: out.stream });
    setLogContext(log, { runId: 'r1', rank: 3 });
    log.info({ step: 7 }, 'hello');
    setLogContext(log, { rank: 1 });
    log.child({ part: 'ring' }).warn('again');
    expect(out.lines[0]).toMatch(/^\d\d:\d\d:\d\d INFO worker rank=3 run=r1 hello step=7$/);
    expect(out.lines[1]).toMatch(/^\d\d:\d\d:\d\d WARN worker rank=1 run=r1 again part=ring$/);
  });
});

/** One round's metrics as a 2-worker token run reports them. */
function roundMetrics(overrides: Partial<RoundMetrics>): RoundMetrics {
  return {
    round: 1,
    step: 4,
    trainLoss: 3,
    holdbackLoss: 2.9,
    holdbackAccuracy: 0.2,
    testLoss: 2.95,
    testAccuracy: 0.2,
    weightsKept: 1,
    activeParams: 1000,
    p: 0.4,
    samples: 64,
    compute: 64000,
    roundMs: 2000,
    elapsedMs: 2000,
    stepMs: { compute: 400, allreduce: 75, wait: 12.5, update: 12.5 },
    bytesPerStep: 4000,
    tokensPerSecond: 2000,
    mfu: 0.004,
    workers: 2,
    resyncs: 0,
    restarts: 0,
    ...overrides,
  };
}
