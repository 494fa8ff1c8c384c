import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeEnvelope, encodeEnvelope, type Envelope, type Messages } from '../src/wire/protocol.ts';
import { RingAllReduce, RingError } from '../src/wire/ring.ts';
import {
  commandProblem,
  joinProblem,
  replyProblem,
  unsolicitedProblem,
  type CoordinatorView,
  type SentCommand,
} from '../src/wire/validate.ts';
import { fakeLink } from './helpers/fake-link.ts';
import { controlFrame, ringFrame, ringPortFrame, validEnvelope } from './helpers/fuzz-frames.ts';
import { LiveCluster } from './helpers/live-cluster.ts';
import { TEST_TOKEN } from './helpers/processes.ts';
import { probe } from './helpers/probes.ts';
import { compareStates, latestState, smallConfig, train } from './helpers/runs.ts';

/** Fixed seeds: a failure reproduces; fast-check prints the seed and the shrunk counterexample. */
const SEED = 20240605;

const VIEW: CoordinatorView = {
  config: smallConfig(),
  reference: {
    data: { description: 'mnist', trainCount: 1350, holdbackCount: 150, testCount: 500, stepsPerEpoch: 15 },
    layers: [
      { name: 'dense0.kernel', shape: [784, 32], prunable: true },
      { name: 'dense0.bias', shape: [32], prunable: false },
      { name: 'dense1.kernel', shape: [32, 10], prunable: true },
    ],
    backend: 'cpu',
    matmulFlops: 1e9,
  },
};

/** One command of each kind, as the coordinator sends them: any envelope may arrive as their reply. */
const SENT: SentCommand[] = [
  { kind: 'welcome', message: { runId: 'run', configJson: '{}', configHash: '0123456789abcdef' } },
  { kind: 'formRing', message: { generation: 2, rank: 0, members: [{ workerId: 'w0', host: '127.0.0.1', port: 7071 }] } },
  { kind: 'loadState', message: { generation: 2, step: 30, initialize: false, state: new Uint8Array(0) } },
  { kind: 'runSteps', message: { generation: 2, fromStep: 30, toStep: 45 } },
  { kind: 'evaluate', message: { generation: 2 } },
  { kind: 'computeThresholds', message: { generation: 2, p: 0.4, layers: [0, 1] } },
  { kind: 'prune', message: { generation: 2, thresholds: [0.1, 0.2] } },
  { kind: 'uploadState', message: { generation: 2 } },
];

/** Every check a receiver runs on a decoded envelope; none may throw. */
function validateEverywhere(envelope: Envelope): void {
  unsolicitedProblem(envelope);
  commandProblem(envelope, { workerId: 'w1', generation: 3, step: 30, prunableLayers: 2 });
  commandProblem(envelope, { workerId: 'w1', generation: -1, step: 0, prunableLayers: null });
  if (envelope.kind === 'join') joinProblem(envelope.message as Messages['join']);
  for (const sent of SENT) replyProblem(sent, envelope, VIEW);
}

describe('in-process: decoding and validation never throw', () => {
  it('arbitrary and mutated envelopes decode to a ProtocolError or pass through every validator', () => {
    fc.assert(
      fc.property(controlFrame, (bytes) => {
        let envelope: Envelope;
        try {
          envelope = decodeEnvelope(bytes);
        } catch (error) {
          expect((error as Error).name).toBe('ProtocolError');
          return;
        }
        validateEverywhere(envelope);
      }),
      { numRuns: 10000, seed: SEED },
    );
  });

  it('a worker link fed arbitrary frames never throws, and closes (1008) on one that does not decode', () => {
    fc.assert(
      fc.property(fc.array(controlFrame, { minLength: 1, maxLength: 8 }), (frames) => {
        const { socket, link } = fakeLink(VIEW);
        // A command in flight, as in a live run, so replies can match it.
        link.request('evaluate', { generation: 1 }).catch(() => {});
        for (const frame of frames) link.receiveFrame(Buffer.from(frame));
        const undecodable = frames.some((frame) => {
          try {
            decodeEnvelope(frame);
            return false;
          } catch {
            return true;
          }
        });
        if (undecodable) expect(link.isOpen).toBe(false);
        if (!link.isOpen) expect(socket.closedWith?.[0]).toBe(1008);
      }),
      { numRuns: 3000, seed: SEED },
    );
  });

  it('a ring all-reduce fed arbitrary frames never throws, and fails only with a RingError', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(ringFrame, validEnvelope), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 2, max: 4 }),
        async (frames, world) => {
          const ring = new RingAllReduce(1, world, () => {}, { chunkFloats: 8, timeoutMs: 60000 });
          const op = ring.allReduce(new Float32Array(40));
          const outcome = op.then(
            () => 'done',
            (error: Error) => error,
          );
          for (const frame of frames) ring.receive(Buffer.from(frame));
          ring.abort(new RingError('test over'));
          const result = await outcome;
          expect(result === 'done' || result instanceof RingError).toBe(true);
        },
      ),
      { numRuns: 5000, seed: SEED },
    );
  });
});

