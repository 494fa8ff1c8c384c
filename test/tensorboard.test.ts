// TensorBoard event files, read back by a reader written here from the specifications alone —
// TFRecord framing (tensorflow/core/lib/io/record_writer.cc: length, masked CRC32C, data, masked
// CRC32C) and the Event / Summary protobuf messages — sharing no code with Occam's writer.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/training/engine.ts';
import { type LocalRun, localGroup, runLocal } from './helpers/local-runs.ts';
import { smallConfig } from './helpers/runs.ts';

/** CRC32C bit by bit (no table), then TFRecord's mask. */
function maskedCrc32c(bytes: Uint8Array): number {
  let crc = ~0 >>> 0;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  crc = ~crc >>> 0;
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) % 2 ** 32;
}

/** The data of every record; throws on a bad checksum or a truncated record. */
function readRecords(file: Buffer): Buffer[] {
  const records: Buffer[] = [];
  for (let at = 0; at < file.length; ) {
    if (at + 12 > file.length) throw new Error(`truncated record header at byte ${at}`);
    const length = Number(file.readBigUInt64LE(at));
    if (file.readUInt32LE(at + 8) !== maskedCrc32c(file.subarray(at, at + 8))) throw new Error(`bad length checksum at byte ${at}`);
    const data = file.subarray(at + 12, at + 12 + length);
    if (data.length !== length || at + 16 + length > file.length) throw new Error(`truncated record at byte ${at}`);
    if (file.readUInt32LE(at + 12 + length) !== maskedCrc32c(data)) throw new Error(`bad data checksum at byte ${at}`);
    records.push(data);
    at += 16 + length;
  }
  return records;
}

type Field = { number: number; wire: number; value: bigint | Buffer };

/** Protobuf wire format: varints (0), 64-bit (1), length-delimited (2), 32-bit (5). */
function fields(bytes: Buffer): Field[] {
  const out: Field[] = [];
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const byte = bytes[at++];
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
    }
  };
  while (at < bytes.length) {
    const key = Number(varint());
    const wire = key & 7;
    const number = key >>> 3;
    if (wire === 0) out.push({ number, wire, value: varint() });
    else if (wire === 1 || wire === 5) {
      const size = wire === 1 ? 8 : 4;
      out.push({ number, wire, value: bytes.subarray(at, at + size) });
      at += size;
    } else if (wire === 2) {
      const length = Number(varint());
      out.push({ number, wire, value: bytes.subarray(at, at + length) });
      at += length;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

interface Event {
  wallTime: number;
  step: number;
  fileVersion?: string;
  scalars: Map<string, number>;
}

/** Event: wall_time = 1 (double), step = 2 (int64), file_version = 3, summary = 5; Summary.value = 1; Value: tag = 1, simple_value = 2 (float). */
function parseEvent(bytes: Buffer): Event {
  const event: Event = { wallTime: 0, step: 0, scalars: new Map() };
  for (const f of fields(bytes)) {
    if (f.number === 1) event.wallTime = (f.value as Buffer).readDoubleLE(0);
    if (f.number === 2) event.step = Number(f.value as bigint);
    if (f.number === 3) event.fileVersion = (f.value as Buffer).toString('utf8');
    if (f.number === 5) {
      for (const value of fields(f.value as Buffer).filter((v) => v.number === 1)) {
        const parts = fields(value.value as Buffer);
        const tag = parts.find((p) => p.number === 1);
        const simple = parts.find((p) => p.number === 2);
        if (!tag || !simple) throw new Error('a summary value without its tag or simple_value');
        event.scalars.set((tag.value as Buffer).toString('utf8'), (simple.value as Buffer).readFloatLE(0));
      }
    }
  }
  return event;
}

describe('TensorBoard event files', () => {
  let run: LocalRun;
  let file: Buffer;

  beforeAll(async () => {
    await selectBackend('cpu');
    const config = smallConfig({ units: 16, trainLimit: 400, batchSize: 64, evalLimit: 100, rounds: 3 });
    run = await runLocal(() => localGroup(config, 2), config);
    const dir = join(run.runDir, 'tensorboard');
    const names = readdirSync(dir);
    expect(names).toHaveLength(1);
    expect(names[0]).toMatch(/^events\.out\.tfevents\.\d+\./);
    file = readFileSync(join(dir, names[0]));
  });

  it('parse with an independent reader and carry every scalar of every round at its global step', () => {
    const events = readRecords(file).map(parseEvent);
    expect(events[0].fileVersion).toBe('brain.Event:2');
    const rounds = events.slice(1);
    expect(rounds.map((e) => e.step)).toEqual(run.metrics.map((m) => m.step));
    rounds.forEach((event, i) => {
      const m = run.metrics[i];
      const expected: Record<string, number | null> = {
        'loss/train': m.trainLoss,
        'loss/holdback': m.holdbackLoss,
        'loss/test': m.testLoss,
        'accuracy/holdback': m.holdbackAccuracy,
        'accuracy/test': m.testAccuracy,
        'pruning/weights_kept': m.weightsKept,
        'pruning/p': m.p,
        'pruning/active_params': m.activeParams,
        'compute/active_weights_x_samples': m.compute,
        'step_ms/compute': m.stepMs.compute,
        'step_ms/allreduce': m.stepMs.allreduce,
        'step_ms/wait': m.stepMs.wait,
        'step_ms/update': m.stepMs.update,
        'network/bytes_per_step': m.bytesPerStep,
        'run/round': i + 1,
        'run/workers': 2,
      };
      for (const [tag, value] of Object.entries(expected)) {
        expect(event.scalars.has(tag), `round ${i + 1}: ${tag}`).toBe(true);
        expect(event.scalars.get(tag), `round ${i + 1}: ${tag}`).toBe(Math.fround(value as number));
      }
      expect(event.scalars.get('throughput/samples_per_s')).toBeGreaterThan(0);
      expect(event.scalars.has('throughput/tokens_per_s'), 'no tokens/s for an image model').toBe(false);
      expect(event.wallTime).toBeGreaterThan(1.7e9);
    });
  });

  it('the reader is not lenient: one flipped byte fails its checksum', () => {
    const damaged = Buffer.from(file);
    damaged[damaged.length - 10] ^= 0x01;
    expect(() => readRecords(damaged)).toThrow(/checksum/);
  });
});
