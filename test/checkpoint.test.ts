import { existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointNames, readLatestCheckpoint, writeCheckpoint } from '../src/storage/checkpoint.ts';
import { resolveConfig } from '../src/config.ts';
import { decodeSafetensors, encodeSafetensors } from '../src/storage/safetensors.ts';
import { tempRunDir } from './helpers/runs.ts';

const config = resolveConfig({});

function writeThree(root: string): string[] {
  const paths: string[] = [];
  for (let round = 0; round < 3; round++) {
    const state = encodeSafetensors([{ name: 'w', shape: [4], data: Float32Array.from([round, 1, 2, 3]) }]);
    paths.push(
      writeCheckpoint(root, { round, step: round * 10, configHash: 'h', config, progress: { round } }, state, `digest-${round}`, 5),
    );
  }
  return paths;
}

describe('checkpoints', () => {
  it('are written atomically, keep the newest K, and read back verified', () => {
    const root = tempRunDir('checkpoints');
    for (let round = 0; round < 6; round++) {
      const state = encodeSafetensors([{ name: 'w', shape: [1], data: Float32Array.from([round]) }]);
      writeCheckpoint(root, { round, step: round, configHash: 'h', config, progress: { round } }, state, 'd', 3);
    }
    expect(checkpointNames(root)).toHaveLength(3);
    expect(readdirSync(root).filter((n) => n.startsWith('.tmp'))).toHaveLength(0);
    const latest = readLatestCheckpoint<{ round: number }>(root, () => {});
    expect(latest?.manifest.progress.round).toBe(5);
    expect(decodeSafetensors(latest!.state).tensors[0].data[0]).toBe(5);
  });

  const corruptions: [string, (path: string) => void, RegExp][] = [
    ['truncated state file', (p) => truncateSync(join(p, 'state.safetensors'), 20), /has 20 bytes, the manifest says \d+ \(truncated\?\)/],
    [
      'flipped byte',
      (p) => {
        const file = join(p, 'state.safetensors');
        const bytes = readFileSync(file);
        bytes[bytes.length - 3] ^= 0x40;
        writeFileSync(file, bytes);
      },
      /does not match its checksum/,
    ],
    ['missing manifest', (p) => rmSync(join(p, 'manifest.json')), /manifest.json is missing/],
    ['garbled manifest', (p) => writeFileSync(join(p, 'manifest.json'), '{"format": "occam-checkpoint", '), /not valid JSON/],
  ];
  for (const [name, corrupt, reason] of corruptions) {
    it(`a ${name} is detected, the previous checkpoint is used, and nothing is overwritten`, () => {
      const root = tempRunDir('checkpoints');
      const [, second, third] = writeThree(root);
      const before = readFileSync(join(second, 'state.safetensors'));
      corrupt(third);
      const reports: string[] = [];
      const latest = readLatestCheckpoint<{ round: number }>(root, (path, why) => reports.push(`${path}: ${why}`));
      expect(reports).toHaveLength(1);
      expect(reports[0]).toMatch(reason);
      expect(latest?.path).toBe(second);
      expect(latest?.manifest.progress.round).toBe(1);
      expect(readFileSync(join(second, 'state.safetensors'))).toEqual(before);
      // The corrupt one is kept aside for inspection, out of the way of a new commit of its round.
      expect(existsSync(third)).toBe(false);
      expect(readdirSync(root).filter((n) => n.startsWith('corrupt-ckpt-r000002'))).toHaveLength(1);
      const state = encodeSafetensors([{ name: 'w', shape: [1], data: Float32Array.from([9]) }]);
      writeCheckpoint(root, { round: 2, step: 20, configHash: 'h', config, progress: { round: 2 } }, state, 'd', 5);
      expect(readdirSync(root).filter((n) => n.startsWith('corrupt-'))).toHaveLength(1);
    });
  }
});

describe('safetensors', () => {
  it('round-trips and refuses malformed bytes with one clear error', () => {
    const tensors = [
      { name: 'a', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
      { name: 'm', shape: [3], data: Uint8Array.from([1, 0, 1]) },
    ];
    const bytes = encodeSafetensors(tensors, { k: 'v' });
    const decoded = decodeSafetensors(bytes);
    expect(decoded.metadata).toEqual({ k: 'v' });
    expect(Array.from(decoded.tensors[0].data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((8 + Number(bytes.readBigUInt64LE(0))) % 8).toBe(0);
    expect(() => decodeSafetensors(bytes.subarray(0, 5))).toThrow(/too short/);
    expect(() => decodeSafetensors(bytes.subarray(0, bytes.length - 4))).toThrow(/lies outside the data/);
    const badHeader = Buffer.from(bytes);
    badHeader[8] = 0x78; // 'x' where the header's '{' was
    expect(() => decodeSafetensors(badHeader)).toThrow(/safetensors: header is not valid JSON/);
  });

  it('refuses entries that alias the same bytes (a small file that would decode to a huge state)', () => {
    const file = (header: object, dataBytes: number) => {
      const text = Buffer.from(JSON.stringify(header));
      const size = Buffer.alloc(8);
      size.writeBigUInt64LE(BigInt(text.length));
      return Buffer.concat([size, text, Buffer.alloc(dataBytes)]);
    };
    // 64 entries over one 4 KiB region: decoding would copy it 64 times.
    const aliased = Object.fromEntries(
      Array.from({ length: 64 }, (_, i) => [`t${i}`, { dtype: 'F32', shape: [1024], data_offsets: [0, 4096] }]),
    );
    expect(() => decodeSafetensors(file(aliased, 4096))).toThrow(/tensors 't\d+' and 't\d+' overlap \(bytes 0\.\.4096 and 0\.\.4096\)/);
    // The size of the report's attack: 64 entries over one 16 MiB region (1 GiB once decoded) is
    // refused before anything is copied: memory grows by far less than one more copy of the file.
    const MiB = 2 ** 20;
    const huge = Object.fromEntries(
      Array.from({ length: 64 }, (_, i) => [`t${i}`, { dtype: 'F32', shape: [4 * MiB], data_offsets: [0, 16 * MiB] }]),
    );
    const upload = file(huge, 16 * MiB);
    const rssBefore = process.memoryUsage().rss;
    expect(() => decodeSafetensors(upload)).toThrow(/overlap/);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(8 * MiB);
    // Partly overlapping entries too; disjoint and empty ones are fine.
    const partial = { a: { dtype: 'U8', shape: [8], data_offsets: [0, 8] }, b: { dtype: 'U8', shape: [8], data_offsets: [4, 12] } };
    const fine = { a: { dtype: 'U8', shape: [8], data_offsets: [0, 8] }, e: { dtype: 'U8', shape: [0], data_offsets: [4, 4] } };
    expect(() => decodeSafetensors(file(partial, 12))).toThrow(/tensors 'a' and 'b' overlap/);
    expect(decodeSafetensors(file(fine, 12)).tensors.map((t) => t.name)).toEqual(['a', 'e']);
  });
});
