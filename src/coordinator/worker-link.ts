// The coordinator's end of one worker's control connection: typed request/reply over the
// protobuf envelope, liveness (when the worker was last heard from), and a clean close that
// fails every request still waiting for a reply. Every frame is validated (wire/validate.ts)
// before it reaches the coordinator: an invalid one closes this connection and nothing else.
import WebSocket from 'ws';
import { randomKey, tokensEqual } from '../wire/auth.ts';
import type { Logger } from '../common/log.ts';
import {
  decodeEnvelope,
  encodeEnvelope,
  heartbeat,
  type Command,
  type Envelope,
  type MessageKind,
  type Messages,
  type ReplyOf,
  type RingCounters,
} from '../wire/protocol.ts';
import {
  closeReason,
  heartbeatProblem,
  replyProblem,
  unsolicitedProblem,
  type CoordinatorView,
  type SentCommand,
} from '../wire/validate.ts';

export class LinkClosed extends Error {
  constructor(
    readonly workerId: string,
    reason: string,
  ) {
    super(`worker ${workerId}: ${reason}`);
    this.name = 'LinkClosed';
  }
}

/** The worker answered a command with an Error message. */
export class WorkerError extends Error {
  constructor(
    readonly workerId: string,
    readonly code: string,
    message: string,
  ) {
    super(`worker ${workerId}: ${message}`);
    this.name = 'WorkerError';
  }
}

interface Pending {
  command: SentCommand;
  resolve(message: unknown): void;
  reject(error: Error): void;
}

export class WorkerLink {
  lastHeardMs = Date.now();
  /** How long the worker's training thread has been inside one step, by its last heartbeat. */
  busyMs = 0;
  /** Its ring links' byte counts, by its last heartbeat from the training thread (null: none yet). */
  ring: RingCounters | null = null;
  readonly joinedMs = Date.now();
  /** Opens this worker's liveness connection: sent only in its welcome. */
  readonly livenessKey = randomKey();
  /** Filled when the worker has loaded its data and model. */
  ready: Messages['ready'] | null = null;
  /** The worker asked to leave (its pod is stopping): released at the next commit, never in a new ring. */
  leaving = false;
  private nextRequestId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedReason: string | null = null;
  private liveness: WebSocket | null = null;
  /** Its liveness thread has connected at least once: the worker is past its start. */
  livenessStarted = false;
  private readonly closeListeners: ((reason: string) => void)[] = [];

  constructor(
    readonly workerId: string,
    readonly ringHost: string,
    readonly ringPort: number,
    private readonly socket: WebSocket,
    private readonly log: Logger,
    private readonly onUnsolicited: (link: WorkerLink, envelope: Envelope) => void,
    /** What replies are checked against: the config and the model the workers reported. */
    private readonly view: () => CoordinatorView,
  ) {
    socket.on('close', (code, reason) => this.closed(`connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`));
  }

  get isOpen(): boolean {
    return this.closedReason === null;
  }

  /** Sends a command and resolves with the worker's reply (of the kind REPLY_KIND names; checked on arrival). */
  request<K extends Command>(kind: K, message: Messages[K]): Promise<Messages[ReplyOf<K>]> {
    if (this.closedReason !== null) return Promise.reject(new LinkClosed(this.workerId, this.closedReason));
    const requestId = this.nextRequestId++;
    return new Promise<Messages[ReplyOf<K>]>((resolve, reject) => {
      this.pending.set(requestId, { command: { kind, message }, resolve: resolve as (m: unknown) => void, reject });
      this.send(kind, message, requestId);
    });
  }

  send<K extends MessageKind>(kind: K, message: Messages[K], requestId = 0): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(encodeEnvelope(kind, message, requestId));
  }

  /** An already-decoded frame from this worker; an invalid one closes the link (and fails its pending requests). */
  receive(envelope: Envelope): void {
    if (!this.isOpen) return;
    if (envelope.kind === 'heartbeat') {
      const { busyMs, ringGeneration, sentToNextBytes, receivedFromPreviousBytes } = envelope.message as Messages['heartbeat'];
      this.heard(busyMs);
      if (ringGeneration > 0) this.ring = { generation: ringGeneration, sentToNextBytes, receivedFromPreviousBytes };
    } else this.heard(0);
    const pending = envelope.requestId ? this.pending.get(envelope.requestId) : undefined;
    const problem = pending ? replyProblem(pending.command, envelope, this.view()) : unsolicitedProblem(envelope);
    if (problem) {
      this.log.warn({ worker: this.workerId, kind: envelope.kind, problem }, 'invalid message from worker; closing its connection');
      this.close(1008, problem);
      return;
    }
    if (!pending) {
      this.onUnsolicited(this, envelope);
      return;
    }
    this.pending.delete(envelope.requestId);
    if (envelope.kind === 'error') {
      const { code, message } = envelope.message as Messages['error'];
      pending.reject(new WorkerError(this.workerId, code, message));
    } else {
      pending.resolve(envelope.message);
    }
  }

  /** Decodes a raw frame; a frame that does not decode closes the link. */
  receiveFrame(data: Buffer): void {
    if (!this.isOpen) return;
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(data);
    } catch (error) {
      this.log.warn({ worker: this.workerId, err: (error as Error).message }, 'bad message from worker; closing its connection');
      this.close(1008, (error as Error).message);
      return;
    }
    this.receive(envelope);
  }

  /**
   * Takes `socket` as this worker's liveness connection when `key` is its own: heartbeats on it
   * keep the worker alive and are answered there. False (and nothing changes) for a wrong key.
   */
  attachLiveness(socket: WebSocket, key: string): boolean {
    if (!this.isOpen || !tokensEqual(key, this.livenessKey)) return false;
    this.liveness?.terminate();
    this.liveness = socket;
    this.livenessStarted = true;
    socket.on('message', (data: Buffer) => {
      const beat = decodeHeartbeat(data);
      if (!beat) {
        this.log.warn({ worker: this.workerId }, 'liveness connection sent something other than a heartbeat; closing it');
        return socket.close(1008, 'heartbeats only');
      }
      this.heard(beat.busyMs);
      if (socket.readyState === WebSocket.OPEN) socket.send(encodeEnvelope('heartbeat', heartbeat()));
    });
    socket.on('close', () => {
      if (this.liveness === socket) this.liveness = null;
    });
    return true;
  }

  onClose(listener: (reason: string) => void): void {
    this.closeListeners.push(listener);
  }

  close(code: number, reason: string): void {
    this.socket.close(code, closeReason(reason));
    this.closed(reason);
  }

  /** Drops the connection at once (a silent worker cannot be trusted to finish a close handshake). */
  terminate(reason: string): void {
    this.socket.terminate();
    this.closed(reason);
  }

  private heard(busyMs: number): void {
    this.lastHeardMs = Date.now();
    this.busyMs = busyMs;
  }

  private closed(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    this.liveness?.terminate();
    for (const pending of this.pending.values()) pending.reject(new LinkClosed(this.workerId, reason));
    this.pending.clear();
    for (const listener of this.closeListeners) listener(reason);
  }
}

/** A valid heartbeat frame, or null for anything else. */
function decodeHeartbeat(data: Buffer): Messages['heartbeat'] | null {
  try {
    const envelope = decodeEnvelope(data);
    const heartbeat = envelope.message as Messages['heartbeat'];
    return envelope.kind === 'heartbeat' && !heartbeatProblem(heartbeat) ? heartbeat : null;
  } catch {
    return null;
  }
}
