// A hostile or confused peer, from outside a live cluster: open a WebSocket (with or without the
// token, with any certificate), send frames, and report how the server answered — an HTTP
// refusal of the upgrade, a close with a code and reason, a TLS error, or nothing.
import WebSocket from 'ws';
import { authorizationHeader } from '../../src/wire/auth.ts';

export type ProbeResult =
  | { kind: 'refused'; status: number }
  | { kind: 'closed'; code: number; reason: string; sent: number }
  | { kind: 'error'; message: string }
  | { kind: 'open'; sent: number };

export interface ProbeOptions {
  token?: string;
  frames?: Uint8Array[];
  /** How long to wait for the server to close after the frames went out. */
  waitMs?: number;
  /** Close from this side after the frames (a fuzz session that must not linger). */
  closeAfter?: boolean;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized?: boolean };
}

export function probe(url: string, options: ProbeOptions = {}): Promise<ProbeResult> {
  const { token, frames = [], waitMs = 2000, closeAfter = false, tls = {} } = options;
  return new Promise((resolve) => {
    let sent = 0;
    let settled = false;
    let timer: NodeJS.Timeout | null = null;
    const finish = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      socket.removeAllListeners();
      socket.on('error', () => {});
      if (socket.readyState !== WebSocket.CLOSED) socket.terminate();
      resolve(result);
    };
    const socket = new WebSocket(url, { headers: token ? authorizationHeader(token) : {}, handshakeTimeout: 10000, ...tls });
    socket.on('unexpected-response', (_request, response) => finish({ kind: 'refused', status: response.statusCode ?? 0 }));
    socket.on('error', (error) => finish({ kind: 'error', message: error.message }));
    socket.on('close', (code, reason) => finish({ kind: 'closed', code, reason: reason.toString(), sent }));
    socket.on('open', () => {
      for (const frame of frames) {
        if (socket.readyState !== WebSocket.OPEN) break;
        socket.send(frame, { binary: true });
        sent++;
      }
      if (closeAfter && socket.readyState === WebSocket.OPEN) socket.close(1000, 'probe done');
      timer = setTimeout(() => finish({ kind: 'open', sent }), waitMs);
    });
  });
}
