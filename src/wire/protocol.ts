// The control-plane wire contract in TypeScript: the messages of proto/occam.proto, and one
// encoder/decoder pair. Decoding never throws anything but ProtocolError, so a malformed frame
// closes one connection with a reason and never takes a process down.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

// 2: workers may ask to leave (Leave).
export const PROTOCOL_VERSION = 2;

export interface StepTimes {
  steps: number;
  computeMs: number;
  allreduceMs: number;
  updateMs: number;
  waitMs: number;
}
export interface EvalSumsMessage {
  lossSum: number;
  correct: number;
  count: number;
}
export interface Peer {
  workerId: string;
  host: string;
  port: number;
}
export interface LayerInfo {
  name: string;
  shape: number[];
  prunable: boolean;
}

/** Every message, by the name of its Envelope field. */
export interface Messages {
  join: { workerId: string; ringHost: string; ringPort: number };
  welcome: { runId: string; configJson: string; configHash: string };
  ready: {
    data: { description: string; trainCount: number; holdbackCount: number; testCount: number; stepsPerEpoch: number };
    layers: LayerInfo[];
    backend: string;
  };
  formRing: { generation: number; rank: number; members: Peer[] };
  ack: Record<string, never>;
  loadState: { generation: number; step: number; initialize: boolean; state: Uint8Array };
  stateReport: { maskDigest: string; stateDigest: string; activePerLayer: number[]; activeParams: number; step: number };
  runSteps: { generation: number; fromStep: number; toStep: number };
  stepsDone: { lossSum: number; samples: number; times: StepTimes; bytesSent: number; stateDigest: string };
  stepProgress: { step: number; loss: number; times: StepTimes; bytesSent: number };
  evaluate: { generation: number };
  evalResult: { holdback: EvalSumsMessage; test: EvalSumsMessage };
  computeThresholds: { generation: number; p: number; layers: number[] };
  thresholds: { layers: number[]; values: number[] };
  prune: { generation: number; thresholds: number[] };
  uploadState: { generation: number };
  stateUpload: { state: Uint8Array; stateDigest: string; step: number };
  heartbeat: { sentMs: number };
  error: { code: string; message: string };
  shutdown: { reason: string };
  leave: { reason: string };
}

export type MessageKind = keyof Messages;

export interface Envelope<K extends MessageKind = MessageKind> {
  protocol: number;
  requestId: number;
  kind: K;
  message: Messages[K];
}

export class ProtocolError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

const protoPath = fileURLToPath(new URL('../../proto/occam.proto', import.meta.url));
const EnvelopeType = protobuf.loadSync(protoPath).lookupType('occam.v1.Envelope');
const KINDS = new Set<string>(EnvelopeType.oneofs.body.fieldsArray.map((f) => f.name));

export function encodeEnvelope<K extends MessageKind>(kind: K, message: Messages[K], requestId = 0): Uint8Array {
  const object = { protocol: PROTOCOL_VERSION, requestId, [kind]: message };
  return EnvelopeType.encode(EnvelopeType.fromObject(object)).finish();
}

/** Decodes and checks one frame; every failure is a ProtocolError with a code and a clear message. */
export function decodeEnvelope(bytes: Uint8Array): Envelope {
  let object: Record<string, unknown>;
  try {
    const decoded = EnvelopeType.decode(bytes);
    object = EnvelopeType.toObject(decoded, { longs: Number, defaults: true, arrays: true, oneofs: true });
  } catch (error) {
    throw new ProtocolError('malformed', `malformed message (${(error as Error).message})`);
  }
  const protocol = object.protocol as number;
  if (protocol !== PROTOCOL_VERSION) {
    throw new ProtocolError('protocol_mismatch', `peer speaks protocol version ${protocol}, this process speaks ${PROTOCOL_VERSION}`);
  }
  const kind = object.body as string | undefined;
  if (!kind || !KINDS.has(kind)) throw new ProtocolError('malformed', 'message has no body');
  return { protocol, requestId: object.requestId as number, kind: kind as MessageKind, message: object[kind] as Messages[MessageKind] };
}

/** Narrows an envelope to one kind. */
export function isKind<K extends MessageKind>(envelope: Envelope, kind: K): envelope is Envelope<K> {
  return envelope.kind === kind;
}
