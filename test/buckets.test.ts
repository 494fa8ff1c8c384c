// Gradient buckets: a step's compacted gradient all-reduced in buckets of whole parameters, last
// layer first, each applied as soon as it is summed, ends every replica on the bits of one
// all-reduce per step, for any bucket size, N = 1…5, through pruning.
import { beforeAll, describe, expect, it } from 'vitest';
import { loadDataSource } from '../src/training/data/load.ts';
import { selectBackend } from '../src/training/engine.ts';
import { createModel } from '../src/training/models/create.ts';
import { Replica } from '../src/training/replica.ts';
import { localGroup, runLocal } from './helpers/local-runs.ts';
import { smallConfig, smallGptConfig } from './helpers/runs.ts';

beforeAll(async () => {
  await selectBackend('cpu');
});

/** The committed digest of a whole run (3 rounds with pruning) on N in-process replicas. */
async function digestOf(workers: number, bucketBytes: number, chunkFloats: number, gpt = false): Promise<string> {
  const overrides = { rounds: 3, bucketBytes, evalLimit: 100 };
  const config = gpt
    ? smallGptConfig({ ...overrides, roundSteps: 4 })
    : smallConfig({ ...overrides, units: 16, trainLimit: 400, batchSize: 60 });
  const run = await runLocal(() => localGroup(config, workers, { chunkFloats }), config);
  expect(run.summary.rounds).toBe(3);
  return run.digest;
}

describe('bucketed all-reduce', () => {
  for (let workers = 1; workers <= 5; workers++) {
    it(`N = ${workers}: buckets of 4 B, 1 KB and 40 KB give the bits of one all-reduce per step`, async () => {
      const serial = await digestOf(workers, 0, 97);
      for (const bucketBytes of [4, 1000, 40_000]) {
        expect(await digestOf(workers, bucketBytes, 97), `bucketBytes ${bucketBytes}`).toBe(serial);
      }
    });
  }

  it('a GPT (embeddings, attention, norms) on 3 replicas: the same bits for any bucket size, at any ring frame size', async () => {
    for (const [bucketBytes, chunkFloats] of [
      [4, 65536],
      [2048, 50],
      [100_000, 333],
    ]) {
      const serial = await digestOf(3, 0, chunkFloats, true);
      expect(await digestOf(3, bucketBytes, chunkFloats, true), `bucketBytes ${bucketBytes}, chunkFloats ${chunkFloats}`).toBe(serial);
    }
  });

  it('buckets leave during the backward pass, in order, before the first layers have their gradients', async () => {
    const config = smallGptConfig({ layers: 2, bucketBytes: 4 });
    const data = loadDataSource(config);
    const replica = new Replica(createModel(config, data), data, config);
    const buckets = replica.gradientBuckets();
    expect(buckets.length).toBe(replica.params.length);
    const buffer = new Float32Array(replica.gradientLength + 1);
    const last = buckets[buckets.length - 1]; // the first parameter: its gradient is finished last
    const seen: { k: number; lastBucketEmpty: boolean; lossSlot: number }[] = [];
    const onBucket = (k: number) =>
      seen.push({
        k,
        lastBucketEmpty: buffer.subarray(last.start, last.end).every((x) => x === 0),
        lossSlot: buffer[replica.gradientLength],
      });
    const shard = await replica.shardGradient(0, 0, 1, buffer, { buckets, onBucket });
    expect(seen.map((s) => s.k)).toEqual(buckets.map((_, k) => k));
    expect(seen[0].lastBucketEmpty).toBe(true);
    expect(seen[0].lossSlot).toBe(shard.lossSum);
    expect(buffer.subarray(last.start, last.end).some((x) => x !== 0)).toBe(true);
    // The same gradient as without the taps, bit for bit.
    const plain = new Float32Array(replica.gradientLength + 1);
    await replica.shardGradient(0, 0, 1, plain);
    expect(Buffer.from(buffer.buffer, 0, 4 * replica.gradientLength).equals(Buffer.from(plain.buffer, 0, 4 * replica.gradientLength))).toBe(
      true,
    );
    replica.dispose();
  });
});
