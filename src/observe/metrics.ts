// The coordinator's Prometheus metrics, fed by its RunEvent stream: a private prom-client Registry
// per Coordinator (so several in one process, as in tests, never collide), rendered at /metrics.
// Per-worker counters (steps, time by phase, bytes) move while a round trains, about once a second.
import { Counter, Gauge, Registry } from 'prom-client';
import type { OccamConfig } from '../config.ts';
import type { StepTimes } from '../wire/protocol.ts';
import { totalRounds } from '../training/schedule.ts';
import type { RunEvent } from './events.ts';
import type { RoundMetrics } from '../storage/run-dir.ts';

/** Step phases as metric labels, and where StepTimes keeps each. */
const PHASES = [
  ['compute', 'computeMs'],
  ['allreduce', 'allreduceMs'],
  ['wait', 'waitMs'],
  ['update', 'updateMs'],
] as const;

const NO_WORK = { times: { steps: 0, computeMs: 0, allreduceMs: 0, waitMs: 0, updateMs: 0 } as StepTimes, bytesSent: 0 };

export class CoordinatorMetrics {
  readonly registry = new Registry();
  /** Each worker's cumulative report within its current runSteps command: counters add the difference. */
  private readonly inFlight = new Map<string, { times: StepTimes; bytesSent: number }>();

  private readonly gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Gauge<L>({ name, help, labelNames, registers: [this.registry] });
  private readonly counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Counter<L>({ name, help, labelNames, registers: [this.registry] });

  private readonly runInfo = this.gauge('occam_run_info', 'Always 1; labels describe the run.', ['run_id', 'strategy', 'model', 'dataset']);
  private readonly phase = this.gauge('occam_phase', '1 for the coordinator phase it is in (waiting, training, done), else 0.', ['phase']);
  private readonly workersReady = this.gauge(
    'occam_workers_ready',
    'Workers connected and ready: while waiting for enough of them, then the size of the ring formed.',
  );
  private readonly members = this.gauge('occam_members', 'Workers in the current ring.');
  private readonly generation = this.gauge('occam_ring_generation', 'Ring generation (rises each time the ring re-forms).');
  private readonly roundsPlanned = this.gauge('occam_rounds_planned', 'Rounds the run will train.');
  private readonly roundsDone = this.gauge('occam_rounds_done', 'Rounds finished and committed.');
  private readonly stepsDone = this.gauge('occam_steps_done', 'Global training step reached.');
  /** What stepsDone says now. */
  private stepReached = 0;
  private readonly stepLoss = this.gauge(
    'occam_train_step_loss',
    'Latest training loss reported by rank 0 (mean over the last global batch).',
  );
  private readonly loss = this.gauge('occam_loss', 'Loss of the last finished round by split (train: mean over the round).', ['split']);
  private readonly accuracy = this.gauge('occam_accuracy', 'Accuracy of the last finished round by split.', ['split']);
  private readonly weightsKept = this.gauge(
    'occam_weights_kept_ratio',
    'Fraction of prunable weights kept (unmasked) in the last finished round.',
  );
  private readonly activeWeights = this.gauge(
    'occam_active_weights',
    'Active (unmasked) parameters of the model in the last finished round.',
  );
  private readonly pruneFraction = this.gauge('occam_prune_fraction', 'Fraction p of surviving weights pruned after the last round.');
  private readonly compute = this.gauge('occam_compute_weight_samples', 'Compute so far: sum over rounds of active weights times samples.');
  private readonly stepTime = this.gauge(
    'occam_step_time_seconds',
    'Mean seconds per step by phase in the last round, averaged over workers.',
    ['phase'],
  );
  private readonly roundDuration = this.gauge(
    'occam_round_duration_seconds',
    'Wall time of the last round (training, evaluation, pruning, commit).',
  );
  private readonly bytesPerStep = this.gauge('occam_bytes_per_step', 'All-reduce bytes rank 0 sent per step in the last round.');
  private readonly tokensPerSecond = this.gauge(
    'occam_tokens_per_second',
    "Token models: tokens the cluster trained per second in the last round's steps.",
  );
  private readonly flopsUtilization = this.gauge(
    'occam_model_flops_utilization',
    "Token models: model FLOPs per second in the last round's steps over the sum of occam_worker_peak_flops.",
  );
  private readonly workerPeakFlops = this.gauge(
    'occam_worker_peak_flops',
    "The worker's measured float32 matrix-product rate, FLOP/s: the peak MFU is stated against.",
    ['worker'],
  );
  private readonly workerTokensPerSecond = this.gauge(
    'occam_worker_tokens_per_second',
    'Token models: tokens of its shard the worker trained per second of step time (its current or last segment).',
    ['worker'],
  );
  /** From the ring event: tokens per global step and the ring's size, for per-worker tokens/s. */
  private tokensPerWorkerStep: number | null = null;
  private readonly workerStepTime = this.gauge(
    'occam_worker_step_time_seconds',
    "Mean seconds per step by phase in the worker's current or last segment.",
    ['worker', 'phase'],
  );
  private readonly busBandwidth = this.gauge(
    'occam_bus_bandwidth_bytes_per_second',
    "Bytes the worker sent over the ring per second of all-reduce transfer (its current or last segment): NCCL's bus bandwidth.",
    ['worker'],
  );
  private readonly workerSteps = this.counter(
    'occam_worker_steps_total',
    'Training steps the worker completed (steps redone after a failure count again).',
    ['worker'],
  );
  private readonly phaseSeconds = this.counter(
    'occam_step_phase_seconds_total',
    'Seconds the worker spent per step phase: compute, allreduce, wait, update.',
    ['worker', 'phase'],
  );
  private readonly bytesSent = this.counter('occam_bytes_sent_total', 'Bytes the worker sent to its ring neighbour.', ['worker']);
  private readonly straggler = this.gauge(
    'occam_worker_straggler',
    '1 while the worker is persistently slower per step than the median of the others (it sets the ring’s pace), else 0.',
    ['worker'],
  );
  private readonly resyncs = this.counter('occam_resyncs_total', 'Replicas found to differ from the agreed state and resynchronised.');
  private readonly restarts = this.counter(
    'occam_restarts_total',
    'Ring re-formations after a membership change (lost or joining worker).',
  );

