// A WebSocket client for a link that mostly receives (the ring's link from the previous rank). It
// reads every message into one reused, aligned buffer instead of a fresh Buffer per message, which
// is what `ws` does and what cost the ring a copy into new memory and the garbage collection of it.
// RFC 6455 as far as a ring link needs: one handshake, whole unmasked frames from the server (no
// fragments, no extensions), small masked frames to it; any other frame is an error naming it.
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';

/** The key a server echoes, hashed with this GUID, to show it speaks WebSocket (RFC 6455 §1.3). */
const HANDSHAKE_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const TEXT = 0x1;
const BINARY = 0x2;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

export interface ReceivingSocketOptions {
  headers: Record<string, string>;
  /** The largest message accepted, in bytes: the size of the one receive buffer. */
  maxPayloadBytes: number;
  handshakeTimeoutMs: number;
  /** For wss: the CA to verify the server with, and the certificate to present. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
}

/**
 * Events: 'message' (data, isBinary), where `data` is valid only during the call (the buffer is
 * reused for the next message); 'error' (error), then 'close' (code, reason) once, when the link
 * ends for any reason.
 */
export class ReceivingWebSocket extends EventEmitter {
  private readonly buffer: Buffer;
  /** Bytes of the frame header being read (at most 10: an unmasked header). */
  private readonly header = Buffer.alloc(10);
  private headerBytes = 0;
  private opcode = 0;
  private payloadBytes = -1;
  private received = 0;
  private closed = false;

  /** Opens a WebSocket to `url` (ws: or wss:); rejects with the reason the handshake failed. */
  static connect(url: string, options: ReceivingSocketOptions): Promise<ReceivingWebSocket> {
    const key = randomBytes(16).toString('base64');
    const expectedAccept = createHash('sha1')
      .update(key + HANDSHAKE_GUID)
      .digest('base64');
    const secure = url.startsWith('wss:');
    const request = (secure ? https : http).request(url.replace(/^ws/, 'http'), {
      headers: { ...options.headers, Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': key, 'Sec-WebSocket-Version': '13' },
      ...(secure ? options.tls : {}),
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        request.destroy();
        reject(new Error(`no WebSocket handshake within ${options.handshakeTimeoutMs} ms`));
      }, options.handshakeTimeoutMs);
      const fail = (message: string) => {
        clearTimeout(timer);
        reject(new Error(message));
      };
      request.on('error', (error) => fail(error.message));
      request.on('response', (response) => {
        response.resume();
        fail(`unexpected server response: ${response.statusCode}`);
      });
      request.on('upgrade', (response, socket, head) => {
        clearTimeout(timer);
        if (response.headers['sec-websocket-accept'] !== expectedAccept) {
          socket.destroy();
          return fail('the server answered the upgrade without a valid Sec-WebSocket-Accept');
        }
        if (response.headers['sec-websocket-extensions']) {
          socket.destroy();
          return fail('the server chose WebSocket extensions, which this link did not offer');
        }
        resolve(new ReceivingWebSocket(socket, head, options.maxPayloadBytes));
      });
      request.end();
    });
  }

  private constructor(
    private readonly socket: Socket,
    head: Buffer,
    maxPayloadBytes: number,
  ) {
    super();
    this.buffer = Buffer.allocUnsafeSlow(maxPayloadBytes); // its own ArrayBuffer: offset 0, aligned
    socket.setNoDelay(true);
    socket.on('error', (error) => this.end(1006, '', error));
    socket.on('close', () => this.end(1006, ''));
    // Reading starts with the first 'message' listener, so no message (not even one that came with
    // the handshake, in `head`) is read before someone listens.
    const startReading = (event: string | symbol) => {
      if (event !== 'message') return;
      this.off('newListener', startReading);
      if (head.length > 0) socket.unshift(head);
      socket.on('data', (chunk: Buffer) => this.read(chunk));
    };
    this.on('newListener', startReading);
  }

  /** Sends one message (masked, as a client must); meant for a link's few small messages. */
  send(data: Uint8Array | string): void {
    if (!this.closed) this.socket.write(maskedFrame(typeof data === 'string' ? TEXT : BINARY, Buffer.from(data)));
  }

