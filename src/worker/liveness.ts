// A worker's liveness, kept off its training thread: a worker thread (liveness-thread.ts) holds a
// second connection to the coordinator and exchanges heartbeats on it, so a synchronous step
// longer than peerTimeoutMs, or a state upload on a slow link, never reads as a dead worker.
// The two threads share two clocks: the training thread's last tick, the coordinator's last word.
import type { Worker as Thread } from 'node:worker_threads';
import type { Logger } from '../common/log.ts';
import type { TlsOptions } from '../wire/tls.ts';
import { startThread } from './thread.ts';

/** Slots of the shared clock (ms since the epoch). */
export const TRAINING_TICK = 0;
export const LIVENESS_HEARD = 1;
/** How often the training thread ticks; it counts as busy once a tick is this late. */
export const BUSY_AFTER_MS = 250;

export interface LivenessThreadData {
  url: string;
  token: string;
  tls?: TlsOptions;
  workerId: string;
  key: string;
  heartbeatMs: number;
  clock: SharedArrayBuffer;
}

export class LivenessChannel {
  private readonly thread: Thread;
  private readonly clock: Float64Array;
  private readonly ticker: NodeJS.Timeout;

  /** Starts the thread; it connects (and reconnects) until stop(). */
  constructor(options: Omit<LivenessThreadData, 'clock'> & { log: Logger }) {
    const clock = new SharedArrayBuffer(2 * Float64Array.BYTES_PER_ELEMENT);
    this.clock = new Float64Array(clock);
    this.clock[TRAINING_TICK] = Date.now();
    this.clock[LIVENESS_HEARD] = 0;
    const { log: _log, ...rest } = options;
    const data: LivenessThreadData = { ...rest, clock };
    this.thread = startThread('liveness-thread.ts', data);
    this.thread.unref();
    // The thread only ever retries its connection; should it die, the control connection's heartbeats remain.
    this.thread.on('error', (error) => options.log.warn({ err: error.message }, 'liveness thread failed'));
    this.ticker = setInterval(() => {
      this.clock[TRAINING_TICK] = Date.now();
    }, BUSY_AFTER_MS / 2);
    this.ticker.unref();
  }

  /** When the coordinator was last heard on the liveness connection (0: not yet). */
  get lastHeardMs(): number {
    return this.clock[LIVENESS_HEARD];
  }

  stop(): void {
    clearInterval(this.ticker);
    void this.thread.terminate();
  }
}
