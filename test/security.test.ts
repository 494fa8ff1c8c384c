import { readFileSync } from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import pino from 'pino';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tokensEqual } from '../src/wire/auth.ts';
import { configHash } from '../src/config.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import { selectBackend } from '../src/training/engine.ts';
import { createModel } from '../src/training/models/create.ts';
import {
  PROTOCOL_VERSION,
  decodeEnvelope,
  encodeEnvelope,
  encodeRingHello,
  heartbeat,
  type Envelope,
  type LayerInfo,
  type MessageKind,
  type Messages,
} from '../src/wire/protocol.ts';
import { Replica } from '../src/training/replica.ts';
import { RingAllReduce, RingError, RING_HEADER_BYTES } from '../src/wire/ring.ts';
import { encodeSafetensors } from '../src/storage/safetensors.ts';
import {
  checkState,
  closeReason,
  commandProblem,
  replyProblem,
  unsolicitedProblem,
  type CoordinatorView,
  type WorkerView,
} from '../src/wire/validate.ts';
import { LinkClosed } from '../src/coordinator/worker-link.ts';
import { Worker } from '../src/worker/worker.ts';
import { fakeLink } from './helpers/fake-link.ts';
import { certificateFolder, makeCa, makeNodeCertificate } from './helpers/certs.ts';
import { LiveCluster } from './helpers/live-cluster.ts';
import { spawnOccam, TEST_TOKEN } from './helpers/processes.ts';
import { probe } from './helpers/probes.ts';
import { compareStates, latestState, quietLog, smallConfig, tempRunDir, train } from './helpers/runs.ts';

// ─── messages: what a malicious or buggy peer can send ─────────────────────────────────────────

const LAYERS: LayerInfo[] = [
  { name: 'dense0.kernel', shape: [4, 3], prunable: true },
  { name: 'dense0.bias', shape: [3], prunable: false },
  { name: 'dense1.kernel', shape: [3, 2], prunable: true },
];
const READY: Messages['ready'] = {
  data: { description: 'test', trainCount: 100, holdbackCount: 10, testCount: 20, stepsPerEpoch: 2 },
  layers: LAYERS,
  backend: 'cpu',
  matmulFlops: 1e9,
};
const VIEW: CoordinatorView = { config: smallConfig({ batchSize: 50 }), reference: READY };
const DIGEST = '0123456789abcdef';
const TIMES = { steps: 2, computeMs: 1, allreduceMs: 1, updateMs: 1, waitMs: 0 };

function envelope<K extends MessageKind>(kind: K, message: Messages[K], requestId = 1): Envelope {
  return { protocol: PROTOCOL_VERSION, requestId, kind, message };
}

function command<K extends MessageKind>(kind: K, message: Messages[K]) {
  return { kind, message };
}

/** A model state in the wire format, for the layers above. */
function stateBytes(options: { maskValue?: number; drop?: string } = {}): Buffer {
  const tensors = LAYERS.flatMap((l) => {
    const size = l.shape.reduce((a, b) => a * b, 1);
    const weights = { name: l.name, shape: l.shape, data: Float32Array.from({ length: size }, (_, i) => i / 10) };
    const mask = l.prunable ? [{ name: `${l.name}.mask`, shape: l.shape, data: new Uint8Array(size).fill(options.maskValue ?? 1) }] : [];
    const moments = ['m', 'v'].map((m) => ({ name: `adam.${m}.${l.name}`, shape: l.shape, data: new Float32Array(size) }));
    return [weights, ...mask, ...moments].filter((t) => t.name !== options.drop);
  });
  return encodeSafetensors(tensors, { adamSteps: '3' });
}

