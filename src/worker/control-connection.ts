// One connection from a worker to its coordinator: the WebSocket and its join, the heartbeats
// (from this thread while it is free, and from the liveness thread once the welcome gave a key),
// the check that the coordinator still speaks, and how the connection ended. The worker handles
// what arrives; this class only carries it.
import WebSocket from 'ws';
import type { Logger } from '../common/log.ts';
import { authorizationHeader } from '../wire/auth.ts';
import {
  decodeEnvelope,
  encodeEnvelope,
  heartbeat,
  type ProtocolError,
  type Envelope,
  type Messages,
  type MessageKind,
  type RingCounters,
} from '../wire/protocol.ts';
import { tlsClientOptions, type TlsOptions } from '../wire/tls.ts';
import { LivenessChannel } from './liveness.ts';

export interface ControlConnectionOptions {
  url: string;
  token: string;
  tls?: TlsOptions;
  maxMessageBytes: number;
  log: Logger;
  join: Messages['join'];
  /** The run's heartbeat interval and silence bound, once a welcome gave them. */
  timing(): { heartbeatMs: number; peerTimeoutMs: number } | null;
  ringCounters(): RingCounters | null;
  onEnvelope(envelope: Envelope): void;
  /** Whether the worker is stopping (its close is then the normal end of a run). */
  stopping(): boolean;
  /** Fault injection (OCCAM_PACE_KBPS): messages leave no faster than a link of this rate carries them. */
  paceBytesPerSecond?: number;
}

/** How a connection ended: whether it got as far as a welcome, and else why not (null: no reason known). */
export interface SessionEnd {
  welcomed: boolean;
  problem: string | null;
}

/** The coordinator answered in a way retrying cannot change (a wrong token, a finished run). */
export class WorkerRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkerRefused';
  }
}

export class ControlConnection {
  /** Resolves when the connection closes; rejects when the coordinator refused it for good or the upgrade failed. */
  readonly ended: Promise<SessionEnd>;
  private readonly socket: WebSocket;
  private liveness: LivenessChannel | null = null;
  private lastHeardMs = Date.now();
  private welcomed = false;
  /** Why the connection failed (refused, a certificate the CA did not sign, …): said once it closes. */
  private failure: string | null = null;
  /** OCCAM_PACE_KBPS: when the paced link is free again. */
  private paceFreeMs = 0;

  constructor(private readonly options: ControlConnectionOptions) {
    const { url, token, tls, maxMessageBytes } = options;
    this.socket = new WebSocket(url, {
      headers: authorizationHeader(token),
      maxPayload: maxMessageBytes,
      ...tlsClientOptions(tls),
      handshakeTimeout: 10000,
    });
    this.socket.binaryType = 'nodebuffer';
    this.ended = new Promise((resolve, reject) => this.listen(resolve, reject));
  }

  get isOpen(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }

  send<K extends MessageKind>(kind: K, message: Messages[K], requestId = 0): void {
    const bytes = encodeEnvelope(kind, message, requestId);
    const pace = this.options.paceBytesPerSecond;
    if (!pace) return this.write(bytes);
    // Each message is delivered when a link of that rate would have finished carrying it, in order.
    this.paceFreeMs = Math.max(Date.now(), this.paceFreeMs) + (1000 * bytes.length) / pace;
    setTimeout(() => this.write(bytes), this.paceFreeMs - Date.now());
  }

  /** The welcome came: heartbeats now also flow from a thread the training cannot block. */
  startLiveness(key: string, heartbeatMs: number): void {
    this.liveness?.stop();
    if (!this.isOpen) return;
    const { url, token, tls, join, log } = this.options;
    this.liveness = new LivenessChannel({ url, token, tls, workerId: join.workerId, key, heartbeatMs, log });
  }

  /**
   * Resolves true once the coordinator has answered on the liveness connection, false after
   * `timeoutMs` (or with no liveness thread): a worker should not start blocking steps before.
   */
  async livenessUp(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.liveness && this.isOpen && Date.now() < deadline) {
      if (this.liveness.lastHeardMs > 0) return true;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return (this.liveness?.lastHeardMs ?? 0) > 0;
  }

  close(code: number, reason: string): void {
    this.socket.close(code, reason);
  }

  private write(bytes: Uint8Array): void {
    if (this.isOpen) this.socket.send(bytes);
  }

  private listen(resolve: (end: SessionEnd) => void, reject: (error: Error) => void): void {
    const { socket, options } = this;
    const { log } = options;
    const beat = setInterval(() => this.heartbeat(), options.timing()?.heartbeatMs ?? 1000);
    socket.on('open', () => this.send('join', options.join));
    socket.on('message', (data: Buffer) => {
      this.lastHeardMs = Date.now();
      let envelope: Envelope;
      try {
        envelope = decodeEnvelope(data);
      } catch (error) {
        log.error({ err: (error as Error).message }, 'bad message from the coordinator; closing');
        socket.close(1008, (error as ProtocolError).code ?? 'malformed');
        return;
      }
      if (envelope.kind === 'welcome') this.welcomed = true;
      options.onEnvelope(envelope);
    });
    socket.on('unexpected-response', (_request, response) => {
      const status = response.statusCode ?? 0;
      // A refused token or a finished run will not change by retrying: stop at once.
      if (status === 401)
        reject(new WorkerRefused(`the coordinator refused the cluster token (HTTP 401): check OCCAM_TOKEN or --token-file`));
      else if (status === 410) reject(new WorkerRefused(`the coordinator's run is finished (HTTP 410)`));
      else reject(new Error(`coordinator refused the connection: HTTP ${status} ${response.statusMessage ?? ''}`));
      socket.terminate();
    });
    socket.on('error', (error) => {
      this.failure = error.message;
      log.debug({ err: error.message }, 'control connection error');
    });
    socket.on('close', (code, reason) => {
      clearInterval(beat);
      this.liveness?.stop();
      this.liveness = null;
      resolve({ welcomed: this.welcomed, problem: this.closeProblem(code, reason.toString()) });
    });
  }

  /** A heartbeat from this thread, and the check that the coordinator still speaks. */
  private heartbeat(): void {
    const timing = this.options.timing();
    this.send('heartbeat', heartbeat(0, this.options.ringCounters()));
    // After a long step this runs before the messages that waited: the liveness thread's clock counts too.
    const silentMs = Date.now() - Math.max(this.lastHeardMs, this.liveness?.lastHeardMs ?? 0);
    if (timing && silentMs > timing.peerTimeoutMs) {
      this.options.log.warn({ silentMs }, 'coordinator silent; dropping the connection');
      this.socket.terminate();
    }
  }

  /** Logs how the connection ended and says why an attempt failed (null after a welcome, or when nothing is known). */
  private closeProblem(code: number, reason: string): string | null {
    const { log } = this.options;
    if (this.welcomed) {
      // After the coordinator's shutdown the close is the normal end of a run, not a warning.
      log[this.options.stopping() ? 'info' : 'warn']({ code, reason }, 'connection to the coordinator closed');
      return null;
    }
    if (this.failure) {
      log.warn({ err: this.failure }, 'could not connect to the coordinator');
      return this.failure;
    }
    if (code === 1006) return null;
    log.warn({ code, reason }, 'the coordinator refused this worker');
    return `refused: ${reason || `code ${code}`}`;
  }
}
