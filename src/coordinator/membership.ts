// Who is in the cluster: the workers connected to the coordinator. A worker is admitted by its
// join, prepared by the welcome (it loads the data and builds the model, then reports ready),
// and kept by heartbeats on either of its connections (control, and liveness from a thread of its
// own); the coordinator picks ready workers that are not excluded for each ring and hears when one
// leaves. The first ready worker's data and model are the reference every other must match.
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import { configHash, type OccamConfig } from '../config.ts';
import type { Logger } from '../common/log.ts';
import { decodeEnvelope, heartbeat, type Envelope, type Messages } from '../wire/protocol.ts';
import { setMessageLimit } from '../wire/server.ts';
import { closeReason, joinProblem, readyMismatch } from '../wire/validate.ts';
import { stateBytesBound } from '../storage/state-format.ts';
import { LinkClosed, WorkerLink } from './worker-link.ts';

/** How long a new connection may take to send its join. */
const JOIN_TIMEOUT_MS = 10000;
/** A worker not yet heard on its liveness connection is lost after this many peerTimeoutMs of silence. */
const STARTING_SILENCE_FACTOR = 4;
/** Largest message before a join (a join or a liveness hello is a few hundred bytes). */
const PRE_JOIN_MAX_BYTES = 16 * 1024;
/** Largest message from a joined worker before it is ready (its ready lists every layer). */
const JOINED_MAX_BYTES = 32 * 2 ** 20;

export interface MembershipOptions {
  config: OccamConfig;
  /** The operator's bound on one message (--max-message-mb); a ready worker's is the lesser of it and its state size. */
  maxMessageBytes: number;
  runId: string;
  log: Logger;
  /** A worker disconnected or was declared lost. */
  onLeave(link: WorkerLink, reason: string): void;
  /** A message that answers no request (progress reports). */
  onUnsolicited(link: WorkerLink, envelope: Envelope): void;
  /** A worker was kept out of new rings for `forMs` (one end of a broken ring link). */
  onExcluded?(link: WorkerLink, reason: string, forMs: number): void;
  /** Two workers (or the only one) could not prepare the run before any could: they share config and data, so none can. */
  onPrepareFailed(error: Error): void;
}

export class Membership {
  /** The first ready worker's data and model. */
  reference: Messages['ready'] | null = null;
  private readonly links = new Map<string, WorkerLink>();
  private waiters: (() => void)[] = [];
  /** Workers whose welcome failed before any was ready. */
  private readonly prepareFailures = new Set<string>();
  /** Workers kept out of new rings until then (ms since the epoch), by worker id. */
  private readonly excludedUntil = new Map<string, number>();
  /** Workers said to be slow (busy past peerTimeoutMs), until they are not. */
  private readonly slow = new Set<WorkerLink>();
  private closed = false;

  constructor(private readonly options: MembershipOptions) {}

  /** Every connected worker, ready or not. */
  get all(): WorkerLink[] {
    return [...this.links.values()];
  }

  /** Workers that have loaded the data and built the model, are staying and not excluded, in worker-id order (the rank order). */
  ready(): WorkerLink[] {
    const now = Date.now();
    return this.all
      .filter((l) => l.ready !== null && l.isOpen && !l.leaving && (this.excludedUntil.get(l.workerId) ?? 0) <= now)
      .sort((a, b) => a.workerId.localeCompare(b.workerId));
  }

  /**
   * Keeps `link` out of new rings for 4 × peerTimeoutMs (one end of a broken ring link): then it is
   * a joiner again, admitted at the next commit, and excluded again if its link is still broken.
   */
  exclude(link: WorkerLink, reason: string): void {
    const ms = 4 * this.options.config.peerTimeoutMs;
    this.excludedUntil.set(link.workerId, Date.now() + ms);
    this.options.log.warn({ worker: link.workerId, forMs: ms, reason }, 'worker excluded from new rings');
    this.options.onExcluded?.(link, reason, ms);
    setTimeout(() => this.wake(), ms + 10).unref();
  }

  /** Resolves at the next change: a worker ready or gone, or wake(). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** A WebSocket that passed authentication: its first message must be a join. */
  accept(socket: WebSocket, request: IncomingMessage): void {
    const { log } = this.options;
    const remote = request.socket.remoteAddress;
    setMessageLimit(socket, PRE_JOIN_MAX_BYTES);
    socket.on('error', (error) => log.debug({ remote, err: error.message }, 'control socket error'));
    const joinTimer = setTimeout(() => socket.close(1008, 'no join'), JOIN_TIMEOUT_MS);
    socket.once('message', (data: Buffer) => {
      clearTimeout(joinTimer);
      let envelope: Envelope;
      try {
        envelope = decodeEnvelope(data);
      } catch (error) {
        log.warn({ remote, err: (error as Error).message }, 'connection refused: bad first message');
        socket.close(1008, closeReason((error as Error).message));
        return;
      }
      if (envelope.kind === 'livenessHello') return this.attachLiveness(socket, envelope.message as Messages['livenessHello'], remote);
      if (envelope.kind !== 'join') {
        log.warn({ remote, kind: envelope.kind }, 'connection refused: first message is not a join');
        socket.close(1008, 'expected join');
        return;
      }
      this.admit(socket, envelope.message as Messages['join'], remote);
    });
  }

