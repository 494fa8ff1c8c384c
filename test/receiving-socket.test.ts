import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { ReceivingWebSocket } from '../src/wire/receiving-socket.ts';

const OPTIONS = { headers: {}, maxPayloadBytes: 1 << 20, handshakeTimeoutMs: 2000 };
const servers: { close(): void }[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

/** Messages and the end of a link, as a user of it sees them. */
function record(socket: ReceivingWebSocket) {
  const messages: { text: string; binary: boolean }[] = [];
  const ended = new Promise<{ code: number; reason: string; error?: string }>((resolve) => {
    let error: string | undefined;
    socket.on('error', (e: Error) => (error = e.message));
    socket.on('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString(), error }));
  });
  socket.on('message', (data: Buffer, binary: boolean) => messages.push({ text: data.toString(), binary }));
  return { messages, ended };
}

/** A server that completes the handshake by hand and then writes `bytes` raw, in chunks of `chunkBytes`. */
async function rawServer(bytes: Buffer, chunkBytes = bytes.length, accept?: string): Promise<string> {
  const server = http.createServer();
  server.on('upgrade', (request, socket: Socket) => {
    const key = request.headers['sec-websocket-key'] ?? '';
    const digest = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept ?? digest}\r\n\r\n`,
    );
    for (let at = 0; at < bytes.length; at += chunkBytes) socket.write(bytes.subarray(at, at + chunkBytes));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

/** An unmasked server frame. */
function frame(first: number, payload: Buffer): Buffer {
  const length = payload.length < 126 ? [payload.length] : [126, payload.length >> 8, payload.length & 0xff];
  return Buffer.concat([Buffer.from([first, ...length]), payload]);
}

describe('ReceivingWebSocket: the ring link’s client, which reads every message into one reused buffer', () => {
  it('talks to a ws server: its messages arrive whole and in order, it answers pings, and a close says its code and reason', async () => {
    const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    servers.push(server);
    await new Promise((resolve) => server.once('listening', resolve));
    const pongs: string[] = [];
    server.on('connection', (peer) => {
      peer.on('pong', (data) => pongs.push(data.toString()));
      peer.on('message', (data, binary) => {
        peer.send(Buffer.from(`echo ${data.toString()}`), { binary });
        peer.send(Buffer.alloc(200_000, 7));
        peer.ping('are you there');
        setTimeout(() => peer.close(4001, 'not ready'), 50);
      });
    });
    const socket = await ReceivingWebSocket.connect(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`, OPTIONS);
    const lengths: number[] = [];
    socket.on('message', (data: Buffer) => lengths.push(data.length));
    const { messages, ended } = record(socket);
    socket.send('hello');
    expect(await ended).toEqual({ code: 4001, reason: 'not ready', error: undefined });
    expect(messages[0]).toEqual({ text: 'echo hello', binary: false });
    expect(lengths).toEqual([10, 200_000]);
    expect(pongs).toEqual(['are you there']);
  });

  it('reads frames split anywhere across socket chunks (a byte at a time), the 16-bit length too', async () => {
    const long = Array.from({ length: 300 }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
    const bytes = Buffer.concat([frame(0x82, Buffer.from('first')), frame(0x82, Buffer.from(long)), frame(0x81, Buffer.from(''))]);
    const socket = await ReceivingWebSocket.connect(await rawServer(bytes, 1), OPTIONS);
    const { messages } = record(socket);
    await expect.poll(() => messages.length).toBe(3);
    expect(messages).toEqual([
      { text: 'first', binary: true },
      { text: long, binary: true },
      { text: '', binary: false },
    ]);
    socket.terminate();
  });

  it.each([
    ['reserved bits (an extension it did not offer)', frame(0xc2, Buffer.from('x')), /reserved bits/],
    ['a fragment', frame(0x02, Buffer.from('x')), /fragmented message/],
    ['a masked frame', Buffer.from([0x82, 0x81, 1, 2, 3, 4, 5]), /masked frame from the server/],
    ['an unknown opcode', frame(0x83, Buffer.from('x')), /unknown opcode 3/],
    ['a control frame over 125 bytes', frame(0x89, Buffer.alloc(126)), /control frame of 126 bytes/],
    ['a message over the limit', Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 0x20, 0, 0]), /2097152 bytes, over the limit of 1048576/],
  ])('a server frame with %s ends the link with one error naming it', async (_, bytes, problem) => {
    const socket = await ReceivingWebSocket.connect(await rawServer(Buffer.concat([frame(0x82, Buffer.from('ok')), bytes])), OPTIONS);
    const { messages, ended } = record(socket);
    const end = await ended;
    expect(end.code).toBe(1002);
    expect(end.error).toMatch(problem);
    expect(messages).toEqual([{ text: 'ok', binary: true }]);
  });

  it('refuses a server whose handshake answer is not for its key, and a plain HTTP answer', async () => {
    await expect(ReceivingWebSocket.connect(await rawServer(Buffer.alloc(0), 1, 'forged'), OPTIONS)).rejects.toThrow(
      /without a valid Sec-WebSocket-Accept/,
    );
    const plain = http.createServer((_, response) => response.writeHead(401).end());
    servers.push(plain);
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    const url = `ws://127.0.0.1:${(plain.address() as AddressInfo).port}/`;
    await expect(ReceivingWebSocket.connect(url, OPTIONS)).rejects.toThrow(/unexpected server response: 401/);
  });
});
