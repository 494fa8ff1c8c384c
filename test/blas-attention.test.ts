// The GPT's attention on blas (one op of strided products per head) against the same attention
// composed of core ops on cpu, value and gradient, with and without dropout noise, over seeded
// random shapes; then a whole GPT's loss and gradients on both backends.
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { isBlasAvailable, registerBlasBackend } from '@occam/blas';
import { selfAttention, type AttentionShape } from '../src/training/models/attention.ts';
import { createGpt } from '../src/training/models/gpt.ts';
import { initialWeights, lossSum } from '../src/training/models/model.ts';
import { Rng } from '../src/training/rng.ts';
import { expectSameOnBoth, seededRandom } from './helpers/on-both.ts';

tf.env().set('PROD', true);

describe.skipIf(!isBlasAvailable())('attention on blas', () => {
  beforeAll(() => {
    registerBlasBackend({ threads: 0 });
  });

  it('equals the composed ops on cpu, value and gradient, with and without noise, over random shapes', async () => {
    const random = seededRandom(20261203);
    const integer = (low: number, high: number) => low + Math.floor(random() * (high - low + 1));
    const shapes: AttentionShape[] = [{ count: 2, steps: 64, heads: 4, headSize: 32 }];
    for (let i = 0; i < 10; i++) shapes.push({ count: integer(1, 3), steps: integer(1, 9), heads: integer(1, 4), headSize: integer(1, 9) });
    for (const shape of shapes) {
      const { count, steps, heads, headSize } = shape;
      const rows = count * steps;
      const width = heads * headSize;
      const projected = Float32Array.from({ length: rows * 3 * width }, () => 4 * random() - 2);
      const upstream = Float32Array.from({ length: rows * width }, () => 2 * random() - 1);
      const dropped = Float32Array.from({ length: heads * count * steps * steps }, () => (random() < 0.2 ? 0 : 1.25));
      for (const noise of [null, dropped]) {
        const label = `${JSON.stringify(shape)} ${noise ? 'with' : 'without'} noise`;
        await expectSameOnBoth(
          () => {
            const qkv = tf.tensor2d(projected, [rows, 3 * width]);
            const weigh = (x: tf.Tensor) =>
              tf.sum(tf.mul(selfAttention(x as tf.Tensor2D, shape, noise), tf.tensor2d(upstream, [rows, width])));
            const { value, grad } = tf.valueAndGrad(weigh)(qkv);
            return [selfAttention(qkv, shape, noise), value, grad];
          },
          Math.max(steps, headSize),
          label,
        );
      }
    }
  });

  it('gives a GPT the same loss and gradients as cpu, dropout on', async () => {
    const gpt = createGpt({ vocabSize: 13, blockSize: 8, layers: 2, heads: 2, width: 16, dropout: 0.2, bias: true, tieEmbeddings: true });
    const weights = initialWeights(gpt.params, 7);
    const rng = new Rng(3);
    const count = 3;
    const x = Int32Array.from({ length: count * 8 }, () => Math.floor(rng.uniform() * 13));
    const y = Int32Array.from({ length: count * 8 }, () => Math.floor(rng.uniform() * 13));
    const batch = { x, y, count, ids: Uint32Array.from([4, 9, 2]) };
    await expectSameOnBoth(
      () => {
        const tensors = gpt.params.map((p, i) => tf.tensor(weights[i], p.shape, 'float32'));
        const { value, grads } = tf.valueAndGrads((...w: tf.Tensor[]) => lossSum(gpt, w, batch, 5))(tensors);
        expect(grads).toHaveLength(gpt.params.length);
        return [value, ...grads];
      },
      64,
      'gpt',
    );
  });
});