  /**
   * Heartbeats to every worker; one silent for peerTimeoutMs (4 × while it starts) is declared lost. One whose liveness
   * thread says its training thread is inside a step that long is slow, not lost: said once.
   */
  checkLiveness(): void {
    const now = Date.now();
    const { config, log } = this.options;
    for (const link of this.links.values()) {
      const silentMs = now - link.lastHeardMs;
      // Until its liveness thread is up, a new worker's training thread may be held by loading its
      // data and model, on a machine busy starting others: it has longer to be heard.
      const limitMs = link.livenessStarted ? config.peerTimeoutMs : STARTING_SILENCE_FACTOR * config.peerTimeoutMs;
      if (silentMs > limitMs) {
        log.warn({ worker: link.workerId, silentMs }, 'worker silent; declaring it lost');
        link.terminate(`silent for ${silentMs} ms`);
        continue;
      }
      link.send('heartbeat', heartbeat());
      const slow = link.busyMs > config.peerTimeoutMs;
      if (slow && !this.slow.has(link))
        log.warn(
          { worker: link.workerId, busyMs: link.busyMs },
          'worker slow: one step has kept it busy past peerTimeoutMs; waiting for it',
        );
      if (slow) this.slow.add(link);
      else this.slow.delete(link);
    }
  }

  /** Lets a worker that asked to leave go: it exits on the shutdown. */
  release(link: WorkerLink): void {
    link.send('shutdown', { reason: 'leave granted' });
    link.close(1000, 'left the run');
  }

  /** Closes every connection; with `shutdownWorkers` the workers exit, else they reconnect later. */
  close(reason: string, shutdownWorkers: boolean): void {
    this.closed = true;
    for (const link of this.links.values()) {
      if (shutdownWorkers) link.send('shutdown', { reason });
      link.close(1001, reason);
    }
    this.wake();
  }

  /** A worker's second connection: its heartbeats, from a thread its training cannot block. */
  private attachLiveness(socket: WebSocket, hello: Messages['livenessHello'], remote: string | undefined): void {
    const link = this.links.get(hello.workerId);
    if (!link?.attachLiveness(socket, hello.key)) {
      this.options.log.warn(
        { remote, workerId: hello.workerId.slice(0, 128) },
        'liveness connection refused: no such worker, or a wrong key',
      );
      socket.close(1008, 'unknown worker or wrong liveness key');
    }
  }

  private admit(socket: WebSocket, join: Messages['join'], remote: string | undefined): void {
    const { config, log } = this.options;
    const { workerId, ringHost, ringPort } = join;
    const problem =
      joinProblem(join) ??
      (this.links.get(workerId)?.isOpen
        ? `worker id ${workerId} is already connected (replayed join?)`
        : this.closed
          ? 'coordinator is stopping'
          : null);
    if (problem) {
      log.warn({ remote, workerId: workerId.slice(0, 128), problem }, 'join refused');
      socket.close(1008, closeReason(problem));
      return;
    }
    const link = new WorkerLink(workerId, ringHost, ringPort, socket, log, this.options.onUnsolicited, () => ({
      config,
      reference: this.reference,
    }));
    this.links.set(workerId, link);
    setMessageLimit(socket, Math.min(JOINED_MAX_BYTES, this.options.maxMessageBytes));
    socket.on('message', (data: Buffer) => link.receiveFrame(data));
    link.onClose((reason) => {
      if (this.links.get(workerId) === link) this.links.delete(workerId);
      this.slow.delete(link);
      // Expected when the coordinator itself closes the connections (the run is over) or released the worker.
      log[this.closed || link.leaving ? 'info' : 'warn']({ worker: workerId, reason }, 'worker disconnected');
      this.options.onLeave(link, reason);
      this.wake();
    });
    log.info({ worker: workerId, remote }, 'worker joined');
    const welcome = {
      runId: this.options.runId,
      configJson: JSON.stringify(config),
      configHash: configHash(config),
      livenessKey: link.livenessKey,
    };
    link
      .request('welcome', welcome)
      .then((ready) => {
        // Checked on arrival too; again here, since two workers' replies may race to be the reference.
        const mismatch = readyMismatch(this.reference, ready);
        if (mismatch) {
          log.warn({ worker: workerId, problem: mismatch }, 'worker refused');
          link.close(1008, mismatch);
          return;
        }
        link.ready = ready;
        this.reference ??= ready;
        // From now on its largest message is a state upload, and this model's states have a size.
        setMessageLimit(socket, Math.min(this.options.maxMessageBytes, stateBytesBound(ready.layers) + 4096));
        log.info({ worker: workerId, backend: ready.backend, data: ready.data.description }, 'worker ready');
        this.wake();
      })
      .catch((error: Error) => {
        if (error instanceof LinkClosed) return;
        log.error({ worker: workerId, err: error.message }, 'worker could not prepare the run');
        link.close(1011, error.message);
        // Once one worker could prepare, the problem is this worker's (or a misbehaving peer's) alone.
        // Before, it is the run's (bad config or data) once two workers fail alike, or the only one
        // does: a single misbehaving member cannot stop the run by failing first.
        this.prepareFailures.add(workerId);
        if (!this.reference && this.prepareFailures.size >= Math.min(2, config.workers))
          this.options.onPrepareFailed(
            new Error(`worker ${workerId} could not prepare the run: ${error.message.replace(/^worker \S+: /, '')}`),
          );
      });
  }
}
