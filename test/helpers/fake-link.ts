// A WorkerLink over a fake socket, for tests that feed a coordinator's link frames directly:
// the socket records how it was closed and sends nothing anywhere.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { WorkerLink } from '../../src/coordinator/worker-link.ts';
import type { CoordinatorView } from '../../src/wire/validate.ts';
import type { Envelope } from '../../src/wire/protocol.ts';
import { quietLog } from './runs.ts';

/** Enough of a ws socket for a WorkerLink: records what it is told to do. */
export class FakeSocket extends EventEmitter {
  readyState: number = WebSocket.OPEN;
  closedWith: [number, string] | null = null;
  send(): void {}
  close(code: number, reason: string): void {
    this.closedWith = [code, reason];
    this.readyState = WebSocket.CLOSED;
    setImmediate(() => this.emit('close', code, Buffer.from(reason)));
  }
  terminate(): void {
    this.close(1006, '');
  }
}

/** A link to worker w0 over a FakeSocket, checking replies against `view`. */
export function fakeLink(
  view: CoordinatorView,
  options: { log?: Logger; onUnsolicited?: (envelope: Envelope) => void } = {},
): { socket: FakeSocket; link: WorkerLink } {
  const socket = new FakeSocket();
  const onUnsolicited = options.onUnsolicited ?? (() => {});
  const link = new WorkerLink(
    'w0',
    '127.0.0.1',
    7071,
    socket as unknown as WebSocket,
    options.log ?? quietLog,
    (_, e) => onUnsolicited(e),
    () => view,
  );
  return { socket, link };
}
