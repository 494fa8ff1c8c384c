// How the coordinator's membership tells a lost worker from a starting one, over real WebSockets:
// silence past peerTimeoutMs loses a worker whose liveness thread is up; a worker still starting
// (no liveness connection yet: it loads its data and model) has 4 × peerTimeoutMs.
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { Membership } from '../src/coordinator/membership.ts';
import { decodeEnvelope, encodeEnvelope } from '../src/wire/protocol.ts';
import type { Messages } from '../src/wire/messages.generated.ts';
import { quietLog, smallConfig } from './helpers/runs.ts';

const PEER_TIMEOUT_MS = 400;
const config = smallConfig({ peerTimeoutMs: PEER_TIMEOUT_MS, heartbeatMs: 50 });

const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** A coordinator's membership on a free port, checking liveness every heartbeat; resolves with it and when each worker left. */
async function coordinator(): Promise<{ url: string; lostAtMs: Map<string, number> }> {
  const lostAtMs = new Map<string, number>();
  const members = new Membership({
    config,
    maxMessageBytes: 2 ** 20,
    runId: 'liveness-test',
    log: quietLog,
    onLeave: (link) => lostAtMs.set(link.workerId, Date.now()),
    onUnsolicited: () => {},
    onPrepareFailed: () => {},
  });
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  server.on('connection', (socket, request) => members.accept(socket, request));
  await new Promise((resolve) => server.once('listening', resolve));
  const watchdog = setInterval(() => members.checkLiveness(), config.heartbeatMs);
  closers.push(() => {
    clearInterval(watchdog);
    members.close('test over', false);
    server.close();
  });
  const { port } = server.address() as { port: number };
  return { url: `ws://127.0.0.1:${port}`, lostAtMs };
}

/** Joins as `workerId` and resolves with the welcome's liveness key and when the join was sent; then says nothing. */
async function silentJoin(url: string, workerId: string): Promise<{ key: string; joinedMs: number }> {
  const socket = new WebSocket(url);
  closers.push(() => socket.terminate());
  await new Promise((resolve) => socket.once('open', resolve));
  const joinedMs = Date.now();
  socket.send(encodeEnvelope('join', { workerId, ringHost: '127.0.0.1', ringPort: 9 }));
  const welcome = await new Promise<Buffer>((resolve) => socket.once('message', resolve));
  return { key: (decodeEnvelope(welcome).message as Messages['welcome']).livenessKey, joinedMs };
}

async function until(done: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!done() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('a silent worker', () => {
  it('still starting (no liveness connection yet), is lost after 4 × peerTimeoutMs, not peerTimeoutMs', async () => {
    const { url, lostAtMs } = await coordinator();
    const { joinedMs } = await silentJoin(url, 'starting');
    await until(() => lostAtMs.has('starting'), 20 * PEER_TIMEOUT_MS);
    expect(lostAtMs.get('starting'), 'a silent starting worker is still declared lost').toBeDefined();
    expect((lostAtMs.get('starting') ?? 0) - joinedMs).toBeGreaterThan(4 * PEER_TIMEOUT_MS - 50);
  });

  it('once its liveness thread has connected, is lost after peerTimeoutMs of silence', async () => {
    const { url, lostAtMs } = await coordinator();
    const { key } = await silentJoin(url, 'started');
    const liveness = new WebSocket(url);
    closers.push(() => liveness.terminate());
    await new Promise((resolve) => liveness.once('open', resolve));
    liveness.send(encodeEnvelope('livenessHello', { workerId: 'started', key }));
    const attachedMs = Date.now();
    await until(() => lostAtMs.has('started'), 20 * PEER_TIMEOUT_MS);
    const lostAfterMs = (lostAtMs.get('started') ?? Number.POSITIVE_INFINITY) - attachedMs;
    expect(lostAfterMs, 'lost once peerTimeoutMs passed silent, well before the starting grace').toBeLessThan(3 * PEER_TIMEOUT_MS);
  });
});
