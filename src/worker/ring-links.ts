// The data-plane links of one worker: a WebSocket server its next ring neighbour connects to, and
// a client connection to its previous neighbour's server. Gradient chunks flow server → client
// (rank r sends on the socket that rank r+1 opened), because server frames are not masked and a
// `ws` client's frame masking, done in JavaScript, costs several times the throughput. The client
// is a ReceivingWebSocket, which reads every frame into one reused buffer (ws: a fresh one each).
// Links belong to one membership generation; forming a new ring closes the old links. Only the
// expected next rank of the current generation, with the cluster token (and, with a CA, a
// certificate it signed), gets a link; every other connection is refused with a reason.
import WebSocket from 'ws';
import { authorizationHeader, tokensEqual } from '../wire/auth.ts';
import type { Logger } from '../common/log.ts';
import {
  decodeRingHello,
  encodeRingHello,
  isRingAccepted,
  RING_ACCEPTED,
  type Messages,
  type Peer,
  type RingCounters,
} from '../wire/protocol.ts';
import { RING_HEADER_BYTES, RingAllReduce, RingError, type WireFormat } from '../wire/ring.ts';
import { ReceivingWebSocket } from '../wire/receiving-socket.ts';
import { AuthenticatedServer, type RouteAnswer } from '../wire/server.ts';
import { tlsClientOptions, type TlsOptions } from '../wire/tls.ts';

export interface RingLinkOptions {
  bindHost: string;
  port: number;
  token: string;
  log: Logger;
  chunkFloats: number;
  /** Until a run's config gives peerTimeoutMs (form()). */
  timeoutMs: number;
  tls?: TlsOptions;
  /** Whether the worker is ready (joined and data loaded), for the /readyz probe. */
  ready?: () => boolean;
  /** A ring wait past timeoutMs, for the coordinator to judge (the op keeps waiting). */
  onStall?: (stall: Messages['ringStall']) => void;
  /** Fault injection (OCCAM_CUT_LINK): the link to this peer is a black hole once `afterBytes` went to it. */
  cut?: { workerId: string; afterBytes: number };
}

/** A neighbour this rank could not link with: `side` says which, so the coordinator can name the pair. */
export class RingLinkError extends RingError {
  constructor(
    readonly side: 'previous' | 'next',
    message: string,
  ) {
    super(message);
  }
}

/** Close code asking the connecting neighbour to retry: this worker has not reached its generation yet. */
const RETRY_LATER = 4001;

export class RingLinks {
  private readonly server: AuthenticatedServer;
  private generation = -1;
  /** The current generation's bound on every ring wait (the run's peerTimeoutMs). */
  private timeoutMs: number;
  private rank = 0;
  private world = 1;
  private toNext: WebSocket | null = null;
  private fromPrevious: ReceivingWebSocket | null = null;
  private ring: RingAllReduce | null = null;
  private waitingForNext: ((socket: WebSocket) => void) | null = null;
  /** Worker ids of this rank and of the next one in the current generation (hellos name them). */
  private selfId = '';
  private nextId = '';
  /** The current generation's key: hellos without it are refused. */
  private ringKey = '';
  /** This generation's bytes to the next rank and from the previous one (frames, headers included). */
  private sentToNextBytes = 0;
  private receivedFromPreviousBytes = 0;
  /** OCCAM_CUT_LINK: frames to the next rank vanish once this many bytes went to it (never, unless it is the cut peer). */
  private cutAfterBytes = Number.POSITIVE_INFINITY;

  constructor(private readonly options: RingLinkOptions) {
    this.timeoutMs = options.timeoutMs;
    // Plain requests (not WebSocket upgrades) are health probes: Kubernetes' kubelet sends no
    // token, and the answers say nothing a peer could use.
    this.server = new AuthenticatedServer({
      name: 'ring',
      token: options.token,
      log: options.log,
      tls: options.tls,
      maxPayload: this.maxFrameBytes,
      routes: (path) => this.probe(path),
      onConnection: (socket) => this.onIncoming(socket),
    });
  }

  private get maxFrameBytes(): number {
    return RING_HEADER_BYTES + 4 * this.options.chunkFloats + 1024;
  }

  /** Starts the ring server; resolves with the port it listens on. */
  listen(): Promise<number> {
    return this.server.listen(this.options.port, this.options.bindHost);
  }