describe('the coordinator checks every reply against the command and the model', () => {
  const runSteps = command('runSteps', { generation: 1, fromStep: 0, toStep: 2 });
  const stepsDone = (overrides: Partial<Messages['stepsDone']>) =>
    envelope('stepsDone', { lossSum: 10, samples: 100, times: TIMES, bytesSent: 64, stateDigest: DIGEST, ...overrides });

  it('accepts honest replies, including the NaN loss of a diverged model', () => {
    expect(replyProblem(runSteps, stepsDone({}), VIEW)).toBeNull();
    expect(replyProblem(runSteps, stepsDone({ lossSum: NaN }), VIEW)).toBeNull();
    expect(
      replyProblem(
        command('welcome', { runId: 'r', configJson: '{}', configHash: DIGEST, livenessKey: 'k' }),
        envelope('ready', READY),
        VIEW,
      ),
    ).toBeNull();
    expect(replyProblem(runSteps, envelope('error', { code: 'aborted', message: 'ring re-formed' }), VIEW)).toBeNull();
  });

  it.each([
    [
      'a reply of the wrong kind',
      envelope('evalResult', { holdback: { lossSum: 1, correct: 1, count: 1 }, test: { lossSum: 1, correct: 1, count: 1 } }),
      /replied 'evalResult' to 'runSteps'/,
    ],
    ['a negative loss sum', stepsDone({ lossSum: -1 }), /loss sum -1 is negative/],
    ['more samples than the steps hold', stepsDone({ samples: 1e9 }), /samples in 2 steps/],
    ['a fractional sample count', stepsDone({ samples: 1.5 }), /not a count/],
    ['a bogus state digest', stepsDone({ stateDigest: 'not-a-digest' }), /not a digest/],
    ['no step times', stepsDone({ times: null as unknown as Messages['stepsDone']['times'] }), /no step times/],
    ['NaN step times', stepsDone({ times: { ...TIMES, computeMs: NaN } }), /compute time NaN/],
    ['the wrong number of steps', stepsDone({ times: { ...TIMES, steps: 7 } }), /reported 7 steps for 2/],
  ])('refuses %s to runSteps', (_, reply, reason) => {
    expect(replyProblem(runSteps, reply, VIEW)).toMatch(reason);
  });

  it('refuses thresholds for other layers, too many values, NaN or negative values', () => {
    const asked = command('computeThresholds', { generation: 1, p: 0.4, layers: [0, 1] });
    const reply = (layers: number[], values: number[]) => envelope('thresholds', { layers, values });
    expect(replyProblem(asked, reply([0, 1], [0.1, 0.2]), VIEW)).toBeNull();
    expect(replyProblem(asked, reply([1, 0], [0.1, 0.2]), VIEW)).toMatch(/asked for/);
    expect(replyProblem(asked, reply([0, 1], new Array(100000).fill(0.1)), VIEW)).toMatch(/100000 thresholds for 2 layers/);
    expect(replyProblem(asked, reply([0, 1], [NaN, 0.2]), VIEW)).toMatch(/threshold NaN of layer 0/);
    expect(replyProblem(asked, reply([0, 1], [0.1, -3]), VIEW)).toMatch(/threshold -3 of layer 1/);
    expect(replyProblem(asked, reply([0, 1], [Infinity, 0]), VIEW)).toMatch(/not a finite number/);
  });

  it('refuses evaluation sums with huge counts or impossible accuracy', () => {
    const asked = command('evaluate', { generation: 1 });
    const sums = (holdback: Messages['evalResult']['holdback']) =>
      envelope('evalResult', { holdback, test: { lossSum: 1, correct: 2, count: 5 } });
    expect(replyProblem(asked, sums({ lossSum: 3, correct: 4, count: 10 }), VIEW)).toBeNull();
    expect(replyProblem(asked, sums({ lossSum: 3, correct: 4, count: 2 ** 40 }), VIEW)).toMatch(/holdback count .* exceeds the 10 samples/);
    expect(replyProblem(asked, sums({ lossSum: 3, correct: 11, count: 10 }), VIEW)).toMatch(/holdback correct 11 is outside/);
    expect(
      replyProblem(
        asked,
        envelope('evalResult', {
          holdback: null as unknown as Messages['evalResult']['holdback'],
          test: { lossSum: 1, correct: 1, count: 1 },
        }),
        VIEW,
      ),
    ).toMatch(/no holdback sums/);
  });

  it('refuses a state report whose counts do not fit the model, or a step other than the one loaded', () => {
    const loaded = command('loadState', { generation: 1, step: 30, initialize: false, state: new Uint8Array(8) });
    const report = (overrides: Partial<Messages['stateReport']>) =>
      envelope('stateReport', { stateDigest: DIGEST, activePerLayer: [12, 6], activeParams: 21, step: 30, ...overrides });
    expect(replyProblem(loaded, report({}), VIEW)).toBeNull();
    expect(replyProblem(loaded, report({ activePerLayer: [13, 6], activeParams: 22 }), VIEW)).toMatch(
      /active count 13 of prunable layer 0/,
    );
    expect(replyProblem(loaded, report({ activeParams: 5 }), VIEW)).toMatch(/do not match/);
    expect(replyProblem(loaded, report({ activePerLayer: [12] }), VIEW)).toMatch(/1 active counts for 2 prunable layers/);
    expect(replyProblem(loaded, report({ step: 31 }), VIEW)).toMatch(/reported step 31 after loading step 30/);
  });

  it('decodes an uploaded state before anything uses it and checks its digest against its bytes', () => {
    const asked = command('uploadState', { generation: 1 });
    const digest = checkState(stateBytes(), LAYERS) as string;
    expect(typeof digest).toBe('string');
    const upload = (state: Uint8Array, stateDigest = digest) => envelope('stateUpload', { state, stateDigest, step: 4 });
    expect(replyProblem(asked, upload(stateBytes()), VIEW)).toBeNull();
    expect(replyProblem(asked, upload(stateBytes(), 'ffffffffffffffff'), VIEW)).toMatch(/does not match the uploaded bytes/);
    expect(replyProblem(asked, upload(new Uint8Array([1, 2, 3])), VIEW)).toMatch(/safetensors: too short/);
    expect(replyProblem(asked, upload(stateBytes({ drop: 'adam.v.dense0.bias' })), VIEW)).toMatch(/lacks a tensor of layer dense0.bias/);
    expect(replyProblem(asked, upload(stateBytes({ maskValue: 7 })), VIEW)).toMatch(/0\/1 mask/);
  });

  it('refuses a ready from a worker that loaded other data or built another model', () => {
    const welcome = command('welcome', { runId: 'r', configJson: '{}', configHash: DIGEST, livenessKey: 'k' });
    const other = { ...READY, layers: [{ ...LAYERS[0], shape: [5, 3] }, ...LAYERS.slice(1)] };
    expect(replyProblem(welcome, envelope('ready', other), VIEW)).toMatch(/different model/);
    expect(
      replyProblem(welcome, envelope('ready', { ...READY, data: null as unknown as Messages['ready']['data'] }), {
        ...VIEW,
        reference: null,
      }),
    ).toMatch(/without data/);
    expect(
      replyProblem(welcome, envelope('ready', { ...READY, layers: [{ name: 'x', shape: [0], prunable: true }] }), {
        ...VIEW,
        reference: null,
      }),
    ).toMatch(/invalid shape/);
  });

  it('allows only heartbeats, progress and errors unsolicited', () => {
    expect(unsolicitedProblem(envelope('heartbeat', { ...heartbeat(20000), sentMs: 5 }, 0))).toBeNull();
    expect(unsolicitedProblem(envelope('heartbeat', { ...heartbeat(), busyMs: -1 }, 0))).toMatch(/busy time/);
    expect(unsolicitedProblem(envelope('stepProgress', { step: 3, loss: 0.5, times: TIMES, bytesSent: 4 }, 0))).toBeNull();
    expect(
      unsolicitedProblem(envelope('stepProgress', { step: 3, loss: 0.5, times: null as unknown as typeof TIMES, bytesSent: 4 }, 0)),
    ).toMatch(/no step times/);
    expect(
      unsolicitedProblem(envelope('stepsDone', { lossSum: 1, samples: 1, times: TIMES, bytesSent: 0, stateDigest: DIGEST }, 9)),
    ).toMatch(/unsolicited 'stepsDone'/);
    expect(unsolicitedProblem(envelope('join', { workerId: 'w9', ringHost: 'h', ringPort: 1 }, 0))).toMatch(/second join/);
    expect(unsolicitedProblem(envelope('runSteps', { generation: 1, fromStep: 0, toStep: 1 }, 0))).toMatch(/unsolicited 'runSteps'/);
  });

  it('digests a state on the coordinator exactly as a replica does', async () => {
    await selectBackend('cpu');
    const config = smallConfig({ trainLimit: 300 });
    const data = loadDataSource(config);
    const replica = new Replica(createModel(config, data), data, config);
    const { gradient, globalCount } = await replica.shardGradient(0, 0, 1);
    replica.applyGradient(gradient, globalCount);
    const layers = replica.params.map((p) => ({ name: p.name, shape: p.shape, prunable: p.prunable }));
    expect(checkState(await replica.encodeState(), layers)).toBe(await replica.stateDigest());
  });
});

