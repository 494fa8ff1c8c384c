// Who is in the cluster: the workers connected to the coordinator. A worker is admitted by its
// join, prepared by the welcome (it loads the data and builds the model, then reports ready),
// and kept by heartbeats; the coordinator picks ready workers for each ring and hears when one
// leaves. The first ready worker's data and model are the reference every other must match.
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import { configHash, type OccamConfig } from '../config.ts';
import type { Logger } from '../common/log.ts';
import { decodeEnvelope, type Envelope, type Messages } from '../wire/protocol.ts';
import { closeReason, joinProblem, readyMismatch } from '../wire/validate.ts';
import { LinkClosed, WorkerLink } from './worker-link.ts';

/** How long a new connection may take to send its join. */
const JOIN_TIMEOUT_MS = 10000;

export interface MembershipOptions {
  config: OccamConfig;
  runId: string;
  log: Logger;
  /** A worker disconnected or was declared lost. */
  onLeave(link: WorkerLink, reason: string): void;
  /** A message that answers no request (progress reports). */
  onUnsolicited(link: WorkerLink, envelope: Envelope): void;
  /** The first worker to prepare the run could not: they share config and data, so none can. */
  onPrepareFailed(error: Error): void;
}

export class Membership {
  /** The first ready worker's data and model. */
  reference: Messages['ready'] | null = null;
  private readonly links = new Map<string, WorkerLink>();
  private waiters: (() => void)[] = [];
  private closed = false;

  constructor(private readonly options: MembershipOptions) {}

  /** Every connected worker, ready or not. */
  get all(): WorkerLink[] {
    return [...this.links.values()];
  }

  /** Workers that have loaded the data and built the model and are staying, in worker-id order (the rank order). */
  ready(): WorkerLink[] {
    return this.all.filter((l) => l.ready !== null && l.isOpen && !l.leaving).sort((a, b) => a.workerId.localeCompare(b.workerId));
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
      if (envelope.kind !== 'join') {
        log.warn({ remote, kind: envelope.kind }, 'connection refused: first message is not a join');
        socket.close(1008, 'expected join');
        return;
      }
      this.admit(socket, envelope.message as Messages['join'], remote);
    });
  }

  /** Heartbeats to every worker; one silent for peerTimeoutMs is declared lost. */
  checkLiveness(): void {
    const now = Date.now();
    for (const link of this.links.values()) {
      const silentMs = now - link.lastHeardMs;
      if (silentMs > this.options.config.peerTimeoutMs) {
        this.options.log.warn({ worker: link.workerId, silentMs }, 'worker silent; declaring it lost');
        link.terminate(`silent for ${silentMs} ms`);
      } else {
        link.send('heartbeat', { sentMs: now });
      }
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
    socket.on('message', (data: Buffer) => link.receiveFrame(data));
    link.onClose((reason) => {
      if (this.links.get(workerId) === link) this.links.delete(workerId);
      // Expected when the coordinator itself closes the connections (the run is over) or released the worker.
      log[this.closed || link.leaving ? 'info' : 'warn']({ worker: workerId, reason }, 'worker disconnected');
      this.options.onLeave(link, reason);
      this.wake();
    });
    log.info({ worker: workerId, remote }, 'worker joined');
    const welcome = { runId: this.options.runId, configJson: JSON.stringify(config), configHash: configHash(config) };
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
        log.info({ worker: workerId, backend: ready.backend, data: ready.data.description }, 'worker ready');
        this.wake();
      })
      .catch((error: Error) => {
        if (error instanceof LinkClosed) return;
        log.error({ worker: workerId, err: error.message }, 'worker could not prepare the run');
        link.close(1011, error.message);
        // Once one worker could prepare, the problem is this worker's (or a misbehaving peer's) alone.
        if (!this.reference)
          this.options.onPrepareFailed(
            new Error(`worker ${workerId} could not prepare the run: ${error.message.replace(/^worker \S+: /, '')}`),
          );
      });
  }
}
