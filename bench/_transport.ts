// Transport baselines for the all-reduce benchmark, one process per side, driven over IPC:
// raw TCP throughput, a `ws` stream in the masked (client → server) and unmasked
// (server → client) directions, and a star all-reduce through a central process.
import { createServer, connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';

export type TransportCommand =
  | { type: 'tcp-sink' }
  | { type: 'tcp-send'; port: number; bytes: number }
  | { type: 'tcp-duplex-listen'; bytes: number }
  | { type: 'tcp-duplex-connect'; port: number; bytes: number }
  | { type: 'ws-server'; bytes: number; serverSends: boolean }
  | { type: 'ws-client'; port: number; bytes: number; serverSends: boolean }
  | { type: 'star-center'; workers: number; floats: number }
  | { type: 'star-worker'; port: number; floats: number };

export type TransportReport = { type: 'listening'; port: number } | { type: 'done'; ms: number } | { type: 'error'; message: string };

const CHUNK = 1 << 20;
const send = (report: TransportReport) => process.send?.(report);

process.on('message', (command: TransportCommand) => {
  run(command).catch((error: Error) => send({ type: 'error', message: error.message }));
});

async function run(command: TransportCommand): Promise<void> {
  switch (command.type) {
    case 'tcp-sink': {
      const server = createServer((socket) => socket.on('data', () => {}).on('end', () => socket.end('ok')));
      server.listen(0, '127.0.0.1', () => send({ type: 'listening', port: (server.address() as AddressInfo).port }));
      return;
    }
    case 'tcp-send': {
      const socket: Socket = connect(command.port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      const chunk = Buffer.alloc(CHUNK, 1);
      const t0 = performance.now();
      for (let sent = 0; sent < command.bytes; sent += CHUNK) {
        if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
      }
      socket.end();
      await new Promise((resolve) => socket.once('data', resolve)); // the sink's "ok": everything arrived
      send({ type: 'done', ms: performance.now() - t0 });
      socket.destroy();
      return;
    }
    case 'tcp-duplex-listen': {
      // Both ends send and receive at once, as every ring member does.
      const server = createServer((socket) => void duplex(socket, command.bytes));
      server.listen(0, '127.0.0.1', () => send({ type: 'listening', port: (server.address() as AddressInfo).port }));
      return;
    }
    case 'tcp-duplex-connect': {
      const socket = connect(command.port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      await duplex(socket, command.bytes);
      socket.destroy();
      return;
    }
    case 'ws-server': {
      const server = new WebSocketServer({ port: 0, host: '127.0.0.1', maxPayload: 2 * CHUNK });
      server.on('listening', () => send({ type: 'listening', port: (server.address() as AddressInfo).port }));
      server.on('connection', (socket) => streamOrSink(socket, command.bytes, command.serverSends));
      return;
    }
    case 'ws-client': {
      const socket = new WebSocket(`ws://127.0.0.1:${command.port}`, { maxPayload: 2 * CHUNK });
      await new Promise((resolve) => socket.once('open', resolve));
      const t0 = performance.now();
      await streamOrSink(socket, command.bytes, !command.serverSends);
      send({ type: 'done', ms: performance.now() - t0 });
      socket.close();
      return;
    }
    case 'star-center': {
      // The via-coordinator baseline: every worker sends its whole buffer, the center sums and sends the sum back.
      const server = new WebSocketServer({ port: 0, host: '127.0.0.1', maxPayload: 8 * command.floats + 1024 });
      const sockets: WebSocket[] = [];
      let sum = new Float32Array(command.floats);
      let received = 0;
      server.on('listening', () => send({ type: 'listening', port: (server.address() as AddressInfo).port }));
      server.on('connection', (socket) => {
        sockets.push(socket);
        socket.on('message', (data: Buffer) => {
          const values = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
          for (let i = 0; i < values.length; i++) sum[i] += values[i];
          if (++received === command.workers) {
            for (const s of sockets) s.send(sum);
            received = 0;
            sum = new Float32Array(command.floats);
          }
        });
      });
      return;
    }
    case 'star-worker': {
      const socket = new WebSocket(`ws://127.0.0.1:${command.port}`, { maxPayload: 8 * command.floats + 1024 });
      await new Promise((resolve) => socket.once('open', resolve));
      const values = new Float32Array(command.floats).fill(1);
      const t0 = performance.now();
      socket.send(values);
      await new Promise((resolve) => socket.once('message', resolve));
      send({ type: 'done', ms: performance.now() - t0 });
      socket.close();
      return;
    }
  }
}

/** Sends `bytes` while receiving as many; reports the time until both directions are done. */
async function duplex(socket: Socket, bytes: number): Promise<void> {
  const t0 = performance.now();
  const received = new Promise<void>((resolve) => {
    let count = 0;
    socket.on('data', (data: Buffer) => {
      count += data.length;
      if (count >= bytes) resolve();
    });
  });
  const chunk = Buffer.alloc(CHUNK, 1);
  for (let sent = 0; sent < bytes; sent += CHUNK) {
    if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
  }
  await received;
  send({ type: 'done', ms: performance.now() - t0 });
}

/** Sends `bytes` in 1 MiB frames and waits for an ack, or counts them in and acks. */
async function streamOrSink(socket: WebSocket, bytes: number, sending: boolean): Promise<void> {
  if (sending) {
    const chunk = Buffer.alloc(CHUNK, 1);
    for (let sent = 0; sent < bytes; sent += CHUNK) {
      socket.send(chunk);
      if (socket.bufferedAmount > 8 * CHUNK) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    await new Promise((resolve) => socket.once('message', resolve));
    return;
  }
  await new Promise<void>((resolve) => {
    let received = 0;
    socket.on('message', (data: Buffer) => {
      received += data.length;
      if (received >= bytes) {
        socket.send('ok');
        resolve();
      }
    });
  });
}