describe('a worker checks every command against its state', () => {
  const view: WorkerView = { workerId: 'w1', generation: 3, step: 30, prunableLayers: 2 };
  const members = [
    { workerId: 'w0', host: '10.0.0.1', port: 7071 },
    { workerId: 'w1', host: 'w1.occam.svc', port: 7071 },
  ];

  it.each([
    ['a stale ring generation', envelope('formRing', { generation: 3, rank: 1, members, ringKey: 'k' }), /not newer than 3/],
    ['a rank that belongs to another worker', envelope('formRing', { generation: 4, rank: 0, members, ringKey: 'k' }), /belongs to w0/],
    ['a rank outside the ring', envelope('formRing', { generation: 4, rank: 2, members, ringKey: 'k' }), /outside a ring of 2/],
    ['a member twice', envelope('formRing', { generation: 4, rank: 1, members: [members[1], members[1]], ringKey: 'k' }), /appears twice/],
    [
      'a host that would rewrite the URL',
      envelope('formRing', { generation: 4, rank: 1, members: [{ ...members[0], host: 'evil.com/x?' }, members[1]], ringKey: 'k' }),
      /invalid ring host/,
    ],
    ['a command for another generation', envelope('evaluate', { generation: 2 }), /generation 2, this worker is in generation 3/],
    ['a reversed step range', envelope('runSteps', { generation: 3, fromStep: 30, toStep: 20 }), /reversed step range/],
    ['a step this replica is not at', envelope('runSteps', { generation: 3, fromStep: 10, toStep: 20 }), /at step 30/],
    ['a pruning fraction of 1.5', envelope('computeThresholds', { generation: 3, p: 1.5, layers: [0] }), /outside \(0, 1\)/],
    ['a NaN pruning fraction', envelope('computeThresholds', { generation: 3, p: NaN, layers: [0] }), /outside \(0, 1\)/],
    ['a layer index out of range', envelope('computeThresholds', { generation: 3, p: 0.4, layers: [0, 5] }), /below 2/],
    ['a repeated layer index', envelope('computeThresholds', { generation: 3, p: 0.4, layers: [1, 1] }), /distinct/],
    [
      'NaN thresholds (they would prune everything)',
      envelope('prune', { generation: 3, thresholds: [0.1, NaN] }),
      /threshold NaN of layer 1/,
    ],
    ['negative thresholds', envelope('prune', { generation: 3, thresholds: [0.1, -1] }), /threshold -1/],
    ['too many thresholds', envelope('prune', { generation: 3, thresholds: [0.1, 0.2, 0.3] }), /3 thresholds for 2 prunable layers/],
    [
      'a load that initialises and carries a state',
      envelope('loadState', { generation: 3, step: 0, initialize: true, state: new Uint8Array(4) }),
      /initialise and carries/,
    ],
    [
      'a message only workers send',
      envelope('stepsDone', { lossSum: 1, samples: 1, times: TIMES, bytesSent: 0, stateDigest: DIGEST }),
      /only workers send/,
    ],
  ])('refuses %s', (_, message, reason) => {
    expect(commandProblem(message, view)).toMatch(reason);
  });

  it('accepts the commands of a healthy run', () => {
    expect(commandProblem(envelope('formRing', { generation: 4, rank: 1, members, ringKey: 'k' }), view)).toBeNull();
    expect(commandProblem(envelope('runSteps', { generation: 3, fromStep: 30, toStep: 45 }), view)).toBeNull();
    expect(commandProblem(envelope('prune', { generation: 3, thresholds: [0.1, 0] }), view)).toBeNull();
    expect(commandProblem(envelope('computeThresholds', { generation: 3, p: 0.4, layers: [1] }), view)).toBeNull();
  });

  it('refuses model commands before a welcome built the model', () => {
    expect(commandProblem(envelope('uploadState', { generation: 3 }), { ...view, prunableLayers: null })).toMatch(/before a welcome/);
  });
});

