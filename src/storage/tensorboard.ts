// TensorBoard event files (runs/<run>/tensorboard/events.out.tfevents.*): the round metrics as
// scalar summaries, so `tensorboard --logdir runs` shows Occam runs beside anything else. A file
// is TFRecords (length, masked CRC32C of the length, an Event protobuf, masked CRC32C of it).
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { writeAtomically } from './atomic-file.ts';

const root = protobuf.loadSync(fileURLToPath(new URL('../../proto/formats/tensorboard.proto', import.meta.url)));
const EventType = root.lookupType('tensorboard.Event');

/** One point of the run: scalars by tag (null values are left out) at a global step. */
export interface ScalarPoint {
  step: number;
  wallTimeMs: number;
  scalars: Record<string, number | null>;
}

/** Appends points to one event file of a folder; `rewrite` replaces the folder's files (after a resume). */
export class EventFileWriter {
  private readonly path: string;

  constructor(
    private readonly dir: string,
    startMs = Date.now(),
  ) {
    this.path = join(dir, `events.out.tfevents.${Math.floor(startMs / 1000)}.${hostname()}`);
  }

  append(point: ScalarPoint): void {
    mkdirSync(this.dir, { recursive: true });
    const first = existsSync(this.path) ? [] : [header(point.wallTimeMs)];
    appendFileSync(this.path, Buffer.concat([...first, record(scalarEvent(point))]));
  }

  rewrite(points: ScalarPoint[]): void {
    mkdirSync(this.dir, { recursive: true });
    for (const name of readdirSync(this.dir)) if (name.includes('tfevents')) rmSync(join(this.dir, name));
    const first = points[0]?.wallTimeMs ?? Date.now();
    writeAtomically(this.path, Buffer.concat([header(first), ...points.map((p) => record(scalarEvent(p)))]));
  }
}

/** The first record of every event file: the format version. */
function header(wallTimeMs: number): Buffer {
  return record(EventType.encode(EventType.fromObject({ wallTime: wallTimeMs / 1000, fileVersion: 'brain.Event:2' })).finish());
}

function scalarEvent(point: ScalarPoint): Uint8Array {
  const value = Object.entries(point.scalars)
    .filter((entry): entry is [string, number] => entry[1] !== null && Number.isFinite(entry[1]))
    .map(([tag, simpleValue]) => ({ tag, simpleValue }));
  return EventType.encode(EventType.fromObject({ wallTime: point.wallTimeMs / 1000, step: point.step, summary: { value } })).finish();
}

/** One TFRecord: uint64 length, masked CRC32C of those 8 bytes, the data, masked CRC32C of the data (all little-endian). */
function record(data: Uint8Array): Buffer {
  const out = Buffer.alloc(8 + 4 + data.length + 4);
  out.writeBigUInt64LE(BigInt(data.length), 0);
  out.writeUInt32LE(maskedCrc(out.subarray(0, 8)), 8);
  out.set(data, 12);
  out.writeUInt32LE(maskedCrc(data), 12 + data.length);
  return out;
}

/** TFRecord's checksum: CRC32C rotated right by 15 bits plus a constant. */
function maskedCrc(data: Uint8Array): number {
  const crc = crc32c(data);
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

// CRC32C (Castagnoli, reflected polynomial 0x82f63b78), byte-wise with a table: event files
// are a few kilobytes, so this is no bottleneck and needs no native module.
const TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
