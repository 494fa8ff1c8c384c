// Bounds on the connections a server holds before they prove anything: a socket that has not sent
// a whole request (or upgrade) within a short deadline is dropped, at most so many such sockets
// are held (and fewer per address), and all sockets together stay below the process's file
// descriptor limit minus a reserve, so a flood never starves a checkpoint write of descriptors.
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../common/log.ts';

/** How long a connection may take to send a whole request or upgrade. */
export const HANDSHAKE_DEADLINE_MS = 5000;
/** Unproven connections held at once, in all and from one address. */
const MAX_PENDING = 128;
const MAX_PENDING_PER_ADDRESS = 16;
/** Descriptors kept free of sockets: files (checkpoints, logs, metrics) need them. */
const FD_RESERVE = 64;

export class ConnectionGuard {
  private readonly pending = new Map<Socket, { timer: NodeJS.Timeout; address: string }>();
  private readonly perAddress = new Map<string, number>();
  private refused = 0;
  private lastWarnMs = 0;

  /** Guards `server`; with TLS a connection counts from its finished TLS handshake (bounded by the server's handshakeTimeout). */
  constructor(
    server: Server,
    tls: boolean,
    private readonly name: string,
    private readonly log: Logger,
  ) {
    server.maxConnections = Math.max(16, openFileLimit() - FD_RESERVE);
    server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => this.admit(socket));
    // A whole request arrived: the socket proved it speaks HTTP (an upgrade is checked by the token next).
    server.on('request', (request) => this.proven(request.socket));
    server.on('upgrade', (request) => this.proven(request.socket));
  }

  private admit(socket: Socket): void {
    const address = socket.remoteAddress ?? '?';
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (this.pending.size >= MAX_PENDING || fromAddress >= MAX_PENDING_PER_ADDRESS) {
      socket.destroy();
      this.refused++;
      // Said at most every 10 s: a flood must not become a flood of log lines.
      if (Date.now() - this.lastWarnMs > 10000) {
        this.log.warn(
          { remote: address, pending: this.pending.size, refusedSoFar: this.refused },
          `${this.name}: too many unproven connections; refusing`,
        );
        this.lastWarnMs = Date.now();
      }
      return;
    }
    this.perAddress.set(address, fromAddress + 1);
    this.pending.set(socket, { timer: setTimeout(() => socket.destroy(), HANDSHAKE_DEADLINE_MS), address });
    socket.once('close', () => this.proven(socket));
  }

  private proven(socket: Socket): void {
    const entry = this.pending.get(socket);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.pending.delete(socket);
    const { address } = entry;
    const left = (this.perAddress.get(address) ?? 1) - 1;
    if (left > 0) this.perAddress.set(address, left);
    else this.perAddress.delete(address);
  }
}

/** This process's soft limit on open files (Linux /proc; 1024 where it cannot be read). */
export function openFileLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = Number(line?.split(/\s{2,}/)[1]);
    return Number.isFinite(soft) && soft > 0 ? soft : 1024;
  } catch {
    return 1024;
  }
}