describe('one invalid message closes one connection', () => {
  it('a reply of the wrong kind closes the link with a reason and a log line, and fails the request as a lost link', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const unsolicited: Envelope[] = [];
    const { socket, link } = fakeLink(VIEW, { log, onUnsolicited: (e) => unsolicited.push(e) });
    const reply = link.request('evaluate', { generation: 1 });
    link.receiveFrame(
      Buffer.from(encodeEnvelope('stepsDone', { lossSum: 1, samples: 1, times: TIMES, bytesSent: 0, stateDigest: DIGEST }, 1)),
    );
    await expect(reply).rejects.toBeInstanceOf(LinkClosed);
    expect(socket.closedWith?.[0]).toBe(1008);
    expect(socket.closedWith?.[1]).toMatch(/replied 'stepsDone' to 'evaluate'/);
    expect(link.isOpen).toBe(false);
    expect(lines.join('')).toMatch(/invalid message from worker; closing its connection/);
    // Nothing after the close reaches the coordinator.
    link.receiveFrame(Buffer.from(encodeEnvelope('stepProgress', { step: 1, loss: 1, times: TIMES, bytesSent: 0 })));
    expect(unsolicited).toHaveLength(0);
  });

  it('bytes that do not decode close the link', () => {
    const { socket, link } = fakeLink(VIEW);
    link.receiveFrame(Buffer.from([0xff, 0xff, 0xff]));
    expect(socket.closedWith?.[0]).toBe(1008);
  });

  it('close reasons are cut to the 123 bytes a control frame holds, at a character boundary', () => {
    const reason = closeReason('≥'.repeat(200));
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
    expect(reason).toBe('≥'.repeat(41));
  });
});