  /**
   * Connects this worker into the ring of `generation` and returns the all-reduce that runs over
   * it. Rejects with a RingError when a neighbour cannot be reached within the timeout.
   */
  /** Links this rank into the ring of `generation`; every wait (connect, hello, handshake, a frame) is bounded by timeoutMs. */
  async form(
    { generation, rank, members, ringKey }: Messages['formRing'],
    wireFormat: WireFormat = 'f32',
    timeoutMs = this.options.timeoutMs,
  ): Promise<RingAllReduce> {
    this.closeLinks(new RingError(`ring re-formed for generation ${generation}`));
    this.timeoutMs = timeoutMs;
    this.generation = generation;
    this.ringKey = ringKey;
    this.rank = rank;
    this.world = members.length;
    this.selfId = members[rank].workerId;
    this.nextId = members[(rank + 1) % this.world].workerId;
    this.sentToNextBytes = 0;
    this.receivedFromPreviousBytes = 0;
    // Decided once per generation, so a frame pays one comparison for the fault injection.
    const cut = this.options.cut;
    this.cutAfterBytes = cut?.workerId === this.nextId ? cut.afterBytes : Number.POSITIVE_INFINITY;
    if (this.world === 1) {
      this.ring = new RingAllReduce(0, 1, () => {}, { chunkFloats: this.options.chunkFloats, timeoutMs, wireFormat });
      return this.ring;
    }
    const previous = members[(rank - 1 + this.world) % this.world];
    const [toNext, fromPrevious] = await Promise.all([this.awaitNext(generation), this.connectPrevious(generation, previous)]);
    if (generation !== this.generation) throw new RingError(`ring generation ${generation} was superseded`);
    this.toNext = toNext;
    this.fromPrevious = fromPrevious;
    const report = this.options.onStall;
    const onStall = report && ((waitedMs: number) => report({ ...this.countersOf(generation), waitedMs }));
    const ringOptions = { chunkFloats: this.options.chunkFloats, timeoutMs, wireFormat, onStall };
    const ring = new RingAllReduce(rank, this.world, (parts, written) => this.sendToNext(parts, written), ringOptions);
    this.ring = ring;
    // A frame travels as two messages, its header and then its payload, so neither side copies
    // to join them (`ws` concatenates the fragments of one message).
    // Each message lies in the link's one receive buffer until the next: the header is copied.
    let header: Buffer | null = null;
    fromPrevious.on('message', (data: Buffer, isBinary: boolean) => {
      this.receivedFromPreviousBytes += data.length;
      if (!isBinary) return ring.abort(new RingError('text frame on the ring link'));
      if (header) ring.receiveParts(header, data);
      else if (data.length !== RING_HEADER_BYTES) ring.abort(new RingError(`malformed ring frame header of ${data.length} bytes`));
      header = header ? null : Buffer.from(data);
    });
    fromPrevious.on('error', (error: Error) => ring.abort(new RingError(`ring link to the previous rank failed: ${error.message}`)));
    const lost = (which: string) => () => ring.abort(new RingError(`ring link to the ${which} rank closed`));
    fromPrevious.on('close', lost('previous'));
    toNext.on('close', lost('next'));
    return ring;
  }

  /** This generation's link byte counts; null outside a ring of two or more. */
  counters(): RingCounters | null {
    return this.ring && this.world > 1 ? this.countersOf(this.generation) : null;
  }

  private countersOf(generation: number): RingCounters {
    return { generation, sentToNextBytes: this.sentToNextBytes, receivedFromPreviousBytes: this.receivedFromPreviousBytes };
  }

  /** Fails any all-reduce in progress and closes the links (the ring is about to re-form or stop). */
  closeLinks(reason: Error): void {
    this.ring?.abort(reason);
    this.ring = null;
    for (const socket of [this.toNext, this.fromPrevious]) socket?.terminate();
    this.toNext = null;
    this.fromPrevious = null;
  }

  async close(): Promise<void> {
    this.closeLinks(new RingError('worker stopping'));
    await this.server.close();
  }

  /** /healthz: the process serves; /readyz: it has joined the coordinator and loaded its data. */
  private probe(path: string): RouteAnswer | null {
    const ready = this.options.ready?.() ?? true;
    if (path === '/healthz') return { status: 200, body: { ok: true } };
    if (path === '/readyz') return { status: ready ? 200 : 503, body: { ready } };
    return null;
  }

  /** One ring frame: its header and its payload, each a WebSocket message; `written` once both are out. */
  private sendToNext(parts: Buffer[], written: () => void): void {
    const socket = this.toNext;
    if (!socket || socket.readyState !== WebSocket.OPEN) throw new RingError('ring link to the next rank is not open');
    const blackHole = this.sentToNextBytes >= this.cutAfterBytes;
    for (const part of parts) this.sentToNextBytes += part.length;
    if (blackHole) return written();
    // A failed write closes the socket, which fails the ring; the parts are free either way.
    parts.forEach((part, i) => socket.send(part, { binary: true }, i === parts.length - 1 ? written : undefined));
  }

