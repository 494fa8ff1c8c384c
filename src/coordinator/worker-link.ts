// The coordinator's end of one worker's control connection: typed request/reply over the
// protobuf envelope, liveness (when the worker was last heard from), and a clean close that
// fails every request still waiting for a reply.
import WebSocket from 'ws';
import type { Logger } from '../core/log.ts';
import { decodeEnvelope, encodeEnvelope, type Envelope, type MessageKind, type Messages } from '../core/protocol.ts';

export class LinkClosed extends Error {
  constructor(readonly workerId: string, reason: string) {
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
  replyKind: MessageKind;
  resolve(message: unknown): void;
  reject(error: Error): void;
}

export class WorkerLink {
  lastHeardMs = Date.now();
  /** Filled when the worker has loaded its data and model. */
  ready: Messages['ready'] | null = null;
  private nextRequestId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedReason: string | null = null;
  private readonly closeListeners: ((reason: string) => void)[] = [];

  constructor(
    readonly workerId: string,
    readonly ringHost: string,
    readonly ringPort: number,
    private readonly socket: WebSocket,
    private readonly log: Logger,
    private readonly onUnsolicited: (link: WorkerLink, envelope: Envelope) => void,
  ) {
    socket.on('close', (code, reason) => this.closed(`connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`));
  }

  get isOpen(): boolean {
    return this.closedReason === null;
  }

  /** Sends a command and resolves with the worker's reply of `replyKind`. */
  request<K extends MessageKind, R extends MessageKind>(kind: K, message: Messages[K], replyKind: R): Promise<Messages[R]> {
    if (this.closedReason !== null) return Promise.reject(new LinkClosed(this.workerId, this.closedReason));
    const requestId = this.nextRequestId++;
    return new Promise<Messages[R]>((resolve, reject) => {
      this.pending.set(requestId, { replyKind, resolve: resolve as (m: unknown) => void, reject });
      this.send(kind, message, requestId);
    });
  }

  send<K extends MessageKind>(kind: K, message: Messages[K], requestId = 0): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(encodeEnvelope(kind, message, requestId));
  }

  /** An already-decoded frame from this worker. */
  receive(envelope: Envelope): void {
    this.lastHeardMs = Date.now();
    const pending = envelope.requestId ? this.pending.get(envelope.requestId) : undefined;
    if (!pending) {
      this.onUnsolicited(this, envelope);
      return;
    }
    this.pending.delete(envelope.requestId);
    if (envelope.kind === 'error') {
      const { code, message } = envelope.message as Messages['error'];
      pending.reject(new WorkerError(this.workerId, code, message));
    } else if (envelope.kind !== pending.replyKind) {
      pending.reject(new WorkerError(this.workerId, 'unexpected', `replied '${envelope.kind}', expected '${pending.replyKind}'`));
    } else {
      pending.resolve(envelope.message);
    }
  }

  /** Decodes a raw frame; a frame that does not decode closes the link. */
  receiveFrame(data: Buffer): void {
    let envelope: Envelope;
    try {
      envelope = decodeEnvelope(data);
    } catch (error) {
      this.log.warn({ worker: this.workerId, err: (error as Error).message }, 'bad message from worker; closing its connection');
      this.close(1008, (error as Error).message.slice(0, 100));
      return;
    }
    this.receive(envelope);
  }

  onClose(listener: (reason: string) => void): void {
    this.closeListeners.push(listener);
  }

  close(code: number, reason: string): void {
    this.socket.close(code, reason);
    this.closed(reason);
  }

  /** Drops the connection at once (a silent worker cannot be trusted to finish a close handshake). */
  terminate(reason: string): void {
    this.socket.terminate();
    this.closed(reason);
  }

  private closed(reason: string): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    for (const pending of this.pending.values()) pending.reject(new LinkClosed(this.workerId, reason));
    this.pending.clear();
    for (const listener of this.closeListeners) listener(reason);
  }
}