describe('ring frames that this op cannot have produced fail it, never the process', () => {
  const options = { chunkFloats: 4, timeoutMs: 5000 };

  /** Ranks 0 and 1 of a ring of 3, with rank 2 played by the test: frames to rank 1 are ours to forge. */
  function rankOne(): { ring: RingAllReduce; sent: Buffer[] } {
    const sent: Buffer[] = [];
    return {
      ring: new RingAllReduce(
        1,
        3,
        (parts, written) => {
          sent.push(Buffer.concat(parts));
          written();
        },
        options,
      ),
      sent,
    };
  }

  function frame(op: number, phase: number, iteration: number, segment: number, chunk: number, values: number): Buffer {
    const bytes = Buffer.alloc(RING_HEADER_BYTES + 4 * values);
    bytes.writeUInt32LE(op, 0);
    bytes.writeUInt16LE(phase, 4);
    bytes.writeUInt16LE(iteration, 6);
    bytes.writeUInt32LE(segment, 8);
    bytes.writeUInt32LE(chunk, 12);
    return bytes;
  }

  // Rank 1 of 3 with 9 values: segment 0 (values 0-2) is what rank 0 sends it first.
  it.each([
    ['a frame shorter than a header', Buffer.alloc(5), /malformed ring frame of 5 bytes/],
    ['a length that is not whole floats', Buffer.alloc(RING_HEADER_BYTES + 3), /malformed/],
    ['an unknown phase', frame(1, 9, 0, 0, 0, 3), /unexpected ring frame \(phase 9/],
    ['the wrong segment', frame(1, 0, 0, 2, 0, 3), /segment 2/],
    ['an iteration past the ring', frame(1, 0, 5, 0, 0, 3), /iteration 5/],
    ['a chunk past the segment', frame(1, 0, 0, 0, 9, 3), /chunk 9, which segment 0 of this op does not have/],
    ['the wrong number of values', frame(1, 0, 0, 0, 0, 2), /has 2 values, expected 3/],
  ])('%s', async (_, bad, reason) => {
    const { ring } = rankOne();
    const op = ring.allReduce(new Float32Array(9));
    expect(() => ring.receive(bad)).not.toThrow();
    await expect(op).rejects.toThrow(reason);
    await expect(op).rejects.toBeInstanceOf(RingError);
  });

  it('a repeated frame (which would add a gradient twice)', async () => {
    const { ring } = rankOne();
    const op = ring.allReduce(new Float32Array(9));
    ring.receive(frame(1, 0, 0, 0, 0, 3));
    ring.receive(frame(1, 0, 0, 0, 0, 3));
    await expect(op).rejects.toThrow(/repeated ring frame/);
  });

  it('frames of ops ahead wait for them, up to a bound; frames of a finished op fail', async () => {
    const { ring } = rankOne();
    for (let i = 0; i < 4 * 3 * 1024; i++) ring.receive(frame(2, 0, 0, 0, 0, 3)); // kept for op 2
    ring.receive(frame(3, 0, 0, 0, 0, 3));
    await expect(ring.allReduce(new Float32Array(9))).rejects.toThrow(/too many ring frames ahead/);

    // Rank 1 of 2 with 2 values receives exactly two frames per op: chunk 0 (segment 0) reduced, chunk 1 (segment 1) gathered.
    const pair = new RingAllReduce(1, 2, (_, written) => written(), options);
    const op = pair.allReduce(new Float32Array(2));
    pair.receive(frame(1, 0, 0, 0, 0, 1));
    pair.receive(frame(1, 1, 0, 1, 1, 1));
    await expect(op).resolves.toMatchObject({ bytesSent: expect.any(Number) });
    pair.receive(frame(1, 1, 0, 1, 1, 1)); // op 1 is over: no honest rank sends this
    await expect(pair.allReduce(new Float32Array(2))).rejects.toThrow(/op 1, which is over/);
  });
});

// ─── live runs: refused connections leave training untouched ────────────────────────────────

// The live runs commit after every step, which lengthens them (disk waits, little CPU) so the
// probes below land while they train; the undisturbed reference commits at round ends only.
const REFERENCE_CONFIG = smallConfig({ workers: 2, rounds: 6 });
const LIVE_CONFIG = { ...REFERENCE_CONFIG, checkpointEverySteps: 1 };
const EnvelopeType = protobuf.loadSync(fileURLToPath(new URL('../proto/occam.proto', import.meta.url))).lookupType('occam.v1.Envelope');

/** An envelope as another protocol version would encode it. */
function envelopeOfVersion(protocol: number, body: Record<string, unknown>): Uint8Array {
  return EnvelopeType.encode(EnvelopeType.fromObject({ protocol, requestId: 0, ...body })).finish();
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    httpGet(url, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    }).on('error', reject);
  });
}