  /** Ends the link at once, without a closing handshake. */
  terminate(): void {
    this.end(1006, '');
  }

  private read(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.closed) {
      if (this.payloadBytes < 0) at = this.readHeader(chunk, at);
      else {
        const take = Math.min(this.payloadBytes - this.received, chunk.length - at);
        chunk.copy(this.buffer, this.received, at, at + take);
        this.received += take;
        at += take;
      }
      if (this.payloadBytes >= 0 && this.received === this.payloadBytes) this.dispatch();
    }
  }

  /** Reads header bytes from `chunk` at `at`; once the header is whole, sets payloadBytes. Returns where it stopped. */
  private readHeader(chunk: Buffer, at: number): number {
    while (at < chunk.length && this.headerBytes < this.headerLength()) this.header[this.headerBytes++] = chunk[at++];
    if (this.headerBytes < this.headerLength()) return at;
    const [first, second] = this.header;
    const length = second & 0x7f;
    const bytes = length === 126 ? this.header.readUInt16BE(2) : length === 127 ? Number(this.header.readBigUInt64BE(2)) : length;
    this.opcode = first & 0x0f;
    this.headerBytes = 0;
    if ((first & 0x70) !== 0) this.fail('a frame with reserved bits set');
    else if ((first & 0x80) === 0 || this.opcode === 0) this.fail('a fragmented message');
    else if ((second & 0x80) !== 0) this.fail('a masked frame from the server');
    else if (![TEXT, BINARY, CLOSE, PING, PONG].includes(this.opcode)) this.fail(`a frame of unknown opcode ${this.opcode}`);
    else if (this.opcode >= CLOSE && bytes > 125) this.fail(`a control frame of ${bytes} bytes`);
    else if (bytes > this.buffer.length) this.fail(`a message of ${bytes} bytes, over the limit of ${this.buffer.length}`);
    else this.payloadBytes = bytes;
    return at;
  }

  /** 2 bytes, then 2 or 8 more for a 16- or 64-bit length: known once the second byte is in. */
  private headerLength(): number {
    if (this.headerBytes < 2) return 2;
    const length = this.header[1] & 0x7f;
    return length === 126 ? 4 : length === 127 ? 10 : 2;
  }

  private dispatch(): void {
    const payload = this.buffer.subarray(0, this.payloadBytes);
    this.payloadBytes = -1;
    this.received = 0;
    if (this.opcode === TEXT || this.opcode === BINARY) this.emit('message', payload, this.opcode === BINARY);
    else if (this.opcode === PING) this.socket.write(maskedFrame(PONG, Buffer.from(payload)));
    else if (this.opcode === CLOSE) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      const reason = payload.subarray(2).toString();
      this.socket.end(maskedFrame(CLOSE, Buffer.from(payload.subarray(0, 2))));
      this.end(code, reason);
    }
  }

  private fail(problem: string): void {
    this.end(1002, problem, new Error(`WebSocket protocol error: ${problem}`));
  }

  /** The one way the link ends: the socket is destroyed, 'error' (if any) and 'close' are told once. */
  private end(code: number, reason: string, error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.socket.writableEnded) this.socket.destroy();
    if (error && this.listenerCount('error') > 0) this.emit('error', error);
    this.emit('close', code, Buffer.from(reason));
  }
}

/** One whole client frame: FIN, the opcode, the mask bit and length, a random mask, the masked payload. */
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const lengthBytes = payload.length < 126 ? 0 : payload.length < 65536 ? 2 : 8;
  const frame = Buffer.alloc(2 + lengthBytes + 4 + payload.length);
  frame[0] = 0x80 | opcode;
  frame[1] = 0x80 | (lengthBytes === 0 ? payload.length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) frame.writeUInt16BE(payload.length, 2);
  if (lengthBytes === 8) frame.writeBigUInt64BE(BigInt(payload.length), 2);
  const mask = randomBytes(4);
  mask.copy(frame, 2 + lengthBytes);
  const start = 6 + lengthBytes;
  for (let i = 0; i < payload.length; i++) frame[start + i] = payload[i] ^ mask[i & 3];
  return frame;
}
