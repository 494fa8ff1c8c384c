// One rank of `npm run bench -- overlap`, in its own process: a replica of the model on the asked
// backend, linked to the other ranks by the real ring (in its own thread, as a worker's), training steps
// with the asked bucket size and reporting, per step, its wall time and where the time went.
import pino from 'pino';
import { resolveConfig, type OccamConfig } from '../src/config.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import { type BackendRequest, selectBackend } from '../src/training/engine.ts';
import { createModel } from '../src/training/models/create.ts';
import { Replica } from '../src/training/replica.ts';
import { trainSteps } from '../src/training/step-loop.ts';
import type { Peer } from '../src/wire/protocol.ts';
import { DEFAULT_CHUNK_FLOATS } from '../src/wire/ring.ts';
import { ThreadedRingLinks } from '../src/worker/threaded-ring.ts';

export type OverlapCommand =
  | { type: 'form'; members: Peer[] }
  | { type: 'run'; settings: Partial<OccamConfig>; warmupSteps: number; steps: number }
  | { type: 'exit' };

export type OverlapReport =
  | { type: 'port'; port: number }
  | { type: 'formed' }
  | { type: 'result'; stepMs: number; computeMs: number; updateMs: number; allreduceMs: number; buckets: number }
  | { type: 'error'; message: string };

const rank = Number(process.env.OVERLAP_RANK);
const send = (report: OverlapReport) => process.send?.(report);

async function main(): Promise<void> {
  const choice = await selectBackend(process.env.OVERLAP_BACKEND as BackendRequest);
  const links = new ThreadedRingLinks({
    bindHost: '127.0.0.1',
    port: 0,
    token: 'bench',
    log: pino({ level: 'warn' }),
    chunkFloats: DEFAULT_CHUNK_FLOATS,
    timeoutMs: 120_000,
  });
  send({ type: 'port', port: await links.listen() });
  let ring: Awaited<ReturnType<ThreadedRingLinks['form']>> | null = null;
  process.on('message', (command: OverlapCommand) => {
    void (async () => {
      try {
        if (command.type === 'exit') process.exit(0);
        if (command.type === 'form') {
          ring = await links.form({ generation: 1, rank, members: command.members, ringKey: 'bench' }, 'f32', 120_000);
          send({ type: 'formed' });
          return;
        }
        const config = resolveConfig({ ...command.settings, backend: choice.backend });
        const data = loadDataSource(config);
        const replica = new Replica(createModel(config, data), data, config);
        const world = command.settings.workers ?? 2;
        const collective = ring ?? undefined;
        await trainSteps(replica, { fromStep: 0, toStep: command.warmupSteps, rank, world, collective });
        const start = performance.now();
        const { times } = await trainSteps(replica, {
          fromStep: command.warmupSteps,
          toStep: command.warmupSteps + command.steps,
          rank,
          world,
          collective,
        });
        const per = (ms: number) => ms / command.steps;
        send({
          type: 'result',
          stepMs: per(performance.now() - start),
          computeMs: per(times.computeMs),
          updateMs: per(times.updateMs),
          allreduceMs: per(times.allreduceMs + times.waitMs),
          buckets: replica.gradientBuckets().length,
        });
        replica.dispose();
      } catch (error) {
        send({ type: 'error', message: (error as Error).stack ?? String(error) });
      }
    })();
  });
}

main().catch((error) => {
  send({ type: 'error', message: (error as Error).stack ?? String(error) });
  process.exit(1);
});