describe('a live run refuses bad connections and carries on unaffected', () => {
  let reference: ReturnType<typeof latestState>;
  const clusters: LiveCluster[] = [];
  const strays: ReturnType<typeof spawnOccam>[] = [];

  beforeAll(async () => {
    // The undisturbed run with the same seeds: every refusal below must leave training exactly here.
    reference = latestState((await train(REFERENCE_CONFIG)).runDir);
  });
  afterEach(() => {
    for (const cluster of clusters.splice(0)) cluster.kill();
    for (const child of strays.splice(0)) child.kill('SIGKILL');
  });

  it('no token, a wrong token, a replayed join of a live rank and a wrong protocol version are refused, at the coordinator and at the ring ports', async () => {
    const cluster = await LiveCluster.start({ config: LIVE_CONFIG });
    clusters.push(cluster);
    const status = await cluster.training();
    const [w0, w1] = cluster.workers;
    const join = (workerId: string) => encodeEnvelope('join', { workerId, ringHost: '127.0.0.1', ringPort: w0.ringPort });

    // The coordinator.
    expect(await probe(cluster.url)).toEqual({ kind: 'refused', status: 401 });
    expect(await probe(cluster.url, { token: 'wrong-token' })).toEqual({ kind: 'refused', status: 401 });
    expect(await probe(cluster.url, { token: `${TEST_TOKEN}x` })).toEqual({ kind: 'refused', status: 401 });
    const replay = await probe(cluster.url, { token: TEST_TOKEN, frames: [join('w0')] });
    expect(replay).toMatchObject({ kind: 'closed', code: 1008, reason: expect.stringMatching(/worker id w0 is already connected/) });
    const version = await probe(cluster.url, {
      token: TEST_TOKEN,
      frames: [envelopeOfVersion(PROTOCOL_VERSION + 1, { join: { workerId: 'w9', ringHost: '127.0.0.1', ringPort: 9 } })],
    });
    expect(version).toMatchObject({
      kind: 'closed',
      code: 1008,
      reason: expect.stringMatching(new RegExp(`protocol version ${PROTOCOL_VERSION + 1}`)),
    });
    const notJoin = await probe(cluster.url, { token: TEST_TOKEN, frames: [encodeEnvelope('heartbeat', heartbeat())] });
    expect(notJoin).toMatchObject({ kind: 'closed', code: 1008, reason: 'expected join' });
    // Only the worker that joined holds its liveness key: a token holder cannot keep w0 alive.
    const livenessImpostor = await probe(cluster.url, {
      token: TEST_TOKEN,
      frames: [encodeEnvelope('livenessHello', { workerId: 'w0', key: 'guessed' })],
    });
    expect(livenessImpostor).toMatchObject({ kind: 'closed', code: 1008, reason: 'unknown worker or wrong liveness key' });
    const badHost = await probe(cluster.url, {
      token: TEST_TOKEN,
      frames: [encodeEnvelope('join', { workerId: 'w9', ringHost: 'a/b@c', ringPort: 9 })],
    });
    expect(badHost).toMatchObject({ kind: 'closed', code: 1008, reason: 'invalid ring host' });
    // A joined peer that misbehaves loses its own connection, nothing else.
    const rude = await probe(cluster.url, {
      token: TEST_TOKEN,
      frames: [join('w9'), encodeEnvelope('runSteps', { generation: 1, fromStep: 0, toStep: 1 })],
    });
    expect(rude).toMatchObject({ kind: 'closed', code: 1008, reason: "unsolicited 'runSteps'" });

    // A worker's ring port.
    const ring = `ws://127.0.0.1:${w0.ringPort}/ring`;
    expect(await probe(ring)).toEqual({ kind: 'refused', status: 401 });
    expect(await probe(ring, { token: 'wrong-token' })).toEqual({ kind: 'refused', status: 401 });
    const garbage = await probe(ring, { token: TEST_TOKEN, frames: [Buffer.from('not a hello')] });
    expect(garbage).toMatchObject({ kind: 'closed', code: 1008, reason: 'malformed hello' });
    // w0 is rank 0 of 2: a token holder claiming to be w1, its next rank, lacks this generation's ring key.
    const impostor = await probe(ring, {
      token: TEST_TOKEN,
      frames: [encodeRingHello({ generation: status.generation, rank: 1, workerId: w1.id, key: 'guessed' })],
    });
    expect(impostor).toMatchObject({ kind: 'closed', code: 1008, reason: `wrong ring key for generation ${status.generation}` });

    // Health and status are open and read-only.
    expect(await httpStatus(`http://127.0.0.1:${cluster.port}/healthz`)).toBe(200);
    expect(await httpStatus(`http://127.0.0.1:${w0.ringPort}/healthz`)).toBe(200);
    for (const method of ['POST', 'PUT', 'DELETE']) {
      for (const path of ['/healthz', '/readyz', '/status.json', '/metrics', '/']) {
        const answer = await fetch(`http://127.0.0.1:${cluster.port}${path}`, { method });
        expect(answer.status, `${method} ${path}`).toBe(405);
        expect(answer.headers.get('allow')).toBe('GET, HEAD');
      }
      expect((await fetch(`http://127.0.0.1:${w0.ringPort}/healthz`, { method })).status, `${method} on a ring port`).toBe(405);
    }
    expect((await cluster.status()).phase, 'all of the above happened while the run trained').toBe('training');

    expect(await cluster.finished()).toEqual([0, 0, 0]);
    const logs = cluster.log('coordinator');
    expect(logs).toMatch(/missing or wrong cluster token/);
    expect(logs).toMatch(/join refused/);
    expect(cluster.log(0)).toMatch(/ring connection refused: wrong ring key/);
    const run = latestState(cluster.runDir);
    expect(run.progress.restarts).toBe(0);
    const diff = compareStates(reference.tensors, run.tensors);
    expect(diff.maxWeightDiff).toBe(0);
    expect(diff.maskDiffs).toBe(0);
  });

  it('over wss: the run trains over TLS, and peers with a certificate from another CA are refused', async () => {
    const dir = certificateFolder();
    const clusterCa = makeCa(dir, 'cluster-ca');
    const node = makeNodeCertificate(dir, 'node', clusterCa);
    const otherCa = makeCa(dir, 'other-ca');
    const rogue = makeNodeCertificate(dir, 'rogue', otherCa);
    const cluster = await LiveCluster.start({ config: LIVE_CONFIG, tls: node });
    clusters.push(cluster);
    // A worker holding a certificate of another CA (and the right token) tries to join.
    const rogueLog = join(cluster.runDir, '..', 'rogue-worker.log');
    strays.push(
      spawnOccam(
        [
          'worker',
          '--coordinator',
          cluster.url,
          '--worker-id',
          'rogue',
          '--ring-host',
          '127.0.0.1',
          '--tls-cert',
          rogue.cert,
          '--tls-key',
          rogue.key,
          '--tls-ca',
          rogue.ca,
        ],
        rogueLog,
      ),
    );
    await cluster.training();

    const read = (path: string) => readFileSync(path);
    const trusted = { ca: read(node.ca) };
    const ringUrl = `wss://127.0.0.1:${cluster.workers[0].ringPort}/ring`;
    // The cluster's certificate, token and CA: accepted (it then says nothing, and we leave).
    expect(
      await probe(cluster.url, { token: TEST_TOKEN, waitMs: 200, tls: { ...trusted, cert: read(node.cert), key: read(node.key) } }),
    ).toMatchObject({ kind: 'open' });
    // Another CA's client certificate, or none: refused at the upgrade, whatever the token.
    for (const url of [cluster.url, ringUrl]) {
      expect(await probe(url, { token: TEST_TOKEN, tls: { ...trusted, cert: read(rogue.cert), key: read(rogue.key) } })).toEqual({
        kind: 'refused',
        status: 403,
      });
      expect(await probe(url, { token: TEST_TOKEN, tls: trusted })).toEqual({ kind: 'refused', status: 403 });
    }
    // A client trusting only the other CA refuses the cluster's servers itself.
    expect(
      await probe(cluster.url, { token: TEST_TOKEN, tls: { ca: read(rogue.ca), cert: read(rogue.cert), key: read(rogue.key) } }),
    ).toMatchObject({ kind: 'error' });
    // Plain ws:// to a TLS port gets nowhere.
    expect((await probe(`ws://127.0.0.1:${cluster.port}`, { token: TEST_TOKEN })).kind).not.toBe('open');
    expect((await cluster.status()).phase, 'all of the above happened while the run trained').toBe('training');

    expect(await cluster.finished()).toEqual([0, 0, 0]);
    expect(cluster.log('coordinator')).toMatch(/client certificate refused/);
    expect(readFileSync(rogueLog, 'utf8')).toMatch(/certificate/);
    const run = latestState(cluster.runDir);
    expect(run.progress.history.at(-1)?.workers).toBe(2);
    const diff = compareStates(reference.tensors, run.tensors);
    expect(diff.maxWeightDiff).toBe(0);
    expect(diff.maskDiffs).toBe(0);
  });
});

