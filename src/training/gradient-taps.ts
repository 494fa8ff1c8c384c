// Buckets that leave during the backward pass, as DDP's autograd hooks make them: each weight goes
// into the forward pass through an identity whose gradient function sees the weight's finished
// gradient (every consumer of the weight comes later on the tape, so TF.js has summed them all),
// hands it to the replica, which hands the bucket on once all its parameters are in.
// The identity passes the gradient through unchanged: the sums are the bits of the plain pass.
import * as tf from '@tensorflow/tfjs-core';
import type { GradientBucket } from './replica.ts';

export interface BucketRelease {
  buckets: GradientBucket[];
  /** Bucket k's values (and, for bucket 0, the loss slot) are final in the buffer: it may travel. */
  onBucket(k: number): void;
}

export class GradientTaps {
  private readonly done: boolean[];
  private readonly remaining: number[];
  private readonly bucketOf: number[];
  private released = 0;
  /** The loss of the forward pass being differentiated. */
  private loss: tf.Tensor | null = null;

  constructor(
    buckets: GradientBucket[],
    paramCount: number,
    /** Takes parameter i's finished gradient (dy lives as long as the call). */
    private readonly take: (param: number, gradient: tf.Tensor) => void,
    /** Every parameter of bucket k was taken; `loss` is the forward pass's (bucket 0 carries it). Called in bucket order. */
    private readonly ready: (k: number, loss: tf.Tensor) => void,
  ) {
    this.done = new Array(paramCount).fill(false);
    this.bucketOf = new Array(paramCount).fill(-1);
    buckets.forEach((bucket, k) => {
      for (const i of bucket.params) this.bucketOf[i] = k;
    });
    this.remaining = buckets.map((b) => b.params.length);
  }

  /** The forward pass for tf.valueAndGrads: `lossOf` on the tapped weights; its loss is kept for bucket 0. */
  forward(weights: tf.Tensor[], lossOf: (tapped: tf.Tensor[]) => tf.Scalar): tf.Scalar {
    const loss = lossOf(this.wrap(weights));
    this.loss = loss;
    return loss;
  }

  /**
   * The weights as the model sees them: each one, at its first use, through its tap. A weight used
   * first late in the forward pass is finished early in the backward pass, and leaves early.
   */
  private wrap(weights: tf.Tensor[]): tf.Tensor[] {
    const tapped = new Map<number, tf.Tensor>();
    return new Proxy(weights, {
      get: (target, key, receiver) => {
        if (typeof key !== 'string' || !/^\d+$/.test(key)) return Reflect.get(target, key, receiver);
        const i = Number(key);
        let weight = tapped.get(i);
        if (!weight) {
          weight = this.tap(i)(target[i]);
          tapped.set(i, weight);
        }
        return weight;
      },
    });
  }

  /** After the backward pass: parameters no tap saw (unused by the forward) from their plain gradients, and the last buckets. */
  finish(grads: tf.Tensor[]): void {
    grads.forEach((gradient, i) => {
      if (!this.done[i]) this.finished(i, gradient);
    });
  }

  private tap(param: number): (weight: tf.Tensor) => tf.Tensor {
    return tf.customGrad((...inputs) => ({
      value: tf.clone(inputs[0] as tf.Tensor),
      gradFunc: (dy: tf.Tensor) => {
        this.finished(param, dy);
        return dy;
      },
    })) as (weight: tf.Tensor) => tf.Tensor;
  }

  private finished(param: number, gradient: tf.Tensor): void {
    if (this.done[param]) return;
    this.done[param] = true;
    this.take(param, gradient);
    this.remaining[this.bucketOf[param]]--;
    // Buckets leave in index order on every rank, so the ring's ops line up.
    while (this.released < this.remaining.length && this.remaining[this.released] === 0) {
      this.ready(this.released++, this.loss as tf.Tensor);
    }
  }
}
