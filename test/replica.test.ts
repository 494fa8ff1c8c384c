import * as tf from '@tensorflow/tfjs-core';
import { isBlasAvailable } from '@occam/blas';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import { selectBackend } from '../src/training/engine.ts';
import { createModel } from '../src/training/models/create.ts';
import { convRelu, denseRelu } from '../src/training/models/relu-layers.ts';
import { Replica } from '../src/training/replica.ts';
import { Rng } from '../src/training/rng.ts';
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

describe('fused dense and convolution ReLU layers (host loops on cpu and blas)', () => {
  const backends = isBlasAvailable() ? (['cpu', 'blas'] as const) : (['cpu'] as const);
  for (const backend of backends) {
    it(`${backend}: relu(x·W + b)·noise and its kernel and bias gradients equal TF.js's ops`, async () => {
      await selectBackend(backend);
      try {
        const rng = new Rng(3);
        const random = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * rng.normal());
        const [rows, inputs, units] = [9, 13, 21];
        const x = tf.tensor2d(random(rows * inputs, 1), [rows, inputs]);
        const kernel = tf.tensor2d(random(inputs * units, 0.5), [inputs, units]);
        const bias = tf.tensor1d(random(units, 0.5));
        const upstream = tf.tensor2d(random(rows * units, 1), [rows, units]);
        const dropped = Float32Array.from({ length: rows * units }, (_, i) => (i % 4 === 1 ? 0 : 1.25));
        for (const noise of [null, dropped]) {
          const plain = (w: tf.Tensor, b: tf.Tensor) => {
            const hidden = tf.relu(tf.add(tf.matMul(x, w as tf.Tensor2D), b));
            return noise ? tf.mul(hidden, tf.tensor2d(noise, [rows, units])) : hidden;
          };
          const fused = (w: tf.Tensor, b: tf.Tensor) => denseRelu(x, w as tf.Tensor2D, b as tf.Tensor1D, noise);
          const weigh = (f: typeof plain) => (w: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(w, b), upstream));
          const close = (a: tf.Tensor, b: tf.Tensor, what: string) => {
            const [u, v] = [a.dataSync(), b.dataSync()];
            expect(u.length).toBe(v.length);
            u.forEach((value, i) => expect(Math.abs(value - v[i]), `${what} ${i}`).toBeLessThan(1e-5 * Math.max(1, Math.abs(v[i]))));
          };
          close(fused(kernel, bias), plain(kernel, bias), 'value');
          const [fw, fb] = tf.grads(weigh(fused))([kernel, bias]);
          const [pw, pb] = tf.grads(weigh(plain))([kernel, bias]);
          close(fw, pw, 'kernel gradient');
          close(fb, pb, 'bias gradient');
          expect(tf.max(tf.abs(fw)).dataSync()[0]).toBeGreaterThan(0);
        }
      } finally {
        await selectBackend('cpu');
      }
    });
  }
  for (const backend of backends) {
    it(`${backend}: relu(conv(x, W) + b) and its input, filter and bias gradients equal TF.js's ops`, async () => {
      await selectBackend(backend);
      try {
        const rng = new Rng(5);
        const random = (n: number, scale: number) => Float32Array.from({ length: n }, () => scale * rng.normal());
        const x = tf.tensor4d(random(3 * 7 * 6 * 4, 1), [3, 7, 6, 4]);
        const filter = tf.tensor4d(random(3 * 3 * 4 * 5, 0.4), [3, 3, 4, 5]);
        const bias = tf.tensor1d(random(5, 0.3));
        const upstream = tf.tensor4d(random(3 * 5 * 4 * 5, 1), [3, 5, 4, 5]);
        const plain = (v: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
          tf.relu(tf.add(tf.conv2d(v as tf.Tensor4D, w as tf.Tensor4D, 1, 'valid'), b));
        const fused = (v: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => convRelu(v as tf.Tensor4D, w as tf.Tensor4D, b as tf.Tensor1D, false);
        const weigh = (f: typeof plain) => (v: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(f(v, w, b), upstream));
        const close = (a: tf.Tensor, b: tf.Tensor, what: string) => {
          const [u, v] = [a.dataSync(), b.dataSync()];
          expect(u.length).toBe(v.length);
          u.forEach((value, i) => expect(Math.abs(value - v[i]), `${what} ${i}`).toBeLessThan(1e-5 * Math.max(1, Math.abs(v[i]))));
        };
        close(fused(x, filter, bias), plain(x, filter, bias), 'value');
        const [fx, fw, fb] = tf.grads(weigh(fused))([x, filter, bias]);
        const [px, pw, pb] = tf.grads(weigh(plain))([x, filter, bias]);
        close(fx, px, 'input gradient');
        close(fw, pw, 'filter gradient');
        close(fb, pb, 'bias gradient');
        // A first layer's input is data: only the filter and the bias get gradients.
        const first = (w: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(convRelu(x, w as tf.Tensor4D, b as tf.Tensor1D, true), upstream));
        const [dw, db] = tf.grads(first)([filter, bias]);
        close(dw, pw, 'first layer filter gradient');
        close(db, pb, 'first layer bias gradient');
      } finally {
        await selectBackend('cpu');
      }
    });
  }
});