describe('a worker under a compromised coordinator', () => {
  it('refuses each invalid command by closing the connection with a reason, stays up, rejoins and still obeys valid ones', async () => {
    const config = smallConfig({ workers: 1 });
    const server = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      verifyClient: ({ req }: { req: IncomingMessage }) => req.headers.authorization === `Bearer ${TEST_TOKEN}`,
    });
    await new Promise((resolve) => server.once('listening', resolve));
    const port = (server.address() as { port: number }).port;
    const log = join(tempRunDir('worker'), '..', 'worker.log');
    const worker = spawnOccam(['worker', '--coordinator', `ws://127.0.0.1:${port}`, '--worker-id', 'w0', '--ring-host', '127.0.0.1'], log);
    /** The worker's next connection, joined and welcomed: its socket, its ring port, and a way to send a command and await the answer. */
    const nextSession = () =>
      new Promise<{ socket: WebSocket; ringPort: number }>((resolve) => {
        server.once('connection', (socket) => {
          socket.once('message', (data: Buffer) => {
            const join = decodeEnvelope(data).message as Messages['join'];
            socket.send(
              encodeEnvelope(
                'welcome',
                { runId: 'run', configJson: JSON.stringify(config), configHash: configHash(config), livenessKey: 'k' },
                1,
              ),
            );
            socket.once('message', () => resolve({ socket, ringPort: join.ringPort })); // ready
          });
        });
      });
    const answer = (socket: WebSocket, frame: Uint8Array) =>
      new Promise<{ closed: [number, string] } | { reply: Envelope }>((resolve) => {
        socket.once('close', (code, reason) => resolve({ closed: [code, reason.toString()] }));
        // The worker's own heartbeats may come first: the answer is the first other message.
        const onMessage = (data: Buffer) => {
          const envelope = decodeEnvelope(data);
          if (envelope.kind === 'heartbeat') return;
          socket.off('message', onMessage);
          resolve({ reply: envelope });
        };
        socket.on('message', onMessage);
        socket.send(frame);
      });
    try {
      const hostile: [Uint8Array, RegExp][] = [
        [encodeEnvelope('computeThresholds', { generation: 0, p: NaN, layers: [0] }, 2), /pruning fraction NaN/],
        [
          encodeEnvelope(
            'formRing',
            { generation: 1, rank: 0, members: [{ workerId: 'someone-else', host: '127.0.0.1', port: 9 }], ringKey: 'k' },
            2,
          ),
          /belongs to someone-else/,
        ],
        [encodeEnvelope('runSteps', { generation: 0, fromStep: 5, toStep: 1 }, 2), /reversed step range/],
        [encodeEnvelope('loadState', { generation: 7, step: 0, initialize: false, state: new Uint8Array(0) }, 2), /generation 7/],
        [encodeEnvelope('stepsDone', { lossSum: 1, samples: 1, times: TIMES, bytesSent: 0, stateDigest: DIGEST }, 2), /only workers send/],
        [Uint8Array.from([0x08, 0x01, 0xff, 0xff]), /malformed/],
      ];
      for (const [frame, reason] of hostile) {
        const { socket } = await nextSession();
        const outcome = await answer(socket, frame);
        expect(outcome).toMatchObject({ closed: [1008, expect.stringMatching(reason)] });
        expect(worker.exitCode).toBeNull();
      }
      // Rejoined once more, it still does what a valid command asks.
      const { socket, ringPort } = await nextSession();
      const ack = await answer(
        socket,
        encodeEnvelope(
          'formRing',
          { generation: 1, rank: 0, members: [{ workerId: 'w0', host: '127.0.0.1', port: ringPort }], ringKey: 'k' },
          2,
        ),
      );
      expect(ack).toMatchObject({ reply: { kind: 'ack', requestId: 2 } });
      const upload = await answer(socket, encodeEnvelope('uploadState', { generation: 1 }, 3));
      expect(upload).toMatchObject({ reply: { kind: 'stateUpload', requestId: 3 } });
      expect(readFileSync(log, 'utf8')).toMatch(/invalid command from the coordinator; closing the connection/);
    } finally {
      worker.kill('SIGKILL');
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a worker that the coordinator keeps refusing gives up, saying why', async () => {
    // An older coordinator: it refuses this worker's protocol version on every join.
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    server.on('connection', (socket) =>
      socket.once('message', () =>
        socket.close(1008, `peer speaks protocol version ${PROTOCOL_VERSION}, this process speaks ${PROTOCOL_VERSION - 1}`),
      ),
    );
    await new Promise((resolve) => server.once('listening', resolve));
    const port = (server.address() as { port: number }).port;
    const worker = new Worker({
      coordinatorUrl: `ws://127.0.0.1:${port}`,
      token: TEST_TOKEN,
      workerId: 'w0',
      ringBindHost: '127.0.0.1',
      ringAdvertiseHost: '127.0.0.1',
      ringPort: 0,
      log: quietLog,
      reconnectGiveUpMs: 500,
      maxMessageBytes: 1 << 20,
    });
    try {
      await expect(worker.run()).rejects.toThrow(
        new RegExp(
          `unreachable for 500 ms \\(last: refused: peer speaks protocol version ${PROTOCOL_VERSION}, this process speaks ${PROTOCOL_VERSION - 1}\\); giving up`,
        ),
      );
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('tokens', () => {
  it('compare in constant time and never match an empty token', () => {
    expect(tokensEqual('secret-token', 'secret-token')).toBe(true);
    expect(tokensEqual('secret-token', 'secret-tokeN')).toBe(false);
    expect(tokensEqual('secret', 'secret-token')).toBe(false);
    expect(tokensEqual('', '')).toBe(false);
  });
});
