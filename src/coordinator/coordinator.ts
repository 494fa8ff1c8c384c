// The coordinator process: one authenticated server for workers and status, the membership that
// admits them, and the loop of ring generations — wait for ready workers, form a RemoteGroup,
// hand it to the run loop (run-loop.ts), and when a generation ends early ask the restart policy
// whether to re-form from the last commit. It is never on the per-step data path.
import { tokenThroughput } from '../training/flops.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { OccamConfig } from '../config.ts';
import type { RunEvent } from '../observe/events.ts';
import type { Logger } from '../common/log.ts';
import { RunDir, type RunSummary } from '../storage/run-dir.ts';
import type { Envelope, Messages } from '../wire/protocol.ts';
import { AuthenticatedServer } from '../wire/server.ts';
import type { TlsOptions } from '../wire/tls.ts';
import { Membership } from './membership.ts';
import { RemoteGroup } from './remote-group.ts';
import { MembershipChanged } from './replica-group.ts';
import { RestartPolicy, runGenerations } from './restart-policy.ts';
import { RunLoop, RunStopped } from './run-loop.ts';
import type { RunState } from './run-state.ts';
import type { WorkerLink } from './worker-link.ts';

export { RunStopped, type RunEvent, type RunState };

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

export class Coordinator {
  readonly runDir: RunDir;
  private readonly config: OccamConfig;
  private readonly log: Logger;
  private readonly server: AuthenticatedServer;
  private readonly members: Membership;
  private readonly loop: RunLoop;
  private readonly policy = new RestartPolicy();
  private group: RemoteGroup | null = null;
  private generation = 0;
  private stopping = false;
  /** run() has opened the run directory (the failure history has somewhere to go). */
  private opened = false;
  private phase: 'waiting' | 'training' | 'done' = 'waiting';
  private fatalError: Error | null = null;

  constructor(private readonly options: CoordinatorOptions) {
    this.config = options.config;
    this.log = options.log;
    this.runDir = new RunDir(options.runDir);
    const emit = (event: RunEvent) => options.onEvent?.(event);
    this.loop = new RunLoop({
      config: this.config,
      runDir: this.runDir,
      runId: options.runId,
      log: this.log,
      emit,
      onCommit: () => this.policy.committed(),
    });
    this.members = new Membership({
      config: this.config,
      maxMessageBytes: options.maxMessageBytes,
      runId: options.runId,
      log: this.log,
      onLeave: (link, reason) => {
        if (!this.group?.has(link)) return;
        if (!this.stopping && !link.leaving) this.runDir.recordFailure({ type: 'worker-lost', worker: link.workerId, reason });
        this.group.lose(new MembershipChanged(`worker ${link.workerId} lost: ${reason}`));
      },
      onExcluded: (link, reason, forMs) => this.runDir.recordFailure({ type: 'excluded', worker: link.workerId, reason, forMs }),
      onUnsolicited: (link, envelope) => this.onUnsolicited(link, envelope),
      onPrepareFailed: (error) => this.fail(error),
    });
    this.server = new AuthenticatedServer({
      name: 'control',
      token: options.token,
      log: this.log,
      tls: options.tls,
      maxPayload: options.maxMessageBytes,
      routes: (path) => {
        if (path === '/healthz') return { status: 200, body: { ok: true } };
        if (path === '/readyz') return { status: this.phase === 'training' ? 200 : 503, body: { phase: this.phase } };
        if (path === '/status.json') return { status: 200, body: this.status() };
        return null;
      },
      fallback: options.httpHandler,
      onConnection: (socket, request) => this.members.accept(socket, request),
    });
  }

  /** Starts listening; resolves with the port. */
  async listen(): Promise<number> {
    const port = await this.server.listen(this.options.port, this.options.host);
    this.log.info({ port, runId: this.options.runId, runDir: this.options.runDir }, 'coordinator listening');
    return port;
  }

  /** Trains the whole run (resuming from the run directory's last checkpoint) and returns its summary. */
  async run(): Promise<RunSummary> {
    this.loop.open();
    this.opened = true;
    this.runDir.recordFailure({ type: 'coordinator-start' });
    const watchdog = setInterval(() => this.members.checkLiveness(), this.config.heartbeatMs);
    try {
      // A resumed run starts with whoever reconnects within the grace time; others join later.
      let graceMs = this.loop.committed ? this.config.peerTimeoutMs : Infinity;
      await runGenerations(this.loop, this.policy, {
        form: async () => {
          await this.waitForWorkers(this.config.workers, graceMs);
          graceMs = 0;
          const group = await this.formGroup();
          this.phase = 'training';
          return group;
        },
        ends: (error) => this.fatalError ?? (this.stopping ? error : null),
        onRestart: (reason, attempt) => {
          this.log.warn({ reason, attempt }, 'membership changed; re-forming the ring from the last commit');
          this.options.onEvent?.({ type: 'restart', reason });
        },
      });
      this.phase = 'done';
      return this.loop.finish();
    } finally {
      clearInterval(watchdog);
    }
  }

