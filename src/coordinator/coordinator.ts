// The coordinator: forms the ring from the ready workers (membership.ts admits them) and drives
// the run round by round — train a segment of steps, evaluate, run the pruning schedule (the
// single source of truth for p), agree on thresholds, check that every replica holds the same
// state, and commit a checkpoint. It is never on the per-step data path. When a worker is lost
// or one joins, the ring re-forms and every replica reloads the last committed state.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { requestHasToken } from '../wire/auth.ts';
import { readLatestCheckpoint, writeCheckpoint } from '../storage/checkpoint.ts';
import { configHash, type OccamConfig } from '../config.ts';
import type { Logger } from '../observe/log.ts';
import type { Envelope, MessageKind, Messages, StepTimes } from '../wire/protocol.ts';
import { afterRound, eligibleForBest, initialSchedule, roundStartStep, roundStepCount, totalRounds, type ScheduleState } from '../training/schedule.ts';
import { peerCertificateProblem, tlsServerOptions, type TlsOptions } from '../wire/tls.ts';
import { Membership } from './membership.ts';
import { RunDir, type BestRound, type RoundMetrics, type RunSummary } from '../storage/run-dir.ts';
import { LinkClosed, WorkerError, WorkerLink } from './worker-link.ts';

export interface CoordinatorOptions {
  config: OccamConfig;
  runDir: string;
  runId: string;
  host: string;
  port: number;
  token: string;
  log: Logger;
  tls?: TlsOptions;
  maxMessageBytes: number;
  /** Progress for the CLI and the status page. */
  onEvent?: (event: RunEvent) => void;
  /** Extra HTTP routes (status page, Prometheus metrics); return false to fall through to 404. */
  httpHandler?: (request: IncomingMessage, response: ServerResponse) => boolean;
}

export type RunEvent =
  | { type: 'waiting'; ready: number; needed: number }
  | { type: 'ring'; generation: number; workers: string[] }
  | { type: 'progress'; round: number; rounds: number; step: number; roundStart: number; roundEnd: number; loss: number; weightsKept: number; workers: Map<string, StepTimes> }
  | { type: 'round'; metrics: RoundMetrics; rounds: number }
  /** One worker's work so far in its current runSteps command (cumulative; `final`: its reply), for metrics. */
  | { type: 'steps'; workerId: string; step: number; times: StepTimes; bytesSent: number; final: boolean }
  | { type: 'resync'; workerId: string; reason: string }
  | { type: 'restart'; reason: string }
  | { type: 'done'; summary: RunSummary };

/** What a checkpoint carries besides the replica state: where the run is and what it has seen. */
export interface RunProgress {
  round: number;
  step: number;
  /** Training loss and samples of the current round so far. */
  roundLossSum: number;
  roundSamples: number;
  roundTimes: StepTimes;
  roundBytes: number;
  roundMs: number;
  schedule: ScheduleState;
  best: BestRound | null;
  compute: number;
  activeParams: number;
  activePerLayer: number[];
  history: RoundMetrics[];
  elapsedMs: number;
  resyncs: number;
  restarts: number;
}

interface Committed {
  progress: RunProgress;
  state: Buffer;
  digest: string;
}

/** The ring lost a member or must admit new ones: re-form and reload the committed state. */
export class MembershipChanged extends Error {}

/** requestStop() was honoured: the run stopped right after a commit and can be resumed from it. */
export class RunStopped extends Error {
  constructor(readonly step: number) {
    super(`run stopped at step ${step}, right after a checkpoint commit`);
    this.name = 'RunStopped';
  }
}

/** Re-forming the ring this many times without a new commit means the run cannot progress. */
const MAX_FAILURES_WITHOUT_PROGRESS = 8;

const NO_TIMES: StepTimes = { steps: 0, computeMs: 0, allreduceMs: 0, updateMs: 0, waitMs: 0 };

export class Coordinator {
  readonly runDir: RunDir;
  private readonly config: OccamConfig;
  private readonly log: Logger;
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly members: Membership;
  private ring: WorkerLink[] = [];
  private generation = 0;
  private lost: Deferred = deferred();
  private committed: Committed | null = null;
  private stopping = false;
  private phase: 'waiting' | 'training' | 'done' = 'waiting';
  private readonly latestTimes = new Map<string, StepTimes>();
  private current: RunProgress | null = null;
  private fatalError: Error | null = null;
  private stopRequested = false;
  private failuresSinceCommit = 0;
  private progressListener: ((link: WorkerLink, envelope: Envelope) => void) | null = null;

