// The training thread's half of the ring thread (ring-thread.ts): the same surface as RingLinks
// (listen, form, counters, closeLinks, close), with every socket, frame and float add on the other
// thread. A buffer in shared memory (the step loop's) is summed where it lies; any other is copied
// into one SharedArrayBuffer, at its placement's offset (a step's buckets are disjoint there), and
// the sum copied back. A step's buckets queue on the ring thread in call order, as on RingAllReduce.
import type { Worker as Thread } from 'node:worker_threads';
import type { Collective, CollectiveStats, Placement } from '../common/collective.ts';
import type { Messages, RingCounters } from '../wire/protocol.ts';
import { RingError, type WireFormat } from '../wire/ring.ts';
import { RingLinkError, type RingLinkOptions } from './ring-links.ts';
import { startThread } from './thread.ts';

/** Slots of the shared link counters the ring thread keeps current. */
export const COUNTERS = { present: 0, generation: 1, sent: 2, received: 3 } as const;

/** What the thread is started with: RingLinks' options that cross threads, and the shared slots. */
export interface RingThreadData {
  links: Omit<RingLinkOptions, 'log' | 'ready' | 'onStall'>;
  logLevel: string;
  logBindings: Record<string, unknown>;
  /** Int32 slot 0: 1 when the worker is ready (the /readyz probe). */
  ready: SharedArrayBuffer;
  /** Float64 slots of COUNTERS. */
  counters: SharedArrayBuffer;
}

export type ToRingThread =
  | { type: 'listen'; id: number }
  | { type: 'form'; id: number; form: Messages['formRing']; wireFormat: WireFormat; timeoutMs: number }
  | {
      type: 'allReduce';
      id: number;
      generation: number;
      /** The values: `length` floats from `byteOffset`. */
      shared: SharedArrayBuffer;
      byteOffset: number;
      length: number;
      placement: Placement;
    }
  | { type: 'closeLinks'; id: number; reason: string }
  | { type: 'close'; id: number };

export type FromRingThread =
  | { type: 'listening'; id: number; port: number }
  | { type: 'formed'; id: number }
  | { type: 'reduced'; id: number; stats: CollectiveStats }
  | { type: 'done'; id: number }
  | { type: 'failed'; id: number; message: string; side?: 'previous' | 'next' }
  | { type: 'stall'; stall: Messages['ringStall'] };

type Reply = Exclude<FromRingThread, { type: 'stall' }>;

export class ThreadedRingLinks {
  private readonly thread: Thread;
  private readonly ready: Int32Array;
  private readonly counterSlots: Float64Array;
  private readonly pending = new Map<number, { resolve(reply: Reply): void; reject(error: Error): void }>();
  private nextId = 1;
  private failure: Error | null = null;
  /** The generation the last form() was for: all-reduces of older ones fail. */
  private generation = -1;
  /** Where all-reduced values cross to the ring thread; replaced (never shrunk) when a vector is longer. */
  private shared = new SharedArrayBuffer(0);

  constructor(private readonly options: RingLinkOptions) {
    const { log, ready: _ready, onStall: _onStall, ...links } = options;
    const ready = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
    const counters = new SharedArrayBuffer(4 * Float64Array.BYTES_PER_ELEMENT);
    this.ready = new Int32Array(ready);
    this.counterSlots = new Float64Array(counters);
    const data: RingThreadData = { links, logLevel: log.level, logBindings: log.bindings(), ready, counters };
    this.thread = startThread('ring-thread.ts', data);
    this.thread.unref(); // the worker's own lifecycle decides when the process ends, and close() ends the thread
    this.thread.on('message', (message: FromRingThread) => this.onMessage(message));
    this.thread.on('error', (error) => this.die(new RingError(`ring thread failed: ${error.message}`)));
    this.thread.on('exit', (code) => this.die(new RingError(`ring thread exited (${code})`)));
  }

  /** Tells the /readyz probe whether the worker is ready. */
  setReady(ready: boolean): void {
    Atomics.store(this.ready, 0, ready ? 1 : 0);
  }

  /** Starts the ring server; resolves with the port it listens on. */
  async listen(): Promise<number> {
    return ((await this.ask({ type: 'listen', id: 0 })) as Extract<Reply, { type: 'listening' }>).port;
  }

  /** Links this rank into the ring of `generation` (see RingLinks.form); the collective runs on the ring thread. */
  async form(message: Messages['formRing'], wireFormat: WireFormat = 'f32', timeoutMs = this.options.timeoutMs): Promise<Collective> {
    const generation = message.generation;
    this.generation = generation;
    await this.ask({ type: 'form', id: 0, form: message, wireFormat, timeoutMs });
    return { allReduce: (buffer, placement) => this.allReduce(generation, buffer, placement) };
  }

  /** This generation's link byte counts as the ring thread last published them (every 50 ms); null outside a ring. */
  counters(): RingCounters | null {
    const slots = this.counterSlots;
    if (slots[COUNTERS.present] !== 1) return null;
    return {
      generation: slots[COUNTERS.generation],
      sentToNextBytes: slots[COUNTERS.sent],
      receivedFromPreviousBytes: slots[COUNTERS.received],
    };
  }

  /** Fails any all-reduce in progress and closes the links (the ring is about to re-form or stop). */
  closeLinks(reason: Error): void {
    this.generation = -1;
    this.ask({ type: 'closeLinks', id: 0, reason: reason.message }).catch(() => {});
  }

  async close(): Promise<void> {
    await this.ask({ type: 'close', id: 0 }).catch(() => {});
    await this.thread.terminate();
  }

  private async allReduce(
    generation: number,
    buffer: Float32Array,
    placement: Placement = { offset: 0, totalLength: buffer.length },
  ): Promise<CollectiveStats> {
    if (generation !== this.generation) throw new RingError(`the ring of generation ${generation} was closed`);
    // In place the ring thread writes the sum into the caller's buffer itself; a replaced ring stops
    // writing when closeLinks reaches the thread, before any newer form() resolves.
    const inPlace = buffer.buffer instanceof SharedArrayBuffer;
    if (!inPlace && this.shared.byteLength < 4 * placement.totalLength) this.shared = new SharedArrayBuffer(4 * placement.totalLength);
    const region = inPlace ? buffer : new Float32Array(this.shared, 4 * placement.offset, buffer.length);
    if (!inPlace) region.set(buffer);
    const { byteOffset, length } = region;
    const shared = region.buffer as SharedArrayBuffer;
    const reply = await this.ask({ type: 'allReduce', id: 0, generation, shared, byteOffset, length, placement });
    // A sum that lands after its ring was replaced must not write into a buffer a newer step owns.
    if (generation !== this.generation) throw new RingError(`the ring of generation ${generation} was closed`);
    if (!inPlace) buffer.set(region);
    return (reply as Extract<Reply, { type: 'reduced' }>).stats;
  }

  private ask(message: ToRingThread): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.thread.postMessage({ ...message, id });
    });
  }

  private onMessage(message: FromRingThread): void {
    if (message.type === 'stall') {
      this.options.onStall?.(message.stall);
      return;
    }
    const waiter = this.pending.get(message.id);
    if (!waiter) return;
    this.pending.delete(message.id);
    if (message.type !== 'failed') waiter.resolve(message);
    else waiter.reject(message.side ? new RingLinkError(message.side, message.message) : new RingError(message.message));
  }

  /** The thread is gone: everything waiting on it, and everything asked later, fails. */
  private die(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.pending.values()) waiter.reject(this.failure);
    this.pending.clear();
  }
}