  constructor(info: { runId: string; config: OccamConfig }) {
    const { config } = info;
    this.runInfo.set({ run_id: info.runId, strategy: config.strategy, model: config.model, dataset: config.dataset }, 1);
    this.roundsPlanned.set(totalRounds(config));
    this.setPhase('waiting');
    for (const counter of [this.resyncs, this.restarts]) counter.inc(0);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  /**
   * Round gauges from the history of a resumed run, before its next round finishes (at every ring
   * formation). The step gauge never moves back here: a ring formed at a mid-round commit lost no
   * steps, and where steps were lost the next progress report says the step the run is really at.
   */
  restore(history: RoundMetrics[]): void {
    const last = history[history.length - 1];
    const reached = this.stepReached;
    if (last) this.setRound(last);
    this.setStep(Math.max(reached, last?.step ?? 0));
  }

  handle(event: RunEvent): void {
    switch (event.type) {
      case 'waiting':
        this.setPhase('waiting');
        this.workersReady.set(event.ready);
        return;
      case 'ring':
        this.setPhase('training');
        this.members.set(event.workers.length);
        this.workersReady.set(event.workers.length);
        this.generation.set(event.generation);
        event.workers.forEach((worker, rank) => this.workerPeakFlops.set({ worker }, event.peakFlops[rank]));
        this.tokensPerWorkerStep = event.throughput ? event.throughput.tokensPerStep / event.workers.length : null;
        // Work in flight under the old ring is redone from the last commit; its reports end here.
        this.inFlight.clear();
        return;
      case 'restart':
        this.restarts.inc();
        this.inFlight.clear();
        return;
      case 'resync':
        this.resyncs.inc();
        return;
      case 'straggler':
        this.straggler.set({ worker: event.workerId }, event.slow ? 1 : 0);
        return;
      case 'progress':
        this.setStep(event.step);
        if (Number.isFinite(event.loss)) this.stepLoss.set(event.loss);
        return;
      case 'steps':
        return this.addWork(event);
      case 'round':
        return this.setRound(event.metrics);
      case 'done':
        this.setPhase('done');
        return;
    }
  }

  private addWork(event: Extract<RunEvent, { type: 'steps' }>): void {
    const worker = event.workerId;
    const before = this.inFlight.get(worker) ?? NO_WORK;
    const { times } = event;
    this.workerSteps.inc({ worker }, growth(times.steps, before.times.steps));
    this.bytesSent.inc({ worker }, growth(event.bytesSent, before.bytesSent));
    for (const [phase, key] of PHASES) {
      this.phaseSeconds.inc({ worker, phase }, growth(times[key], before.times[key]) / 1000);
      if (times.steps > 0) this.workerStepTime.set({ worker, phase }, times[key] / times.steps / 1000);
    }
    if (times.allreduceMs > 0) this.busBandwidth.set({ worker }, event.bytesSent / (times.allreduceMs / 1000));
    const stepMs = times.computeMs + times.allreduceMs + times.waitMs + times.updateMs;
    if (this.tokensPerWorkerStep !== null && stepMs > 0) {
      this.workerTokensPerSecond.set({ worker }, (this.tokensPerWorkerStep * times.steps) / (stepMs / 1000));
    }
    if (event.final) this.inFlight.delete(worker);
    else this.inFlight.set(worker, { times: { ...times }, bytesSent: event.bytesSent });
  }

  private setStep(step: number): void {
    this.stepReached = step;
    this.stepsDone.set(step);
  }

  private setRound(m: RoundMetrics): void {
    this.roundsDone.set(m.round);
    this.setStep(m.step);
    const splits = [
      ['train', m.trainLoss, null],
      ['holdback', m.holdbackLoss, m.holdbackAccuracy],
      ['test', m.testLoss, m.testAccuracy],
    ] as const;
    for (const [split, loss, accuracy] of splits) {
      if (loss !== null) this.loss.set({ split }, loss);
      if (accuracy !== null) this.accuracy.set({ split }, accuracy);
    }
    this.weightsKept.set(m.weightsKept);
    this.activeWeights.set(m.activeParams);
    this.pruneFraction.set(m.p);
    this.compute.set(m.compute);
    for (const [phase] of PHASES) this.stepTime.set({ phase }, m.stepMs[phase] / 1000);
    this.roundDuration.set(m.roundMs / 1000);
    this.bytesPerStep.set(m.bytesPerStep);
    // Absent from rounds an older Occam wrote (a resumed run's history).
    if (m.tokensPerSecond != null) this.tokensPerSecond.set(m.tokensPerSecond);
    if (m.mfu != null) this.flopsUtilization.set(m.mfu);
  }

  private setPhase(phase: 'waiting' | 'training' | 'done'): void {
    for (const name of ['waiting', 'training', 'done']) this.phase.set({ phase: name }, name === phase ? 1 : 0);
  }
}

/** How much a cumulative report grew; never negative or NaN, which would poison a counter for good. */
function growth(now: number, before: number): number {
  const difference = now - before;
  return Number.isFinite(difference) && difference > 0 ? difference : 0;
}