  constructor(private readonly options: CoordinatorOptions) {
    this.config = options.config;
    this.log = options.log;
    this.runDir = new RunDir(options.runDir);
    this.members = new Membership({
      config: this.config,
      runId: options.runId,
      log: this.log,
      onLeave: (link, reason) => {
        if (this.ring.includes(link)) this.lost.reject(new MembershipChanged(`worker ${link.workerId} lost: ${reason}`));
      },
      onUnsolicited: (link, envelope) => this.onUnsolicited(link, envelope),
      onPrepareFailed: (error) => this.fail(error),
    });
    const handler = (req: IncomingMessage, res: ServerResponse) => this.serveHttp(req, res);
    this.http = options.tls ? createHttpsServer(tlsServerOptions(options.tls), handler) : createHttpServer(handler);
    this.wss = new WebSocketServer({
      server: this.http,
      maxPayload: options.maxMessageBytes,
      verifyClient: ({ req }, done) => {
        const certificate = peerCertificateProblem(req, options.tls);
        if (certificate) {
          this.log.warn({ remote: req.socket.remoteAddress, problem: certificate }, 'worker connection refused');
          return done(false, 403, 'Forbidden');
        }
        if (requestHasToken(req, options.token)) return done(true);
        this.log.warn({ remote: req.socket.remoteAddress }, 'worker connection refused: missing or wrong cluster token');
        done(false, 401, 'Unauthorized');
      },
    });
    this.wss.on('connection', (socket, request) => this.members.accept(socket, request));
    this.wss.on('error', (error) => this.log.error({ err: error.message }, 'control server error'));
  }

