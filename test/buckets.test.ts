// Gradient buckets: a step's compacted gradient all-reduced in buckets of whole parameters, last
// layer first, each applied as soon as it is summed, ends every replica on the bits of one
// all-reduce per step, for any bucket size, N = 1…5, through pruning.
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../src/training/engine.ts';
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
});
