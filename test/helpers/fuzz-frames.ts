// fast-check arbitraries for hostile input: every control message kind with arbitrary field
// values, ring hellos and ring frames, byte-level mutations of valid ones, and random bytes.
import fc from 'fast-check';
import { encodeEnvelope, encodeRingHello, type MessageKind, type Messages } from '../../src/wire/protocol.ts';
import { RING_HEADER_BYTES } from '../../src/wire/ring.ts';

const u32 = fc.oneof(fc.constantFrom(0, 1, 2, 3, 65535, 2 ** 31, 2 ** 32 - 1), fc.nat({ max: 2 ** 32 - 1 }));
const u64 = fc.oneof(fc.constantFrom(0, 1, 15, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.maxSafeNat());
const double = fc.oneof(fc.constantFrom(NaN, Infinity, -Infinity, -0, -1, 0.4, 1e308), fc.double());
const text = fc.oneof(fc.constantFrom('', 'w0', 'w1', '127.0.0.1', 'a/b@c', '0123456789abcdef'), fc.string({ maxLength: 40 }));
const bytes = fc.uint8Array({ maxLength: 256 });
const times = fc.record({ steps: u32, computeMs: double, allreduceMs: double, updateMs: double, waitMs: double });
const sums = fc.record({ lossSum: double, correct: double, count: u64 });
const peer = fc.record({ workerId: text, host: text, port: u32 });

/** One message of every kind the protocol has, with arbitrary field values. */
const messages: { [K in MessageKind]: fc.Arbitrary<Messages[K]> } = {
  join: fc.record({ workerId: text, ringHost: text, ringPort: u32 }),
  welcome: fc.record({ runId: text, configJson: text, configHash: text, livenessKey: text }),
  ready: fc.record({
    data: fc.record({ description: text, trainCount: u64, holdbackCount: u64, testCount: u64, stepsPerEpoch: u64 }),
    layers: fc.array(fc.record({ name: text, shape: fc.array(u32, { maxLength: 4 }), prunable: fc.boolean() }), { maxLength: 6 }),
    backend: text,
    matmulFlops: double,
  }),
  formRing: fc.record({ generation: u32, rank: u32, members: fc.array(peer, { maxLength: 5 }), ringKey: text }),
  ack: fc.constant({}),
  loadState: fc.record({ generation: u32, step: u64, initialize: fc.boolean(), state: bytes }),
  stateReport: fc.record({ stateDigest: text, activePerLayer: fc.array(u64, { maxLength: 6 }), activeParams: u64, step: u64 }),
  runSteps: fc.record({ generation: u32, fromStep: u64, toStep: u64 }),
  stepsDone: fc.record({ lossSum: double, samples: u64, times, bytesSent: u64, stateDigest: text }),
  stepProgress: fc.record({ step: u64, loss: double, times, bytesSent: u64 }),
  evaluate: fc.record({ generation: u32 }),
  evalResult: fc.record({ holdback: sums, test: sums }),
  computeThresholds: fc.record({ generation: u32, p: double, layers: fc.array(u32, { maxLength: 8 }) }),
  thresholds: fc.record({ layers: fc.array(u32, { maxLength: 8 }), values: fc.array(double, { maxLength: 8 }) }),
  prune: fc.record({ generation: u32, thresholds: fc.array(double, { maxLength: 8 }) }),
  uploadState: fc.record({ generation: u32 }),
  stateUpload: fc.record({ state: bytes, stateDigest: text, step: u64 }),
  heartbeat: fc.record({ sentMs: double, busyMs: double, ringGeneration: u32, sentToNextBytes: u64, receivedFromPreviousBytes: u64 }),
  ringStall: fc.record({ generation: u32, waitedMs: double, sentToNextBytes: u64, receivedFromPreviousBytes: u64 }),
  error: fc.record({ code: text, message: text }),
  shutdown: fc.record({ reason: text }),
  leave: fc.record({ reason: text }),
  livenessHello: fc.record({ workerId: text, key: text }),
};

/** A well-formed envelope of any kind (request ids small, so some match a pending command). */
export const validEnvelope: fc.Arbitrary<Uint8Array> = fc
  .constantFrom(...(Object.keys(messages) as MessageKind[]))
  .chain((kind) => fc.tuple(fc.constant(kind), messages[kind] as fc.Arbitrary<Messages[MessageKind]>, fc.nat({ max: 4 })))
  .map(([kind, message, requestId]) => encodeEnvelope(kind, message, requestId));

type Mutation =
  | { op: 'set'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; count: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 16 }) }),
);