  /** Starts listening; resolves with the port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.options.port, this.options.host, () => {
        const port = (this.http.address() as AddressInfo).port;
        this.log.info({ port, runId: this.options.runId, runDir: this.options.runDir }, 'coordinator listening');
        resolve(port);
      });
    });
  }

  /** Trains the whole run (resuming from the run directory's last checkpoint) and returns its summary. */
  async run(): Promise<RunSummary> {
    this.runDir.init(this.config);
    this.committed = this.loadCommitted();
    const watchdog = setInterval(() => this.members.checkLiveness(), this.config.heartbeatMs);
    try {
      // A resumed run starts with whoever reconnects within the grace time; others join later.
      let graceMs = this.committed ? this.config.peerTimeoutMs : Infinity;
      for (;;) {
        await this.waitForWorkers(this.config.workers, graceMs);
        try {
          await this.formRing();
          this.phase = 'training';
          await this.train();
          break;
        } catch (error) {
          if (!isMembershipError(error) || this.stopping) throw this.fatalError ?? error;
          graceMs = 0;
          const reason = (error as Error).message;
          if (this.committed) this.committed.progress.restarts++;
          // A failure that recurs from the same commit (a worker that crashes on this state, a
          // model that diverges) would loop forever: back off, and give up after a few tries.
          this.failuresSinceCommit++;
          if (this.failuresSinceCommit > MAX_FAILURES_WITHOUT_PROGRESS) {
            throw new Error(`the run cannot get past step ${this.committed?.progress.step ?? 0}: ${this.failuresSinceCommit} failures since the last commit, the last: ${reason}`);
          }
          this.log.warn({ reason, attempt: this.failuresSinceCommit }, 'membership changed; re-forming the ring from the last commit');
          this.emit({ type: 'restart', reason });
          await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** (this.failuresSinceCommit - 1)));
        }
      }
      return this.finish();
    } finally {
      clearInterval(watchdog);
    }
  }

  /**
   * Asks the run to stop after its next commit (the end of the current segment): run() then
   * rejects with RunStopped, and the run resumes from that commit. For SIGTERM.
   */
  requestStop(): void {
    this.stopRequested = true;
    this.members.wake();
  }

  /**
   * Stops serving and closes the servers. With `shutdownWorkers` the workers exit (the run is
   * over); without, they keep reconnecting, to a restarted coordinator.
   */
  async close(reason = 'coordinator stopping', shutdownWorkers = true): Promise<void> {
    this.stopping = true;
    this.lost.reject(new MembershipChanged(reason));
    this.members.close(reason, shutdownWorkers);
    for (const client of this.wss.clients) client.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  /** A snapshot for health checks and the status page. */
  status(): { phase: string; generation: number; workers: { id: string; rank: number; inRing: boolean; ready: boolean }[]; progress: RunProgress | null; committedStep: number | null; config: OccamConfig } {
    return {
      phase: this.phase,
      generation: this.generation,
      workers: this.members.all.map((l) => ({ id: l.workerId, rank: this.ring.indexOf(l), inRing: this.ring.includes(l), ready: l.ready !== null })),
      progress: this.current,
      committedStep: this.committed?.progress.step ?? null,
      config: this.config,
    };
  }

  // ─── the run ────────────────────────────────────────────────────────────────────────────────

  private async train(): Promise<void> {
    const config = this.config;
    const stepsPerEpoch = this.requireData().data.stepsPerEpoch;
    const rounds = totalRounds(config);
    const progress = clone((this.committed as Committed).progress);
    this.current = progress;
    while (progress.round < rounds) {
      const roundStart = roundStartStep(config, progress.round, stepsPerEpoch);
      const roundEnd = roundStart + roundStepCount(config, progress.round, stepsPerEpoch);
      while (progress.step < roundEnd) {
        // Here the replicas hold the committed state, so a membership change costs no steps.
        this.releaseLeavers(progress.step);
        if (this.waitingJoiners() > 0) throw new MembershipChanged(`admitting ${this.waitingJoiners()} new worker(s)`);
        const every = config.checkpointEverySteps;
        const segmentEnd = every > 0 ? Math.min(roundEnd, (Math.floor(progress.step / every) + 1) * every) : roundEnd;
        await this.trainSegment(progress, segmentEnd, roundStart, roundEnd);
        // A stop commits even the round's last segment (resumed, it goes straight to endRound).
        if (progress.step < roundEnd || this.stopRequested) await this.commit(progress);
        if (this.stopRequested) throw new RunStopped(progress.step);
      }
      await this.endRound(progress, rounds);
      if (this.stopRequested && progress.round < rounds) throw new RunStopped(progress.step);
    }
  }

  private async trainSegment(progress: RunProgress, segmentEnd: number, roundStart: number, roundEnd: number): Promise<void> {
    const startedMs = Date.now();
    const fromStep = progress.step;
    const onProgress = (link: WorkerLink, envelope: Envelope) => {
      if (envelope.kind !== 'stepProgress') return;
      const message = envelope.message as Messages['stepProgress'];
      this.latestTimes.set(link.workerId, message.times);
      this.emit({ type: 'steps', workerId: link.workerId, step: message.step, times: message.times, bytesSent: message.bytesSent, final: false });
      if (link !== this.ring[0]) return;
      this.emit({
        type: 'progress',
        round: progress.round,
        rounds: totalRounds(this.config),
        step: message.step,
        roundStart,
        roundEnd,
        loss: message.loss,
        weightsKept: this.weightsKept(progress),
        workers: this.latestTimes,
      });
    };
    this.progressListener = onProgress;
    const results = await this.all(() => ['runSteps', { generation: this.generation, fromStep, toStep: segmentEnd }], 'stepsDone');
    this.progressListener = null;
    for (const [i, r] of results.entries()) this.emit({ type: 'steps', workerId: this.ring[i].workerId, step: segmentEnd, times: r.times, bytesSent: r.bytesSent, final: true });
    await this.reconcile(results.map((r) => r.stateDigest), progress, 'after training');
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
    for (const [i, r] of results.entries()) this.latestTimes.set(this.ring[i].workerId, r.times);
    this.emit({ type: 'progress', round: progress.round, rounds: totalRounds(this.config), step: segmentEnd, roundStart, roundEnd, loss: progress.roundLossSum / Math.max(1, progress.roundSamples), weightsKept: this.weightsKept(progress), workers: this.latestTimes });
  }

  /** Evaluation, the schedule, the best model, pruning, and the round's commit and metrics line. */
  private async endRound(progress: RunProgress, rounds: number): Promise<void> {
    const startedMs = Date.now();
    const config = this.config;
    const evals = await this.all(() => ['evaluate', { generation: this.generation }], 'evalResult');
    const sum = (pick: (r: Messages['evalResult']) => Messages['evalResult']['holdback']) =>
      evals.reduce((acc, r) => ({ lossSum: acc.lossSum + pick(r).lossSum, correct: acc.correct + pick(r).correct, count: acc.count + pick(r).count }), { lossSum: 0, correct: 0, count: 0 });
    const holdback = sum((r) => r.holdback);
    const test = sum((r) => r.test);
    const mean = (s: { lossSum: number; count: number }) => (s.count > 0 ? s.lossSum / s.count : null);
    const accuracy = (s: { correct: number; count: number }) => (s.count > 0 ? s.correct / s.count : null);
    const trainLoss = progress.roundSamples > 0 ? progress.roundLossSum / progress.roundSamples : null;
    if (trainLoss !== null && !Number.isFinite(trainLoss)) {
      throw new Error(`training diverged: the training loss of round ${progress.round + 1} is ${trainLoss}; lower learningRate`);
    }
    const holdbackLoss = mean(holdback);
    const loss = holdbackLoss ?? trainLoss ?? NaN;
    const weightsKept = this.weightsKept(progress);
    const { state: schedule, pruneFraction } = afterRound(config, progress.schedule, progress.round, loss, weightsKept);
    progress.compute += progress.activeParams * progress.roundSamples;
    const steps = Math.max(1, progress.roundTimes.steps);
    const metrics: RoundMetrics = {
      round: progress.round,
      step: progress.step,
      trainLoss,
      holdbackLoss,
      holdbackAccuracy: accuracy(holdback),
      testLoss: mean(test),
      testAccuracy: accuracy(test),
      weightsKept,
      activeParams: progress.activeParams,
      p: pruneFraction,
      samples: progress.roundSamples,
      compute: progress.compute,
      roundMs: 0,
      elapsedMs: 0,
      stepMs: {
        compute: progress.roundTimes.computeMs / steps,
        allreduce: progress.roundTimes.allreduceMs / steps,
        wait: progress.roundTimes.waitMs / steps,
        update: progress.roundTimes.updateMs / steps,
      },
      bytesPerStep: progress.roundBytes / steps,
      workers: this.ring.length,
      resyncs: progress.resyncs,
      restarts: progress.restarts,
    };
    const improved = Number.isFinite(loss) && (progress.best === null || loss < progress.best.holdbackLoss);
    if (eligibleForBest(config, progress.round) && improved) {
      progress.best = { round: progress.round, holdbackLoss: loss, testLoss: metrics.testLoss, testAccuracy: metrics.testAccuracy, weightsKept, activeParams: progress.activeParams, compute: progress.compute };
      const upload = await this.guard(this.ring[0].request('uploadState', { generation: this.generation }, 'stateUpload'));
      this.runDir.exportModel(upload.state, config, progress.best);
    }
    if (pruneFraction > 0) await this.prune(progress, pruneFraction);
    const roundMs = progress.roundMs + (Date.now() - startedMs);
    progress.elapsedMs += Date.now() - startedMs;
    metrics.roundMs = roundMs;
    metrics.elapsedMs = progress.elapsedMs;
    metrics.resyncs = progress.resyncs;
    progress.history.push(metrics);
    progress.schedule = schedule;
    progress.round++;
    Object.assign(progress, { roundLossSum: 0, roundSamples: 0, roundTimes: { ...NO_TIMES }, roundBytes: 0, roundMs: 0 });
    await this.commit(progress);
    this.runDir.appendMetrics(metrics);
    this.log.info({ round: metrics.round, trainLoss: metrics.trainLoss, holdbackLoss, testLoss: metrics.testLoss, testAccuracy: metrics.testAccuracy, weightsKept, p: pruneFraction }, 'round done');
    this.emit({ type: 'round', metrics, rounds });
  }

  /**
   * Threshold agreement: each prunable layer's threshold is computed once, by rank (layer mod n),
   * then every replica applies all of them and reports its digest; differing replicas are resynced.
   */
  private async prune(progress: RunProgress, p: number): Promise<void> {
    const layerCount = this.requireData().layers.filter((l) => l.prunable).length;
    const n = this.ring.length;
    const mine = (rank: number) => Array.from({ length: layerCount }, (_, k) => k).filter((k) => k % n === rank);
    const replies = await this.all((rank) => ['computeThresholds', { generation: this.generation, p, layers: mine(rank) }], 'thresholds');
    const thresholds = new Array<number>(layerCount).fill(NaN);
    for (const reply of replies) reply.layers.forEach((layer, i) => (thresholds[layer] = reply.values[i]));
    if (thresholds.some((t) => Number.isNaN(t))) throw new Error('threshold agreement is missing layers');
    const reports = await this.all(() => ['prune', { generation: this.generation, thresholds }], 'stateReport');
    const agreed = await this.reconcile(reports.map((r) => r.stateDigest), progress, 'after pruning');
    const report = reports[reports.findIndex((r) => r.stateDigest === agreed)];
    progress.activeParams = report.activeParams;
    progress.activePerLayer = report.activePerLayer;
  }

  /**
   * Checks that every replica reports the same state digest. A replica that differs from the
   * majority is resynchronised from one that agrees, and counted; returns the agreed digest.
   */
  private async reconcile(digests: string[], progress: RunProgress, when: string): Promise<string> {
    const counts = new Map<string, number>();
    for (const d of digests) counts.set(d, (counts.get(d) ?? 0) + 1);
    const agreed = [...counts.entries()].sort((a, b) => b[1] - a[1] || digests.indexOf(a[0]) - digests.indexOf(b[0]))[0][0];
    const differing = digests.flatMap((d, rank) => (d === agreed ? [] : [rank]));
    if (differing.length === 0) return agreed;
    const source = this.ring[digests.indexOf(agreed)];
    const upload = await this.guard(source.request('uploadState', { generation: this.generation }, 'stateUpload'));
    for (const rank of differing) {
      const link = this.ring[rank];
      const reason = `state digest ${digests[rank]} differs from the agreed ${agreed} ${when}`;
      this.log.warn({ worker: link.workerId, rank, reason }, 'replica differs; resynchronising it');
      const report = await this.guard(link.request('loadState', { generation: this.generation, step: upload.step, initialize: false, state: upload.state }, 'stateReport'));
      if (report.stateDigest !== agreed) {
        link.terminate('replica could not be resynchronised');
        throw new MembershipChanged(`worker ${link.workerId} could not be resynchronised`);
      }
      progress.resyncs++;
      this.emit({ type: 'resync', workerId: link.workerId, reason });
    }
    return agreed;
  }

  /** Commits the current state: rank 0 uploads it, its digest must be the agreed one, then it is written. */
  private async commit(progress: RunProgress): Promise<void> {
    const upload = await this.guard(this.ring[0].request('uploadState', { generation: this.generation }, 'stateUpload'));
    if (upload.step !== progress.step) {
      this.ring[0].terminate(`uploaded step ${upload.step}, expected ${progress.step}`);
      throw new MembershipChanged(`rank 0 uploaded step ${upload.step}, expected ${progress.step}`);
    }
    const snapshot = clone(progress);
    const path = writeCheckpoint(this.runDir.checkpoints, { round: progress.round, step: progress.step, configHash: configHash(this.config), config: this.config, progress: snapshot }, upload.state, upload.stateDigest, this.config.keepCheckpoints);
    this.committed = { progress: snapshot, state: Buffer.from(upload.state), digest: upload.stateDigest };
    this.failuresSinceCommit = 0;
    this.log.debug({ path, step: progress.step }, 'checkpoint committed');
  }

  private async finish(): Promise<RunSummary> {
    this.phase = 'done';
    const progress = (this.committed as Committed).progress;
    const history = progress.history;
    const summary: RunSummary = {
      runId: this.options.runId,
      runDir: this.options.runDir,
      strategy: this.config.strategy,
      rounds: history.length,
      best: progress.best,
      final: history[history.length - 1] ?? null,
      totalCompute: progress.compute,
      wallMs: progress.elapsedMs,
      resyncs: progress.resyncs,
      restarts: progress.restarts,
    };
    this.runDir.writeSummary(summary);
    this.emit({ type: 'done', summary });
    this.log.info({ best: summary.best, runDir: summary.runDir }, 'run finished');
    return summary;
  }

  // ─── membership ─────────────────────────────────────────────────────────────────────────────

  private onUnsolicited(link: WorkerLink, envelope: Envelope): void {
    if (envelope.kind === 'heartbeat' || (envelope.kind === 'error' && envelope.requestId !== 0)) return;
    if (envelope.kind === 'stepProgress') {
      // Progress counts only from the ring: a worker waiting to join has no steps to report.
      if (this.ring.includes(link)) this.progressListener?.(link, envelope);
      return;
    }
    if (envelope.kind === 'leave') {
      link.leaving = true;
      // A ring member goes at the next commit (releaseLeavers) or ring (formRing); any other worker now.
      const inRing = this.ring.includes(link);
      this.log.info({ worker: link.workerId, reason: (envelope.message as Messages['leave']).reason }, inRing ? 'worker asks to leave; releasing it at the next commit' : 'worker asks to leave');
      if (!inRing) this.release(link);
      return;
    }
    this.log.warn({ worker: link.workerId, kind: envelope.kind }, 'unexpected message from worker');
  }

  /** At a commit: lets go of the ring members that asked to leave, and re-forms the ring without them. */
  private releaseLeavers(step: number): void {
    const leavers = this.ring.filter((l) => l.leaving);
    if (leavers.length === 0) return;
    for (const link of leavers) this.release(link);
    throw new MembershipChanged(`worker(s) ${leavers.map((l) => l.workerId).join(', ')} left at step ${step}, a commit`);
  }

  private release(link: WorkerLink): void {
    link.send('shutdown', { reason: 'leave granted' });
    link.close(1000, 'left the run');
  }

  private waitingJoiners(): number {
    return this.members.ready().filter((l) => !this.ring.includes(l)).length;
  }

  /** Waits for `needed` ready workers; after `graceMs`, one is enough. */
  private async waitForWorkers(needed: number, graceMs: number): Promise<void> {
    this.phase = 'waiting';
    const startedMs = Date.now();
    const graceTimer = Number.isFinite(graceMs) ? setTimeout(() => this.members.wake(), graceMs) : null;
    let announced = -1;
    try {
      for (;;) {
        if (this.fatalError) throw this.fatalError;
        if (this.stopRequested) throw new RunStopped(this.committed?.progress.step ?? 0);
        if (this.stopping) throw new Error('coordinator stopped while waiting for workers');
        const ready = this.members.ready().length;
        if (ready >= needed || (ready >= 1 && Date.now() - startedMs >= graceMs)) return;
        if (ready !== announced) {
          this.log.info({ ready, needed }, 'waiting for workers');
          this.emit({ type: 'waiting', ready, needed });
          announced = ready;
        }
        await this.members.changed();
      }
    } finally {
      if (graceTimer) clearTimeout(graceTimer);
    }
  }

  /** A problem no re-forming can fix (bad config or data): the run stops with it. */
  private fail(error: Error): void {
    if (this.fatalError) return;
    this.fatalError = error;
    this.lost.reject(error);
    this.members.wake();
  }

  /** A new generation: ranks by worker id, links between neighbours, and the committed state everywhere. */
  private async formRing(): Promise<void> {
    this.generation++;
    this.lost = deferred();
    this.ring = this.members.ready();
    // Leavers are never in a new ring; one that asked while the last ring was failing goes now.
    for (const link of this.members.all) if (link.leaving) this.release(link);
    const members = this.ring.map((l) => ({ workerId: l.workerId, host: l.ringHost, port: l.ringPort }));
    for (const link of this.ring) if (!link.isOpen) throw new MembershipChanged(`worker ${link.workerId} left`);
    this.log.info({ generation: this.generation, workers: members.map((m) => m.workerId) }, 'forming the ring');
    this.emit({ type: 'ring', generation: this.generation, workers: members.map((m) => m.workerId) });
    const formTimeoutMs = 2 * this.config.peerTimeoutMs + 15000;
    await this.all((rank) => ['formRing', { generation: this.generation, rank, members }], 'ack', formTimeoutMs);
    const committed = this.committed;
    const load = committed
      ? { generation: this.generation, step: committed.progress.step, initialize: false, state: committed.state }
      : { generation: this.generation, step: 0, initialize: true, state: new Uint8Array(0) };
    const reports = await this.all(() => ['loadState', load], 'stateReport', formTimeoutMs);
    const expected = committed?.digest ?? reports[0].stateDigest;
    const bad = reports.findIndex((r) => r.stateDigest !== expected);
    if (bad >= 0) {
      this.ring[bad].terminate('could not load the committed state');
      throw new MembershipChanged(`worker ${this.ring[bad].workerId} could not load the committed state`);
    }
    if (!committed) await this.commit(this.initialProgress(reports[0]));
  }

  private initialProgress(report: Messages['stateReport']): RunProgress {
    return {
      round: 0,
      step: 0,
      roundLossSum: 0,
      roundSamples: 0,
      roundTimes: { ...NO_TIMES },
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
    const checkpoint = readLatestCheckpoint<RunProgress>(this.runDir.checkpoints, (path, reason) => {
      this.log.error({ path, reason }, 'checkpoint is corrupt; skipping it for the previous one');
    });
    if (!checkpoint) return null;
    const { manifest, state, path } = checkpoint;
    if (manifest.configHash !== configHash(this.config)) {
      throw new Error(`checkpoint ${path} belongs to a different configuration; use a new run directory`);
    }
    this.log.info({ path, round: manifest.round, step: manifest.step }, 'resuming from checkpoint');
    this.runDir.rewriteMetrics(manifest.progress.history);
    // JSON has no NaN: a NaN loss (a diverged round) was written as null.
    const progress = manifest.progress;
    progress.schedule.losses = progress.schedule.losses.map((loss) => loss ?? NaN);
    return { progress, state, digest: manifest.state.digest };
  }

  // ─── helpers ────────────────────────────────────────────────────────────────────────────────

  /** Sends one command to every ring member (by rank) and waits for all replies, or a membership change. */
  private all<K extends MessageKind, R extends MessageKind>(command: (rank: number) => [K, Messages[K]], replyKind: R, timeoutMs = 0): Promise<Messages[R][]> {
    const requests = this.ring.map((link, rank) => {
      const [kind, message] = command(rank);
      const reply = link.request(kind, message, replyKind);
      return timeoutMs > 0 ? withTimeout(reply, timeoutMs, () => link.terminate(`no reply to ${kind} within ${timeoutMs} ms`)) : reply;
    });
    return this.guard(Promise.all(requests));
  }

  /** Races a promise against the loss of a ring member. */
  private guard<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([promise, this.lost.promise as Promise<never>]);
  }

  private weightsKept(progress: RunProgress): number {
    const total = this.requireData()
      .layers.filter((l) => l.prunable)
      .reduce((n, l) => n + l.shape.reduce((a, b) => a * b, 1), 0);
    return progress.activePerLayer.reduce((a, b) => a + b, 0) / total;
  }

  private requireData(): Messages['ready'] {
    if (!this.members.reference) throw new Error('no worker has reported its data yet');
    return this.members.reference;
  }

  private emit(event: RunEvent): void {
    this.options.onEvent?.(event);
  }

  private serveHttp(request: IncomingMessage, response: ServerResponse): void {
    if (this.options.httpHandler?.(request, response)) return;
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/healthz') return sendJson(response, 200, { ok: true });
    if (path === '/readyz') return sendJson(response, this.phase === 'training' ? 200 : 503, { phase: this.phase });
    if (path === '/status.json') return sendJson(response, 200, this.status());
    sendJson(response, 404, { error: 'not found' });
  }
}

interface Deferred {
  promise: Promise<void>;
  reject(error: Error): void;
}

function deferred(): Deferred {
  let reject: (error: Error) => void = () => {};
  const promise = new Promise<void>((_, r) => (reject = r));
  promise.catch(() => {}); // observed through guard(); never an unhandled rejection
  return { promise, reject };
}

function isMembershipError(error: unknown): boolean {
  return error instanceof MembershipChanged || error instanceof LinkClosed || (error instanceof WorkerError && error.code === 'aborted');
}

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout();
      reject(new MembershipChanged(`no reply within ${ms} ms`));
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: Error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

function clone<T>(value: T): T {
  return structuredClone(value);
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}
