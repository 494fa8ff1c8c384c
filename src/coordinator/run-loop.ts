// The Occam run, round by round, against one ReplicaGroup: train a segment of steps, evaluate,
// run the pruning schedule (the single source of truth for p), agree on thresholds, check that
// every replica holds the same state (replica-agreement.ts), and commit a checkpoint. It knows
// nothing of sockets, so it runs the same on worker processes and on in-process replicas; resume
// starts from a commit.
import { configHash, type OccamConfig, runHash } from '../config.ts';
import type { RunEvent } from '../observe/events.ts';
import type { Logger } from '../common/log.ts';
import { readLatestCheckpoint, writeCheckpoint } from '../storage/checkpoint.ts';
import type { RunDir, BestRound, RunSummary } from '../storage/run-dir.ts';
import { initialSchedule, roundStartStep, roundStepCount, totalRounds } from '../training/schedule.ts';
import { noTimes, type StepTimes } from '../training/step-loop.ts';
import { MembershipChanged, type ReplicaGroup, type StateReport } from './replica-group.ts';
import { endRound } from './round-end.ts';
import { ReplicaAgreement } from './replica-agreement.ts';
import { StragglerWatch } from './stragglers.ts';
import type { Committed, RunState } from './run-state.ts';

/** requestStop() was honoured: the run stopped right after a commit and can be resumed from it. */
export class RunStopped extends Error {
  constructor(readonly step: number) {
    super(`run stopped at step ${step}, right after a checkpoint commit`);
    this.name = 'RunStopped';
  }
}

export interface RunLoopOptions {
  config: OccamConfig;
  runDir: RunDir;
  runId: string;
  log: Logger;
  emit(event: RunEvent): void;
  /** A new commit: the run made progress (the restart policy counts failures since the last one). */
  onCommit?(step: number): void;
}

export class RunLoop {
  /** The last commit: what a re-formed ring reloads. */
  committed: Committed | null = null;
  /** The progress of the ring in flight (for the status page). */
  current: RunState | null = null;
  stopRequested = false;
  readonly config: OccamConfig;
  /** Why the run ended before its last round (early stopping), if it did. */
  private stopReason: string | null = null;
  private readonly stragglers = new StragglerWatch();
  private readonly agreement: ReplicaAgreement;

  constructor(private readonly options: RunLoopOptions) {
    this.config = options.config;
    this.agreement = new ReplicaAgreement(options);
  }

  /** Prepares the run directory and takes its newest valid checkpoint, if any (a resumed run). */
  open(): void {
    this.options.runDir.init(this.config);
    this.committed = this.loadCommitted();
  }

  /** Loads the committed state on every member (a first ring initialises and commits), then trains to the end. */
  async run(group: ReplicaGroup): Promise<void> {
    const committed = this.committed;
    const reports = await group.load(committed?.progress.step ?? 0, committed?.state ?? null);
    const expected = committed?.digest ?? reports[0].stateDigest;
    const bad = reports.findIndex((r) => r.stateDigest !== expected);
    if (bad >= 0) {
      group.exclude(bad, 'could not load the committed state');
      throw new MembershipChanged(`worker ${group.memberIds[bad]} could not load the committed state`);
    }
    this.agreement.loaded(expected);
    if (!committed) await this.commit(group, this.initialProgress(reports[0]));
    await this.train(group);
  }

  /** Counts one re-formation of the ring: in the committed progress, and at once in the failure history. */
  countRestart(reason: string): void {
    if (this.committed) this.committed.progress.restarts++;
    this.options.runDir.recordFailure({ type: 'restart', reason, committedStep: this.committed?.progress.step ?? 0 });
  }

  finish(): RunSummary {
    const progress = (this.committed as Committed).progress;
    const history = progress.history;
    const failures = this.options.runDir.failureCounts();
    const summary: RunSummary = {
      runId: this.options.runId,
      runDir: this.options.runDir.path,
      strategy: this.config.strategy,
      rounds: history.length,
      best: progress.best,
      final: history[history.length - 1] ?? null,
      totalCompute: progress.compute,
      wallMs: progress.elapsedMs,
      resyncs: progress.resyncs,
      restarts: failures.restarts,
      failures,
      modelSizes: this.options.runDir.modelSizes(),
      stopReason: this.stopReason,
      failure: null,
    };
    this.options.runDir.writeSummary(summary);
    this.options.emit({ type: 'done', summary });
    this.options.log.info({ best: summary.best, runDir: summary.runDir }, 'run finished');
    return summary;
  }