/** Applies byte-level mutations (positions wrap around the current length). */
function mutate(base: Uint8Array, mutations: Mutation[]): Uint8Array {
  let bytes = Uint8Array.from(base);
  for (const m of mutations) {
    const at = bytes.length === 0 ? 0 : m.at % bytes.length;
    if (m.op === 'set' && bytes.length > 0) bytes[at] = m.value;
    if (m.op === 'truncate') bytes = bytes.slice(0, at);
    if (m.op === 'insert') bytes = Uint8Array.from([...bytes.subarray(0, at), ...m.bytes, ...bytes.subarray(at)]);
    if (m.op === 'delete') bytes = Uint8Array.from([...bytes.subarray(0, at), ...bytes.subarray(at + m.count)]);
  }
  return bytes;
}

export function mutated(base: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(base, fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([bytes, mutations]) => mutate(bytes, mutations));
}

export const randomBytes = fc.uint8Array({ maxLength: 512 });

/** What a coordinator's control port receives: valid, mutated and random envelopes. */
export const controlFrame: fc.Arbitrary<Uint8Array> = fc.oneof(
  { arbitrary: validEnvelope, weight: 3 },
  { arbitrary: mutated(validEnvelope), weight: 4 },
  { arbitrary: randomBytes, weight: 1 },
);

/** A ring frame: header (op id, phase, iteration, segment, chunk) and float payload, fields near the valid ones. */
export const ringFrame: fc.Arbitrary<Uint8Array> = fc
  .record({
    op: fc.oneof(fc.constantFrom(0, 1, 2, 3), u32),
    phase: fc.oneof(fc.constantFrom(0, 1), fc.integer({ min: 0, max: 65535 })),
    iteration: fc.oneof(fc.constantFrom(0, 1), fc.integer({ min: 0, max: 65535 })),
    segment: fc.oneof(fc.constantFrom(0, 1), u32),
    chunk: fc.oneof(fc.constantFrom(0, 1), u32),
    values: fc.array(fc.float(), { maxLength: 64 }),
  })
  .map(({ op, phase, iteration, segment, chunk, values }) => {
    const frame = Buffer.alloc(RING_HEADER_BYTES + 4 * values.length);
    frame.writeUInt32LE(op, 0);
    frame.writeUInt16LE(phase, 4);
    frame.writeUInt16LE(iteration, 6);
    frame.writeUInt32LE(segment, 8);
    frame.writeUInt32LE(chunk, 12);
    values.forEach((v, i) => frame.writeFloatLE(v, RING_HEADER_BYTES + 4 * i));
    return new Uint8Array(frame);
  });

/** A ring hello, honest-looking (the live generation and ranks are likely) or not. */
export function ringHello(generation: number, workerIds: string[]): fc.Arbitrary<Uint8Array> {
  const hello = fc.record({
    generation: fc.oneof(fc.constantFrom(generation, generation + 1, generation - 1), fc.integer()),
    rank: fc.oneof(fc.constantFrom(0, 1, 2), fc.integer()),
    workerId: fc.oneof(fc.constantFrom(...workerIds, ''), fc.string({ maxLength: 20 })),
    key: fc.string({ maxLength: 24 }),
  });
  return fc.oneof(
    hello.map((h) => encodeRingHello(h)),
    fc.uint8Array({ maxLength: 64 }),
  );
}

/** What a worker's ring port receives first and after: hellos, ring frames, their mutations, random bytes. */
export function ringPortFrame(generation: number, workerIds: string[]): fc.Arbitrary<Uint8Array> {
  const hello = ringHello(generation, workerIds);
  return fc.oneof(
    { arbitrary: hello, weight: 3 },
    { arbitrary: mutated(hello), weight: 2 },
    { arbitrary: ringFrame, weight: 3 },
    { arbitrary: mutated(ringFrame), weight: 2 },
    { arbitrary: randomBytes, weight: 1 },
  );
}