  /**
   * Asks the run to stop after its next commit (the end of the current segment): run() then
   * rejects with RunStopped, and the run resumes from that commit. For SIGTERM.
   */
  requestStop(): void {
    this.loop.stopRequested = true;
    this.members.wake();
  }

  /**
   * Stops serving and closes the servers. With `shutdownWorkers` the workers exit (the run is
   * over); without, they keep reconnecting, to a restarted coordinator.
   */
  async close(reason = 'coordinator stopping', shutdownWorkers = true): Promise<void> {
    if (!this.stopping && this.opened) this.runDir.recordFailure({ type: 'coordinator-stop', reason });
    this.stopping = true;
    this.group?.lose(new MembershipChanged(reason));
    this.members.close(reason, shutdownWorkers);
    await this.server.close();
  }

  /** A snapshot for health checks and the status page. */
  status(): {
    phase: string;
    generation: number;
    workers: { id: string; rank: number; inRing: boolean; ready: boolean }[];
    progress: RunState | null;
    committedStep: number | null;
    config: OccamConfig;
  } {
    const ring = this.group?.memberIds ?? [];
    return {
      phase: this.phase,
      generation: this.generation,
      workers: this.members.all.map((l) => ({
        id: l.workerId,
        rank: ring.indexOf(l.workerId),
        inRing: this.group?.has(l) ?? false,
        ready: l.ready !== null,
      })),
      progress: this.loop.current,
      committedStep: this.loop.committed?.progress.step ?? null,
      config: this.config,
    };
  }

  /** A new generation of the ready workers, ranked by worker id, with links between neighbours. */
  private async formGroup(): Promise<RemoteGroup> {
    this.generation++;
    const links = this.members.ready();
    // Leavers are never in a new ring; one that asked while the last ring was failing goes now.
    for (const link of this.members.all) if (link.leaving) this.members.release(link);
    const reference = this.members.reference;
    if (!reference) throw new Error('no worker has reported its data yet');
    const group = new RemoteGroup(this.generation, links, reference, this.members, this.config, this.log);
    this.group = group;
    this.options.onEvent?.({
      type: 'ring',
      generation: this.generation,
      workers: [...group.memberIds],
      hardware: [...group.hardware],
      peakFlops: [...group.peakFlops],
      throughput: tokenThroughput(this.config, group.facts.layers),
    });
    await group.form();
    return group;
  }

  private onUnsolicited(link: WorkerLink, envelope: Envelope): void {
    if (envelope.kind === 'heartbeat' || (envelope.kind === 'error' && envelope.requestId !== 0)) return;
    // Progress counts only from the ring: a worker waiting to join has no steps to report.
    if (envelope.kind === 'stepProgress') return this.group?.progress(link, envelope.message as Messages['stepProgress']);
    if (envelope.kind === 'ringStall') return this.group?.stalled(link, envelope.message as Messages['ringStall']);
    if (envelope.kind === 'leave') {
      link.leaving = true;
      // A ring member goes at the next commit (the group's boundary) or ring (formGroup); any other worker now.
      const inRing = this.group?.has(link) ?? false;
      this.log.info(
        { worker: link.workerId, reason: (envelope.message as Messages['leave']).reason },
        inRing ? 'worker asks to leave; releasing it at the next commit' : 'worker asks to leave',
      );
      if (!inRing) this.members.release(link);
      return;
    }
    this.log.warn({ worker: link.workerId, kind: envelope.kind }, 'unexpected message from worker');
  }

  /** Waits for `needed` ready workers; after `graceMs`, minWorkers are enough. */
  private async waitForWorkers(needed: number, graceMs: number): Promise<void> {
    this.phase = 'waiting';
    const startedMs = Date.now();
    const graceTimer = Number.isFinite(graceMs) ? setTimeout(() => this.members.wake(), graceMs) : null;
    let announced = -1;
    try {
      for (;;) {
        if (this.fatalError) throw this.fatalError;
        if (this.loop.stopRequested) throw new RunStopped(this.loop.committed?.progress.step ?? 0);
        if (this.stopping) throw new Error('coordinator stopped while waiting for workers');
        const ready = this.members.ready().length;
        if (ready >= needed || (ready >= this.config.minWorkers && Date.now() - startedMs >= graceMs)) return;
        if (ready !== announced) {
          this.log.info({ ready, needed }, 'waiting for workers');
          this.options.onEvent?.({ type: 'waiting', ready, needed });
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
    this.group?.lose(error);
    this.members.wake();
  }
}