  private async train(group: ReplicaGroup): Promise<void> {
    const config = this.config;
    const stepsPerEpoch = group.facts.data.stepsPerEpoch;
    const rounds = totalRounds(config);
    const progress = structuredClone((this.committed as Committed).progress);
    this.current = progress;
    while (progress.round < rounds) {
      this.stopReason = earlyStopReason(config, progress);
      if (this.stopReason) break;
      const roundStart = roundStartStep(config, progress.round, stepsPerEpoch);
      const roundEnd = roundStart + roundStepCount(config, progress.round, stepsPerEpoch);
      while (progress.step < roundEnd) {
        // Here the replicas hold the committed state, so a membership change costs no steps.
        const change = group.boundary(progress.step);
        if (change) throw new MembershipChanged(change);
        const every = config.checkpointEverySteps;
        const segmentEnd = every > 0 ? Math.min(roundEnd, (Math.floor(progress.step / every) + 1) * every) : roundEnd;
        await this.trainSegment(group, progress, segmentEnd, roundStart, roundEnd);
        // A stop commits even the round's last segment (resumed, it goes straight to endRound).
        if (progress.step < roundEnd || this.stopRequested) await this.commit(group, progress);
        if (this.stopRequested) throw new RunStopped(progress.step);
      }
      const metrics = await endRound(this.roundContext(group), progress);
      progress.round++;
      Object.assign(progress, { roundLossSum: 0, roundSamples: 0, roundTimes: noTimes(), roundBytes: 0, roundMs: 0 });
      await this.commit(group, progress);
      this.options.runDir.appendMetrics(metrics);
      this.options.log.info(
        {
          round: metrics.round,
          trainLoss: metrics.trainLoss,
          holdbackLoss: metrics.holdbackLoss,
          testLoss: metrics.testLoss,
          testAccuracy: metrics.testAccuracy,
          weightsKept: metrics.weightsKept,
          p: metrics.p,
        },
        'round done',
      );
      this.options.emit({ type: 'round', metrics, rounds });
      if (this.stopRequested && progress.round < rounds) throw new RunStopped(progress.step);
    }
  }

  private async trainSegment(
    group: ReplicaGroup,
    progress: RunState,
    segmentEnd: number,
    roundStart: number,
    roundEnd: number,
  ): Promise<void> {
    const startedMs = Date.now();
    const latestTimes = new Map<string, StepTimes>();
    const rounds = totalRounds(this.config);
    // The live loss is always one step's loss (never a mean over steps), so its chart has one kind of point.
    let lastStepLoss: number | null = null;
    const results = await group.train(progress.step, segmentEnd, (rank, report) => {
      const workerId = group.memberIds[rank];
      latestTimes.set(workerId, report.times);
      this.options.emit({ type: 'steps', workerId, step: report.step, times: report.times, bytesSent: report.bytesSent, final: false });
      if (rank !== 0) return;
      lastStepLoss = report.loss;
      this.options.emit({
        type: 'progress',
        round: progress.round + 1,
        rounds,
        step: report.step,
        roundStart,
        roundEnd,
        loss: report.loss,
        weightsKept: this.weightsKept(group, progress),
        workers: latestTimes,
      });
    });
    this.watchStragglers(
      group,
      results.map((r) => r.times),
    );
    results.forEach((r, rank) => {
      this.options.emit({
        type: 'steps',
        workerId: group.memberIds[rank],
        step: segmentEnd,
        times: r.times,
        bytesSent: r.bytesSent,
        final: true,
      });
      latestTimes.set(group.memberIds[rank], r.times);
    });
    await this.agreement.reconcile(
      group,
      results.map((r) => r.stateDigest),
      progress,
      'after training',
    );
    progress.step = segmentEnd;
    progress.roundLossSum += results[0].lossSum;
    progress.roundSamples += results[0].samples;
    progress.roundBytes += results[0].bytesSent;
    progress.roundMs += Date.now() - startedMs;
    progress.elapsedMs += Date.now() - startedMs;
    const n = results.length;
    const times = progress.roundTimes;
    times.steps += results[0].times.steps;
    for (const r of results) {
      times.computeMs += r.times.computeMs / n;
      times.allreduceMs += r.times.allreduceMs / n;
      times.waitMs += r.times.waitMs / n;
      times.updateMs += r.times.updateMs / n;
    }
    // No report in the segment (one step): its loss is that step's.
    const loss = lastStepLoss ?? results[0].lossSum / Math.max(1, results[0].samples);
    this.options.emit({
      type: 'progress',
      round: progress.round + 1,
      rounds,
      step: segmentEnd,
      roundStart,
      roundEnd,
      loss,
      weightsKept: this.weightsKept(group, progress),
      workers: latestTimes,
    });
  }

