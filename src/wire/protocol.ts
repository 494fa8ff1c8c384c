// The control-plane wire contract in TypeScript: the messages of proto/occam.proto, and one
// encoder/decoder pair. Decoding never throws anything but ProtocolError, so a malformed frame
// closes one connection with a reason and never takes a process down.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { REPLY_KIND, type Messages, type RingHello } from './messages.generated.ts';

// 2: workers may ask to leave (Leave). 3: ring hellos in protobuf; StateReport without mask_digest.
// 4: each worker's liveness connection (LivenessHello; Heartbeat.busy_ms).
export const PROTOCOL_VERSION = 4;

export type { EvalSums as EvalSumsMessage, LayerInfo, Messages, Peer, RingHello, StepTimes } from './messages.generated.ts';
export { REPLY_KIND };

/** A command the coordinator sends, and the kind of the reply it expects. */
export type Command = keyof typeof REPLY_KIND;
export type ReplyOf<C extends Command> = (typeof REPLY_KIND)[C];

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
const root = protobuf.loadSync(protoPath);
const EnvelopeType = root.lookupType('occam.v1.Envelope');
const RingHelloType = root.lookupType('occam.v1.RingHello');
const RingAcceptedType = root.lookupType('occam.v1.RingAccepted');
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

/** A ring link pair's byte counts in one generation: what a stall is judged by. */
export interface RingCounters {
  generation: number;
  sentToNextBytes: number;
  receivedFromPreviousBytes: number;
}

/** A heartbeat now: with the sender's busy time, and its ring counters when it is in a ring. */
export function heartbeat(busyMs = 0, ring: RingCounters | null = null): Messages['heartbeat'] {
  return {
    sentMs: Date.now(),
    busyMs,
    ringGeneration: ring?.generation ?? 0,
    sentToNextBytes: ring?.sentToNextBytes ?? 0,
    receivedFromPreviousBytes: ring?.receivedFromPreviousBytes ?? 0,
  };
}

/** The first frame of a ring link. */
export function encodeRingHello(hello: RingHello): Uint8Array {
  return RingHelloType.encode(RingHelloType.fromObject(hello)).finish();
}

/** A ring hello, or null for anything that is not one (or names an over-long worker id). */
export function decodeRingHello(bytes: Uint8Array): RingHello | null {
  try {
    const hello = RingHelloType.toObject(RingHelloType.decode(bytes), { longs: Number, defaults: true }) as RingHello;
    return hello.workerId.length > 0 && hello.workerId.length <= 128 ? hello : null;
  } catch {
    return null;
  }
}

/** The next rank's answer to an accepted hello. */
export const RING_ACCEPTED: Uint8Array = RingAcceptedType.encode({}).finish();

export function isRingAccepted(bytes: Uint8Array): boolean {
  return bytes.length === RING_ACCEPTED.length && bytes.every((b, i) => b === RING_ACCEPTED[i]);
}
