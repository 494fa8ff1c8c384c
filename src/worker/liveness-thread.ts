// The body of a worker's liveness thread (liveness.ts starts and ends it): a second connection to the coordinator that only
// carries heartbeats, on an event loop no training step can block. Each heartbeat says how long
// the training thread has been busy (from the tick it stores in shared memory), and every
// heartbeat from the coordinator is stamped in shared memory for the training thread to read.
import { workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { authorizationHeader } from '../wire/auth.ts';
import { decodeEnvelope, encodeEnvelope, heartbeat } from '../wire/protocol.ts';
import { tlsClientOptions } from '../wire/tls.ts';
import { BUSY_AFTER_MS, LIVENESS_HEARD, TRAINING_TICK, type LivenessThreadData } from './liveness.ts';

const data = workerData as LivenessThreadData;
const clock = new Float64Array(data.clock);
let socket: WebSocket | null = null;

connect();
setInterval(() => {
  if (socket?.readyState !== WebSocket.OPEN) return;
  const busyMs = Math.max(0, Date.now() - clock[TRAINING_TICK] - BUSY_AFTER_MS);
  socket.send(encodeEnvelope('heartbeat', heartbeat(busyMs)));
}, data.heartbeatMs);

/** Connects, says who it is, and reconnects after a second whenever the connection drops. */
function connect(): void {
  const ws = new WebSocket(data.url, {
    headers: authorizationHeader(data.token),
    maxPayload: 64 * 1024,
    ...tlsClientOptions(data.tls),
    handshakeTimeout: data.heartbeatMs * 4,
  });
  socket = ws;
  ws.on('open', () => ws.send(encodeEnvelope('livenessHello', { workerId: data.workerId, key: data.key })));
  ws.on('message', (bytes: Buffer) => {
    try {
      if (decodeEnvelope(bytes).kind === 'heartbeat') clock[LIVENESS_HEARD] = Date.now();
    } catch {
      ws.terminate();
    }
  });
  // The training thread logs what matters (the control connection's fate); this one only retries.
  ws.on('error', () => {});
  ws.on('close', () => setTimeout(connect, 1000));
}
