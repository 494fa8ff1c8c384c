// The one authenticated server every Occam port uses: HTTP (or HTTPS with --tls-cert), WebSocket
// upgrades only with the cluster token (and, with a CA, a certificate it signed), and plain GET
// routes for probes and status pages, which need no token and expose no weights or token.
// The coordinator's control port, each worker's ring port and `--linger` are all this class.
// Connections that prove nothing are bounded in number, per address and in time (connection-guard.ts).
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../common/log.ts';
import { requestHasToken } from './auth.ts';
import { ConnectionGuard, HANDSHAKE_DEADLINE_MS } from './connection-guard.ts';
import { peerCertificateProblem, tlsServerOptions, type TlsOptions } from './tls.ts';

/** A plain request's answer: JSON with a status; null falls through to `fallback` (or 404). */
export interface RouteAnswer {
  status: number;
  body: unknown;
}

export interface AuthenticatedServerOptions {
  /** Names the port in log lines ('control', 'ring'). */
  name: string;
  /** null: no WebSocket upgrades at all (a server that only answers probes). */
  token: string | null;
  log: Logger;
  tls?: TlsOptions;
  /** Largest WebSocket message accepted. */
  maxPayload?: number;
  /** JSON routes by path (GET and HEAD only). */
  routes?: (path: string) => RouteAnswer | null;
  /** Other plain requests (pages, metrics); return false to fall through to 404. */
  fallback?: (request: IncomingMessage, response: ServerResponse) => boolean;
  /** An authenticated WebSocket. */
  onConnection?: (socket: WebSocket, request: IncomingMessage) => void;
}

export class AuthenticatedServer {
  private readonly http: Server;
  private readonly sockets: WebSocketServer | null;

  constructor(private readonly options: AuthenticatedServerOptions) {
    const handler = (request: IncomingMessage, response: ServerResponse) => this.serve(request, response);
    const limits = { headersTimeout: HANDSHAKE_DEADLINE_MS, requestTimeout: 2 * HANDSHAKE_DEADLINE_MS };
    this.http = options.tls
      ? createHttpsServer({ ...tlsServerOptions(options.tls), ...limits, handshakeTimeout: HANDSHAKE_DEADLINE_MS }, handler)
      : createHttpServer(limits, handler);
    const { token, log, name } = options;
    new ConnectionGuard(this.http, options.tls !== undefined, name, log);
    if (token === null) {
      this.sockets = null;
      return;
    }
    this.sockets = new WebSocketServer({
      server: this.http,
      maxPayload: options.maxPayload,
      verifyClient: ({ req }, done) => {
        const certificate = peerCertificateProblem(req, options.tls);
        if (certificate) {
          log.warn({ remote: req.socket.remoteAddress, problem: certificate }, `${name} connection refused`);
          return done(false, 403, 'Forbidden');
        }
        if (requestHasToken(req, token)) return done(true);
        log.warn({ remote: req.socket.remoteAddress }, `${name} connection refused: missing or wrong cluster token`);
        done(false, 401, 'Unauthorized');
      },
    });
    this.sockets.on('connection', (socket, request) => options.onConnection?.(socket, request));
    this.sockets.on('error', (error) => log.error({ err: error.message }, `${name} server error`));
  }

  /** Starts listening; resolves with the port (0 picks a free one). */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => resolve((this.http.address() as AddressInfo).port));
    });
  }

  /** Drops every WebSocket and stops listening. */
  async close(): Promise<void> {
    const sockets = this.sockets;
    if (sockets) {
      for (const client of sockets.clients) client.terminate();
      await new Promise<void>((resolve) => sockets.close(() => resolve()));
    }
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  private serve(request: IncomingMessage, response: ServerResponse): void {
    const path = (request.url ?? '/').split('?')[0];
    const readOnly = request.method === 'GET' || request.method === 'HEAD';
    const answer = this.options.routes?.(path) ?? null;
    if (answer && !readOnly) {
      response.setHeader('allow', 'GET, HEAD');
      return sendJson(response, 405, { error: `${request.method} is not allowed on ${path} (GET only)` });
    }
    if (answer) return sendJson(response, answer.status, answer.body);
    if (this.options.fallback?.(request, response)) return;
    sendJson(response, 404, { error: 'not found' });
  }
}

/**
 * Sets the largest message `socket` accepts from now on. ws fixes one bound per server; the
 * coordinator narrows it per connection (a few KiB before a join, the model's state size once
 * ready), so a stranger's frame is refused at its header instead of buffered.
 */
export function setMessageLimit(socket: WebSocket, bytes: number): void {
  // ws keeps the bound on the connection's frame parser (8.x: Receiver#_maxPayload, read per frame).
  const receiver = (socket as unknown as { _receiver?: { _maxPayload: number } })._receiver;
  if (receiver) receiver._maxPayload = Math.min(bytes, 2 ** 31 - 1);
}

export function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}
