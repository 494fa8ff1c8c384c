// Causal multi-head self-attention, from the fused query/key/value projection [count·T, 3·width]
// (each token's query, key and value side by side, head after head) to the heads' outputs
// [count·T, width], side by side as the output projection takes them. On blas it is one op whose
// products read each head's columns where they lie and write its output where it goes, so nothing
// is transposed, split or joined either way; elsewhere the same is composed of core ops.
import * as tf from '@tensorflow/tfjs-core';
import { multiplyInPlace } from '../../common/simd/f32.ts';
import { causalSoftmaxBackward, softmaxRows, type SoftmaxRows } from '../../common/simd/softmax-rows.ts';
import type { StridedGemm } from '@occam/blas';
import { hostGemm, hostOutput, hostValues } from '../host-backend.ts';
import { causalAttention } from './fused.ts';

export interface AttentionShape {
  /** Sequences in the batch. */
  count: number;
  /** Tokens per sequence (T). */
  steps: number;
  heads: number;
  headSize: number;
}

/**
 * softmax(q·kᵀ/√headSize over the keys up to each query's own position)·v, for every head of every
 * sequence. `noise` is dropout's on the attention weights (0 or 1/(1 − rate)), laid out
 * [heads · count, T, T] head-major, or null.
 */
export function selfAttention(qkv: tf.Tensor2D, shape: AttentionShape, noise: Float32Array | null): tf.Tensor2D {
  const gemm = hostGemm();
  return gemm ? stridedAttention(qkv, shape, noise, gemm) : composedAttention(qkv, shape, noise);
}

/**
 * The same from core ops, on any backend: one transpose regroups the projection as
 * [3 · heads · count, T, headSize], so every head's products run as one batched product. Rank ≤ 4
 * throughout, which every backend's kernels take.
 */
export function composedAttention(qkv: tf.Tensor2D, shape: AttentionShape, noise: Float32Array | null): tf.Tensor2D {
  const { count, steps, heads, headSize } = shape;
  const grouped = tf.transpose(tf.reshape(qkv, [count, steps, 3 * heads, headSize]), [2, 0, 1, 3]);
  const [query, key, value] = tf.split(tf.reshape(grouped, [3 * heads * count, steps, headSize]), 3, 0);
  const scores = tf.matMul(query, key, false, true) as tf.Tensor3D;
  const mixed = tf.matMul(causalAttention(scores, 1 / Math.sqrt(headSize), noise), value);
  const merged = tf.transpose(tf.reshape(mixed, [heads, count, steps, headSize]), [1, 2, 0, 3]);
  return tf.reshape(merged, [count * steps, heads * headSize]);
}

/** One op on a host backend with BLAS: per head, strided products around the fused causal softmax (common/simd). */
function stridedAttention(qkv: tf.Tensor2D, shape: AttentionShape, noise: Float32Array | null, gemm: StridedGemm): tf.Tensor2D {
  const { count, steps, heads, headSize } = shape;
  const width = heads * headSize;
  const stride = 3 * width; // floats from one token's projection to the next's
  const square = steps * steps;
  const weightsShape: [number, number, number] = [heads * count, steps, steps];
  const rows: SoftmaxRows = { rows: heads * count * steps, width: steps, steps, scale: 1 / Math.sqrt(headSize) };
  // The two shapes of product per head: T × headSize matrices (rows lda and ldb apart) times each
  // other transposed, into a T × T one; and a T × T one (transposed or not) times a T × headSize one.
  const intoSquare = (a: Float32Array, lda: number, b: Float32Array, ldb: number, square: Float32Array) =>
    gemm(false, true, steps, steps, headSize, a, lda, b, ldb, square, steps);
  const fromSquare = (transpose: boolean, square: Float32Array, b: Float32Array, ldb: number, c: Float32Array, ldc: number) =>
    gemm(transpose, false, steps, headSize, steps, square, steps, b, ldb, c, ldc);
  const op = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = inputs as [tf.Tensor2D, tf.GradSaveFunc];
    const projected = hostValues(x);
    // Scores, then (in place) the causal softmax of them: the attention weights.
    const weights = hostOutput(heads * count * square);
    forEachHead(shape, (index, at) =>
      intoSquare(projected.subarray(at), stride, projected.subarray(at + width), stride, weights.subarray(index * square)),
    );
    softmaxRows(weights, rows, () => weights);
    const dropped = noise ? hostOutput(weights.length) : weights;
    if (noise) {
      dropped.set(weights);
      multiplyInPlace(dropped, noise);
    }
    const out = hostOutput(count * steps * width);
    forEachHead(shape, (index, at, outAt) =>
      fromSquare(false, dropped.subarray(index * square), projected.subarray(at + 2 * width), stride, out.subarray(outAt), width),
    );
    save(noise ? [x, tf.tensor3d(weights, weightsShape), tf.tensor3d(dropped, weightsShape)] : [x, tf.tensor3d(weights, weightsShape)]);

    const gradFunc = (dy: tf.Tensor, [savedX, savedWeights, savedDropped]: tf.Tensor[]) => {
      const [projected, weights, upstream] = [hostValues(savedX), hostValues(savedWeights), hostValues(dy)];
      const dropped = savedDropped ? hostValues(savedDropped) : weights;
      const dWeights = hostOutput(weights.length);
      const dProjected = hostOutput(projected.length);
      forEachHead(shape, (index, at, outAt) => {
        const [dOut, values] = [upstream.subarray(outAt), projected.subarray(at + 2 * width)];
        intoSquare(dOut, width, values, stride, dWeights.subarray(index * square));
        fromSquare(true, dropped.subarray(index * square), dOut, width, dProjected.subarray(at + 2 * width), stride);
      });
      // The scores' gradient replaces the weights' (in place); masked positions get exactly 0.
      const dScores = causalSoftmaxBackward(weights, dWeights, noise, rows, () => dWeights);
      forEachHead(shape, (index, at) => {
        const dScoresOfHead = dScores.subarray(index * square);
        fromSquare(false, dScoresOfHead, projected.subarray(at + width), stride, dProjected.subarray(at), stride);
        fromSquare(true, dScoresOfHead, projected.subarray(at), stride, dProjected.subarray(at + width), stride);
      });
      tf.dispose(tf.tensor3d(dScores, weightsShape)); // back to blas's pool
      return tf.tensor2d(dProjected, [count * steps, stride]);
    };
    return { value: tf.tensor2d(out, [count * steps, width]), gradFunc };
  });
  return op(qkv) as tf.Tensor2D;
}

/**
 * Every (head, sequence) in the weights' head-major order: its index there, where its query
 * columns start in the projection (its keys and values lie width and 2·width further), and where
 * its output columns start in the result.
 */
function forEachHead(shape: AttentionShape, each: (index: number, at: number, outAt: number) => void): void {
  const { count, steps, heads, headSize } = shape;
  const width = heads * headSize;
  for (let head = 0; head < heads; head++)
    for (let sample = 0; sample < count; sample++)
      each(head * count + sample, sample * steps * 3 * width + head * headSize, sample * steps * width + head * headSize);
}
