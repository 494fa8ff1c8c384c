import { beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import { selectBackend } from '../src/training/engine.ts';
import { createModel } from '../src/training/models/create.ts';
import { Replica } from '../src/training/replica.ts';
import { trainSteps } from '../src/training/step-loop.ts';
import { maskedState, prune, weightsNow } from './helpers/runs.ts';

beforeAll(async () => {
  await selectBackend('cpu');
});

function replicaFor(overrides: Record<string, unknown>): Replica {
  const config = resolveConfig({ units: 32, trainLimit: 600, batchSize: 64, ...overrides });
  const data = loadDataSource(config);
  return new Replica(createModel(config, data), data, config);
}

function train(replica: Replica, from: number, count: number): Promise<unknown> {
  return trainSteps(replica, { fromStep: from, toStep: from + count });
}

describe('masked training on a replica', () => {
  for (const model of ['mlp', 'cnn'] as const) {
    it(`${model}: pruned weights and their Adam moments stay exactly zero through real steps`, async () => {
      const replica = replicaFor({ model, units: model === 'cnn' ? 4 : 32 });
      await train(replica, 0, 3);
      await prune(replica, 0.5);
      const before = await weightsNow(replica);
      await train(replica, 3, 4);
      for (const { layer, pruned, nonZeroPruned, moved } of await maskedState(replica, before)) {
        expect(nonZeroPruned, layer).toBe(0);
        expect(pruned, layer).toBeGreaterThan(0);
        expect(moved, layer).toBeGreaterThan(0);
      }
    });
  }

  it('the compacted gradient carries only kept positions (the loss beside it), and masked positions get no gradient', async () => {
    const replica = replicaFor({});
    const counts = () => replica.activeCounts();
    expect(replica.gradientLength).toBe(counts().activeParams);
    await prune(replica, 0.9);
    expect(replica.gradientLength).toBe(counts().activeParams);
    expect(counts().prunableKept / counts().prunableTotal).toBeCloseTo(0.1, 2);
    const { gradient, lossSum } = await replica.shardGradient(0, 0, 1);
    expect(gradient.length).toBe(counts().activeParams);
    expect(lossSum).toBeGreaterThan(0); // the batch's loss sum
  });

  it('shards of a global batch sum to the whole batch (same gradient for any worker count)', async () => {
    const replica = replicaFor({ dropout: 0.2 });
    const whole = (await replica.shardGradient(5, 0, 1)).gradient;
    for (const world of [2, 3]) {
      const sum = new Float32Array(whole.length);
      for (let rank = 0; rank < world; rank++) {
        const part = (await replica.shardGradient(5, rank, world)).gradient;
        for (let i = 0; i < sum.length; i++) sum[i] += part[i];
      }
      let maxError = 0;
      for (let i = 0; i < sum.length; i++) maxError = Math.max(maxError, Math.abs(sum[i] - whole[i]));
      expect(maxError).toBeLessThan(1e-3);
    }
  });

  it('state round-trips through safetensors bytes and a mismatched state is refused untouched', async () => {
    const a = replicaFor({});
    await train(a, 0, 2);
    await prune(a, 0.3);
    const b = replicaFor({});
    expect(await b.stateDigest()).not.toBe(await a.stateDigest());
    b.loadState(await a.encodeState());
    expect(await b.stateDigest()).toBe(await a.stateDigest());
    expect(b.masks).toEqual(a.masks);
    const other = replicaFor({ units: 16 });
    const digest = await other.stateDigest();
    const state = await a.encodeState();
    expect(() => other.loadState(state)).toThrow(/shape/);
    expect(await other.stateDigest()).toBe(digest);
  });

  it('evaluation splits partial sums that add up over ranks', async () => {
    const replica = replicaFor({});
    const whole = await replica.evaluate('test', 0, 1);
    const parts = await Promise.all([0, 1, 2].map((rank) => replica.evaluate('test', rank, 3)));
    expect(parts.reduce((n, p) => n + p.count, 0)).toBe(whole.count);
    expect(parts.reduce((n, p) => n + p.lossSum, 0)).toBeCloseTo(whole.lossSum, 2);
    expect(parts.reduce((n, p) => n + p.correct, 0)).toBe(whole.correct);
  });
});
