// The ring's own thread: the worker's ring links (RingLinks: server, neighbour sockets, framing,
// the float adds) run on this event loop, so a synchronous compute kernel on the training thread
// never stalls the network, nor the network the kernel. Buffers come and go in SharedArrayBuffers;
// the training thread's half is threaded-ring.ts, and the messages between them are declared there.
import { parentPort, workerData } from 'node:worker_threads';
import pino from 'pino';
import { type RingAllReduce, RingError } from '../wire/ring.ts';
import { RingLinkError, RingLinks } from './ring-links.ts';
import { COUNTERS, type FromRingThread, type RingThreadData, type ToRingThread } from './threaded-ring.ts';

const data = workerData as RingThreadData;
const port = parentPort;
if (!port) throw new Error('ring-thread.ts runs as a worker thread');
const post = (message: FromRingThread) => port.postMessage(message);
const ready = new Int32Array(data.ready);
const counters = new Float64Array(data.counters);
const log = pino({ level: data.logLevel }).child(data.logBindings);

const links = new RingLinks({
  ...data.links,
  log,
  ready: () => Atomics.load(ready, 0) === 1,
  onStall: (stall) => post({ type: 'stall', stall }),
});
let ring: { generation: number; all: RingAllReduce } | null = null;

// The training thread reads the link byte counts from shared memory whenever it sends a heartbeat.
setInterval(() => {
  const now = links.counters();
  counters[COUNTERS.present] = now ? 1 : 0;
  if (!now) return;
  counters[COUNTERS.generation] = now.generation;
  counters[COUNTERS.sent] = now.sentToNextBytes;
  counters[COUNTERS.received] = now.receivedFromPreviousBytes;
}, 50).unref();

port.on('message', (message: ToRingThread) => {
  void handle(message).catch((error: Error) => post({ type: 'failed', id: message.id, message: error.message, side: sideOf(error) }));
});

async function handle(message: ToRingThread): Promise<void> {
  switch (message.type) {
    case 'listen':
      post({ type: 'listening', id: message.id, port: await links.listen() });
      return;
    case 'form': {
      ring = null;
      const formed = await links.form(message.form, message.wireFormat, message.timeoutMs);
      ring = { generation: message.form.generation, all: formed };
      post({ type: 'formed', id: message.id });
      return;
    }
    case 'allReduce': {
      if (!ring || ring.generation !== message.generation) throw new Error(`no ring of generation ${message.generation} on this worker`);
      const buffer = new Float32Array(message.shared, message.byteOffset, message.length);
      const stats = await ring.all.allReduce(buffer, message.placement);
      post({ type: 'reduced', id: message.id, stats });
      return;
    }
    case 'closeLinks':
      ring = null;
      links.closeLinks(new RingError(message.reason));
      post({ type: 'done', id: message.id });
      return;
    case 'close':
      ring = null;
      await links.close();
      post({ type: 'done', id: message.id });
      return;
  }
}

function sideOf(error: Error): 'previous' | 'next' | undefined {
  return error instanceof RingLinkError ? error.side : undefined;
}