  /** A neighbour connected to our server: it must say hello for our generation as our next rank. */
  private onIncoming(socket: WebSocket): void {
    socket.on('error', (error) => this.options.log.debug({ err: error }, 'incoming ring link error'));
    const helloTimer = setTimeout(() => socket.close(1008, 'no hello'), this.timeoutMs);
    socket.once('message', (data: Buffer) => {
      clearTimeout(helloTimer);
      const hello = decodeRingHello(data);
      if (!hello) {
        this.options.log.warn('ring connection refused: malformed hello');
        socket.close(1008, 'malformed hello');
        return;
      }
      const expectedRank = (this.rank + 1) % this.world;
      const current = hello.generation === this.generation;
      if (current && !tokensEqual(hello.key, this.ringKey)) {
        // The coordinator gave this generation's key to its members only: this is not one of them.
        this.options.log.warn({ rank: hello.rank, workerId: hello.workerId }, 'ring connection refused: wrong ring key');
        socket.close(1008, `wrong ring key for generation ${this.generation}`);
        return;
      }
      if (current && this.toNext && !this.waitingForNext) {
        // The next rank is linked already: a second connection claiming its place is refused.
        this.options.log.warn({ rank: hello.rank, workerId: hello.workerId }, 'ring connection refused: the next rank is already linked');
        socket.close(1008, `rank ${expectedRank} of generation ${this.generation} is already linked`);
        return;
      }
      if (hello.generation > this.generation || !this.waitingForNext) {
        socket.close(RETRY_LATER, 'not ready for this generation');
        return;
      }
      if (!current || hello.rank !== expectedRank || hello.workerId !== this.nextId) {
        this.options.log.warn({ hello }, 'ring connection refused: not the next rank of this generation');
        socket.close(1008, `expected rank ${expectedRank} of generation ${this.generation}`);
        return;
      }
      socket.send(RING_ACCEPTED);
      const accept = this.waitingForNext;
      this.waitingForNext = null;
      accept(socket);
    });
  }

  private awaitNext(generation: number): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.waitingForNext === accept) this.waitingForNext = null;
        reject(new RingLinkError('next', `the next rank did not connect within ${this.timeoutMs} ms (generation ${generation})`));
      }, this.timeoutMs);
      const accept = (socket: WebSocket) => {
        clearTimeout(timer);
        resolve(socket);
      };
      this.waitingForNext = accept;
    });
  }

  /** Connects to the previous rank's server, retrying while it is not up or not yet at our generation. */
  private async connectPrevious(generation: number, previous: Peer): Promise<ReceivingWebSocket> {
    const deadline = Date.now() + this.timeoutMs;
    let lastError = 'no attempt';
    while (Date.now() < deadline && generation === this.generation) {
      try {
        return await this.tryConnect(generation, previous);
      } catch (error) {
        lastError = (error as Error).message;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    throw new RingLinkError(
      'previous',
      `cannot reach the previous rank ${previous.workerId} at ${previous.host}:${previous.port} within ${this.timeoutMs} ms: ${lastError}`,
    );
  }

  private async tryConnect(generation: number, previous: Peer): Promise<ReceivingWebSocket> {
    if (this.options.cut?.workerId === previous.workerId && this.options.cut.afterBytes === 0)
      return new Promise((_, reject) => setTimeout(() => reject(new Error('timed out (link cut by fault injection)')), 1000));
    const scheme = this.options.tls ? 'wss' : 'ws';
    const host = previous.host.includes(':') ? `[${previous.host}]` : previous.host; // IPv6 literal
    const socket = await ReceivingWebSocket.connect(`${scheme}://${host}:${previous.port}/ring`, {
      headers: authorizationHeader(this.options.token),
      maxPayloadBytes: this.maxFrameBytes,
      tls: tlsClientOptions(this.options.tls),
      handshakeTimeoutMs: this.timeoutMs,
    });
    return new Promise((resolve, reject) => {
      const fail = (message: string) => {
        socket.removeAllListeners();
        socket.terminate();
        reject(new Error(message));
      };
      socket.once('error', (error: Error) => fail(error.message));
      socket.once('close', (code: number, reason: Buffer) => fail(`closed (${code} ${reason.toString()})`));
      socket.once('message', (data: Buffer) => {
        if (!isRingAccepted(data)) return fail('the previous rank did not accept the link');
        socket.removeAllListeners();
        socket.on('error', (error: Error) => this.options.log.debug({ err: error }, 'ring link error'));
        resolve(socket);
      });
      socket.send(encodeRingHello({ generation, rank: this.rank, workerId: this.selfId, key: this.ringKey }));
    });
  }
}
