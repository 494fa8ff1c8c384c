// One ring member in its own process, driven over IPC by a test or a benchmark: it listens,
// joins the ring it is told about, all-reduces deterministic buffers, and reports how close the
// result is to the direct sum, a digest of the result, and the time taken. Its ring runs in its
// own thread, as a worker's does.
import pino from 'pino';
import { digestArrays } from '../src/common/digest.ts';
import type { Peer } from '../src/wire/protocol.ts';
import { mixSeed, Rng } from '../src/training/rng.ts';
import { DEFAULT_CHUNK_FLOATS } from '../src/wire/ring.ts';
import { ThreadedRingLinks } from '../src/worker/threaded-ring.ts';

export type RingNodeCommand =
  | { type: 'form'; generation: number; members: Peer[] }
  /** `plain`: the buffers lie in ordinary memory, copied to the ring thread and back (else in shared memory, as the step loop's). */
  | { type: 'allreduce'; sizes: number[]; repeats: number; verify: boolean; plain?: boolean }
  | { type: 'exit' };

export type RingNodeReport =
  | { type: 'port'; port: number }
  | { type: 'formed' }
  | { type: 'result'; size: number; maxError: number; digest: string; ms: number[]; bytesSent: number }
  | { type: 'error'; message: string };

const rank = Number(process.env.RING_RANK);
const world = Number(process.env.RING_WORLD);
const chunkFloats = Number(process.env.RING_CHUNK_FLOATS ?? DEFAULT_CHUNK_FLOATS);
const wireFormat = process.env.RING_WIRE_FORMAT === 'bf16' ? 'bf16' : 'f32';
const send = (report: RingNodeReport) => process.send?.(report);

/** The input of `rank` for a buffer of `size` floats: the same on every process. */
export function ringInput(forRank: number, size: number): Float32Array {
  const rng = new Rng(mixSeed(forRank, size));
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) values[i] = rng.uniform() * 2 - 1;
  return values;
}

async function main(): Promise<void> {
  const links = new ThreadedRingLinks({
    bindHost: '127.0.0.1',
    port: 0,
    token: process.env.RING_TOKEN ?? 'test-token',
    log: pino({ level: 'warn' }),
    chunkFloats,
    timeoutMs: 30000,
  });
  send({ type: 'port', port: await links.listen() });
  let ring: Awaited<ReturnType<ThreadedRingLinks['form']>> | null = null;
  process.on('message', (command: RingNodeCommand) => {
    void (async () => {
      try {
        if (command.type === 'form') {
          // The bench's own processes: one fixed key for all of them.
          const form = { generation: command.generation, rank, members: command.members, ringKey: 'bench' };
          ring = await links.form(form, wireFormat);
          send({ type: 'formed' });
        } else if (command.type === 'allreduce') {
          for (const size of command.sizes) {
            const ms: number[] = [];
            let result: Float32Array = new Float32Array(0);
            let bytesSent = 0;
            const input = ringInput(rank, size);
            for (let r = 0; r < command.repeats; r++) {
              result = command.plain ? new Float32Array(size) : new Float32Array(new SharedArrayBuffer(4 * size));
              result.set(input);
              // A one-float all-reduce as a barrier: the timed op starts together on every rank.
              await (ring as NonNullable<typeof ring>).allReduce(new Float32Array(1));
              const t0 = performance.now();
              const stats = await (ring as NonNullable<typeof ring>).allReduce(result);
              ms.push(performance.now() - t0);
              bytesSent = stats.bytesSent;
            }
            let maxError = 0;
            if (command.verify) {
              const inputs = Array.from({ length: world }, (_, r) => ringInput(r, size));
              for (let i = 0; i < size; i++) {
                let direct = 0;
                for (const input of inputs) direct += input[i];
                maxError = Math.max(maxError, Math.abs(direct - result[i]));
              }
            }
            send({ type: 'result', size, maxError, digest: digestArrays([result]), ms, bytesSent });
          }
        } else {
          await links.close();
          process.exit(0);
        }
      } catch (error) {
        send({ type: 'error', message: (error as Error).message });
      }
    })();
  });
}

if (process.env.RING_RANK !== undefined) void main();
