// What every model is to the rest of Occam: a list of parameters (which ones carry a pruning
// mask) and a pure forward function from weight tensors and a batch to logits. Losses, accuracy,
// initialisation and dropout noise are shared here so each model file holds only its network.
import * as tf from '@tensorflow/tfjs-core';
import type { Examples } from '../data/source.ts';
import { Rng, mixSeed } from '../rng.ts';
import { dropoutNoise } from '../../common/simd/f32.ts';
import { crossEntropySum } from './fused.ts';

export type Init =
  | { kind: 'glorot'; fanIn: number; fanOut: number }
  | { kind: 'normal'; std: number }
  | { kind: 'zeros' }
  | { kind: 'ones' };

export interface ParamSpec {
  name: string;
  shape: number[];
  /** Kernels and projections are pruned; biases, norms and embeddings are not. */
  prunable: boolean;
  init: Init;
}

export interface Model {
  readonly kind: string;
  readonly params: ParamSpec[];
  /** Kernels (forward and gradient) a backend must have to train this model. */
  readonly requiredKernels: string[];
  /** Logits of shape [count × targetsPerSample, classes]; `noiseSeed` null turns dropout off. */
  forward(weights: tf.Tensor[], batch: Examples, noiseSeed: number | null): tf.Tensor2D;
}

/** Sum over the batch of each sample's mean cross-entropy over its targets. */
export function lossSum(model: Model, weights: tf.Tensor[], batch: Examples, noiseSeed: number | null): tf.Scalar {
  return tf.tidy(() => {
    const logits = model.forward(weights, batch, noiseSeed);
    const targetsPerSample = batch.y.length / batch.count;
    return tf.div(crossEntropySum(logits, batch.y), targetsPerSample);
  });
}

/** Loss sum (as in lossSum) and the number of correct top-1 predictions, without dropout. */
export async function evaluateBatch(model: Model, weights: tf.Tensor[], batch: Examples): Promise<{ lossSum: number; correct: number }> {
  const sums = tf.tidy(() => {
    const logits = model.forward(weights, batch, null);
    const targetsPerSample = batch.y.length / batch.count;
    const labels = tf.tensor1d(batch.y, 'int32');
    const hits = tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'float32'));
    return tf.stack([tf.div(crossEntropySum(logits, batch.y), targetsPerSample), tf.div(hits, targetsPerSample)]);
  });
  // One asynchronous read: a GPU backend cannot read synchronously in Node.
  const [lossSum, correct] = await sums.data();
  sums.dispose();
  return { lossSum, correct };
}

/** Values in one parameter: the product of its shape. */
export function paramSize(param: ParamSpec): number {
  return param.shape.reduce((a, b) => a * b, 1);
}

/** Initial weights of every parameter, drawn from one seeded stream so all replicas agree. */
export function initialWeights(params: ParamSpec[], seed: number): Float32Array[] {
  return params.map((param, index) => {
    const size = paramSize(param);
    const values = new Float32Array(size);
    const rng = new Rng(mixSeed(seed, index));
    const init = param.init;
    if (init.kind === 'ones') values.fill(1);
    if (init.kind === 'normal') for (let i = 0; i < size; i++) values[i] = init.std * rng.normal();
    if (init.kind === 'glorot') {
      const limit = Math.sqrt(6 / (init.fanIn + init.fanOut));
      for (let i = 0; i < size; i++) values[i] = (2 * rng.uniform() - 1) * limit;
    }
    return values;
  });
}

/**
 * Inverted dropout noise for a [count, width] activation, row after row: 0 or 1/(1-rate). Each
 * sample's noise comes from its id and the step's seed, not from the worker, so any worker count
 * draws the same noise. Each 32-bit draw decides two units, 16 bits apiece
 * (rate resolved to 1/65536): this runs for every hidden unit of every sample of every step.
 */
export function dropoutValues(ids: Uint32Array, noiseSeed: number, salt: number, width: number, rate: number): Float32Array {
  const seeds = Uint32Array.from(ids, (id) => mixSeed(noiseSeed, salt, id));
  return dropoutNoise(seeds, width, Math.round(rate * 65536), 1 / (1 - rate));
}

/** The input batch as a tensor of shape [count, ...inputShape]. */
export function inputTensor(batch: Examples, inputShape: number[]): tf.Tensor {
  const dtype = batch.x instanceof Int32Array ? 'int32' : 'float32';
  return tf.tensor(batch.x, [batch.count, ...inputShape], dtype);
}