// ─── a live run under fire ──────────────────────────────────────────────────────────────────

/**
 * The live run commits a checkpoint after every step: that lengthens it (disk waits, little CPU)
 * so the fuzzing below lands while it trains, without changing what it computes — the reference
 * commits at round ends only and must end with the same weights.
 */
const REFERENCE_CONFIG = smallConfig({ workers: 2, rounds: 24 });
const LIVE_CONFIG = { ...REFERENCE_CONFIG, checkpointEverySteps: 1 };
const COORDINATOR_SESSIONS = 700;
const RING_SESSIONS = 700;
const FRAMES_REQUIRED = 10000;
const PARALLEL = 10;

describe('a live run under 10,000 hostile frames', () => {
  let reference: ReturnType<typeof latestState>;

  beforeAll(async () => {
    reference = latestState((await train(REFERENCE_CONFIG)).runDir);
  });

  it('no crash, no hang, and the final weights of an undisturbed run', async () => {
    const cluster = await LiveCluster.start({ config: LIVE_CONFIG });
    try {
      const { generation } = await cluster.training();
      let coordinatorFrames = 0;
      let ringFrames = 0;
      let session = 0;

      /** A session's result, after checking that every process is still up (a crash fails here). */
      const expectAnswered = (result: Awaited<ReturnType<typeof probe>>) => {
        expect(cluster.alive, 'a process exited: it crashed, or the run ended before the fuzzing did').toBe(true);
        expect(result.kind, JSON.stringify(result)).toBe('closed'); // answered, not hung
        return result.kind === 'closed' ? result.sent : 0;
      };

      // The coordinator: authenticated sessions that mostly join first (so frames reach the
      // joined-worker path, not only the first-frame check), then send 4–24 hostile frames.
      // Each property run plays PARALLEL sessions at once, as a crowd of bad peers would.
      const coordinatorSession = fc.record({ joinFirst: fc.boolean(), frames: fc.array(controlFrame, { minLength: 4, maxLength: 24 }) });
      const atCoordinator = fc.assert(
        fc.asyncProperty(fc.array(coordinatorSession, { minLength: PARALLEL, maxLength: PARALLEL }), async (sessions) => {
          const results = await Promise.all(
            sessions.map(({ joinFirst, frames }) => {
              const join = encodeEnvelope('join', { workerId: `fuzz-${session++}`, ringHost: '127.0.0.1', ringPort: 9 });
              return probe(cluster.url, {
                token: TEST_TOKEN,
                frames: joinFirst ? [join, ...frames] : frames,
                closeAfter: true,
                waitMs: 10000,
              });
            }),
          );
          for (const result of results) coordinatorFrames += expectAnswered(result);
        }),
        { numRuns: COORDINATOR_SESSIONS / PARALLEL, seed: SEED },
      );

      // Each worker's ring port, at the same time: a hello (honest-looking or not) and whatever follows it.
      const workerIds = cluster.workers.map((w) => w.id);
      const ringSession = fc.record({
        target: fc.nat({ max: cluster.workers.length - 1 }),
        frames: fc.array(ringPortFrame(generation, workerIds), { minLength: 2, maxLength: 12 }),
      });
      const atRingPorts = fc.assert(
        fc.asyncProperty(fc.array(ringSession, { minLength: PARALLEL, maxLength: PARALLEL }), async (sessions) => {
          const results = await Promise.all(
            sessions.map(({ target, frames }) =>
              probe(`ws://127.0.0.1:${cluster.workers[target].ringPort}/ring`, {
                token: TEST_TOKEN,
                frames,
                closeAfter: true,
                waitMs: 10000,
              }),
            ),
          );
          for (const result of results) ringFrames += expectAnswered(result);
        }),
        { numRuns: RING_SESSIONS / PARALLEL, seed: SEED },
      );
      await Promise.all([atCoordinator, atRingPorts]);

      // All of it landed while the run was training, and the run went on.
      expect((await cluster.status()).phase).toBe('training');
      expect(coordinatorFrames + ringFrames).toBeGreaterThanOrEqual(FRAMES_REQUIRED);
      expect(await cluster.finished()).toEqual([0, 0, 0]);
      expect(cluster.log('coordinator')).toMatch(/invalid message from worker; closing its connection/);

      // Training state untouched: no re-forming, no resync, bit-identical final weights and masks.
      const run = latestState(cluster.runDir);
      expect(run.progress.restarts).toBe(0);
      expect(run.progress.resyncs).toBe(0);
      const diff = compareStates(reference.tensors, run.tensors);
      expect(diff.maxWeightDiff).toBe(0);
      expect(diff.maskDiffs).toBe(0);
      console.log(`fuzz: ${coordinatorFrames} frames at the coordinator, ${ringFrames} at ring ports`);
    } finally {
      cluster.kill();
    }
  });
});