  /** What the end of a round needs from the loop: the group, the best-model export and the agreement checks. */
  private roundContext(group: ReplicaGroup) {
    return {
      config: this.config,
      group,
      weightsKept: (progress: RunState) => this.weightsKept(group, progress),
      exportBest: async (progress: RunState) => {
        const upload = await group.upload(0);
        this.options.runDir.exportModel(upload.state, this.config, progress.best as BestRound);
      },
      reconcile: (digests: string[], progress: RunState, when: string) => this.agreement.reconcile(group, digests, progress, when),
    };
  }

  /** Names a member that keeps holding the ring back (a log line and an event), and says when it no longer does. */
  private watchStragglers(group: ReplicaGroup, times: StepTimes[]): void {
    const { named, recovered } = this.stragglers.observe(group.memberIds, times);
    for (const s of named) {
      const { workerId, msPerStep, othersMsPerStep } = s;
      this.options.log.warn(
        { worker: workerId, msPerStep, othersMsPerStep },
        'straggler: this worker is persistently slower than the others',
      );
      this.options.emit({ type: 'straggler', workerId, slow: true, msPerStep, othersMsPerStep });
    }
    for (const workerId of recovered) this.options.emit({ type: 'straggler', workerId, slow: false, msPerStep: 0, othersMsPerStep: 0 });
  }

  /** Commits the current state: rank 0 uploads it, its step and digest must be the ones every replica reported, then it is written. */
  private async commit(group: ReplicaGroup, progress: RunState): Promise<void> {
    const upload = await group.upload(0);
    if (upload.step !== progress.step) {
      group.exclude(0, `uploaded step ${upload.step}, expected ${progress.step}`);
      throw new MembershipChanged(`rank 0 uploaded step ${upload.step}, expected ${progress.step}`);
    }
    this.agreement.checkUpload(group, upload.stateDigest);
    const snapshot = structuredClone(progress);
    const manifest = {
      round: progress.round,
      step: progress.step,
      configHash: runHash(this.config),
      config: this.config,
      progress: snapshot,
    };
    const path = writeCheckpoint(this.options.runDir.checkpoints, manifest, upload.state, upload.stateDigest, this.config.keepCheckpoints);
    this.committed = { progress: snapshot, state: Uint8Array.from(upload.state), digest: upload.stateDigest };
    this.options.runDir.recordFailure({ type: 'commit', step: progress.step });
    this.options.onCommit?.(progress.step);
    this.options.log.debug({ path, step: progress.step }, 'checkpoint committed');
  }

  private weightsKept(group: ReplicaGroup, progress: RunState): number {
    const total = group.facts.layers.filter((l) => l.prunable).reduce((n, l) => n + l.shape.reduce((a, b) => a * b, 1), 0);
    return progress.activePerLayer.reduce((a, b) => a + b, 0) / total;
  }

  private initialProgress(report: StateReport): RunState {
    return {
      round: 0,
      step: 0,
      roundLossSum: 0,
      roundSamples: 0,
      roundTimes: noTimes(),
      roundBytes: 0,
      roundMs: 0,
      schedule: initialSchedule(this.config),
      best: null,
      compute: 0,
      activeParams: report.activeParams,
      activePerLayer: report.activePerLayer,
      history: [],
      elapsedMs: 0,
      resyncs: 0,
      restarts: 0,
    };
  }

  private loadCommitted(): Committed | null {
    const { runDir, log } = this.options;
    const checkpoint = readLatestCheckpoint<RunState>(runDir.checkpoints, (path, reason) => {
      log.error({ path, reason }, 'checkpoint is corrupt; skipping it for the previous one');
    });
    if (!checkpoint) return null;
    const { manifest, state, path } = checkpoint;
    // runHash lets a resumed run change how long it runs (rounds, patience); older checkpoints kept the full configHash.
    if (manifest.configHash !== runHash(this.config) && manifest.configHash !== configHash(this.config)) {
      throw new Error(`checkpoint ${path} belongs to a different configuration; use a new run directory`);
    }
    log.info({ path, round: manifest.round, step: manifest.step }, 'resuming from checkpoint');
    runDir.rewriteMetrics(manifest.progress.history);
    // JSON has no NaN: a NaN loss (a diverged round) was written as null.
    const progress = manifest.progress;
    progress.schedule.losses = progress.schedule.losses.map((loss) => loss ?? NaN);
    return { progress, state, digest: manifest.state.digest };
  }
}

/** Early stopping: `patience` rounds in a row without a lower holdback loss than the best round's. */
function earlyStopReason(config: OccamConfig, progress: RunState): string | null {
  if (config.patience === 0 || progress.best === null) return null;
  const since = progress.round - progress.best.round;
  if (since < config.patience) return null;
  return `stopped early: no lower holdback loss in the ${since} rounds after round ${progress.best.round} (patience ${config.patience})`;
}
