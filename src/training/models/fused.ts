// GELU, LayerNorm, causal attention weights and softmax cross-entropy as one op each, with their gradients written out. On the host backends (cpu, blas) each is one
// loop over the values, forward and backward; elsewhere (webgpu, tensorflow, wasm) the same
// formulas are composed of core ops. Built from many small ops and
// differentiated op by op, these were most of a GPT step on the host backends.
import * as tf from '@tensorflow/tfjs-core';
import { geluForward, layerNormBackward, layerNormForward } from '../../common/simd/f32.ts';
import type { Allocate } from '../../common/simd/scratch.ts';
import { causalSoftmaxBackward, expShiftedRows, logSumExpRows, softmaxRows, type SoftmaxRows } from '../../common/simd/softmax-rows.ts';
import { hostOutput, hostValues, onHostBackend } from '../host-backend.ts';

const GELU_SCALE = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

/** GELU, GPT-2's tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function gelu(x: tf.Tensor2D): tf.Tensor2D {
  return geluOp(x) as tf.Tensor2D;
}

/** LayerNorm over the last axis of [rows, width]: (x − mean) / sqrt(var + ε) · gain + bias. */
export function layerNorm(x: tf.Tensor2D, gain: tf.Tensor1D, bias: tf.Tensor1D | undefined, epsilon: number): tf.Tensor2D {
  const width = x.shape[1];
  // On the host the bias is added in the same pass (and its gradient summed in the backward one).
  const fuseBias = bias !== undefined && onHostBackend();
  const op = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [input, g] = inputs as [tf.Tensor2D, tf.Tensor1D];
    const save = inputs[inputs.length - 1] as tf.GradSaveFunc;
    if (onHostBackend()) {
      const host = width % 4 === 0 ? layerNormForward : hostLayerNorm;
      const b = fuseBias ? hostValues(inputs[2] as tf.Tensor1D) : null;
      const { values, normalized, inverseStd } = host(hostValues(input), hostValues(g), b, width, epsilon, hostOutput);
      save([tf.tensor2d(normalized, input.shape), tf.tensor1d(inverseStd), g]);
      const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => layerNormGradient(dy, saved).slice(0, fuseBias ? 3 : 2);
      return { value: tf.tensor2d(values, input.shape), gradFunc };
    }
    const { mean, variance } = tf.moments(input, -1, true);
    const inverseStd = tf.rsqrt(tf.add(variance, epsilon));
    const normalized = tf.mul(tf.sub(input, mean), inverseStd);
    save([normalized, tf.reshape(inverseStd, [-1]), g]);
    return { value: tf.mul(normalized, g), gradFunc: layerNormGradient };
  });
  if (fuseBias) return op(x, gain, bias) as tf.Tensor2D;
  const scaled = op(x, gain) as tf.Tensor2D;
  return bias ? tf.add(scaled, bias) : scaled;
}

/** Added to the attention scores of future positions: exp(−1e9 − max) is exactly 0 in float32. */
export const MASKED_SCORE = -1e9;

/**
 * Causal attention weights from raw scores [batch, T, T]: softmax(scale · scores) over the
 * positions up to each query's own (later ones get exactly 0), times dropout noise (0 or
 * 1/(1 − rate), laid out like the scores) when given. On host backends one pass that skips the
 * masked half; elsewhere the same as scale, additive mask, softmax and a product.
 */
export function causalAttention(scores: tf.Tensor3D, scale: number, noise: Float32Array | null): tf.Tensor3D {
  const [batch, steps] = scores.shape;
  // Each query's row of scores: row r of the [batch·T, T] matrix is query r mod T.
  const rows: SoftmaxRows = { rows: batch * steps, width: steps, steps, scale };
  const op = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = inputs as [tf.Tensor3D, tf.GradSaveFunc];
    if (onHostBackend()) {
      const values = hostValues(x);
      const weights = tf.tensor3d(softmaxRows(values, rows, hostOutput), x.shape);
      const noiseTensor = noise ? tf.tensor3d(noise, x.shape) : null;
      save(noiseTensor ? [weights, noiseTensor] : [weights]);
      const gradFunc = (dy: tf.Tensor, [saved, savedNoise]: tf.Tensor[]) => {
        const savedValues = savedNoise ? hostValues(savedNoise) : null;
        const dx = causalSoftmaxBackward(hostValues(saved), hostValues(dy), savedValues, rows, hostOutput);
        return tf.tensor3d(dx, [batch, steps, steps]);
      };
      if (!noise) return { value: weights, gradFunc };
      const dropped = hostValues(weights).map((w, i) => w * noise[i]);
      return { value: tf.tensor3d(dropped, x.shape), gradFunc };
    }
    const masked = tf.add(tf.mul(x, scale), causalMask(steps));
    const weights = softmaxComposed(masked);
    const noiseTensor = noise ? tf.tensor3d(noise, x.shape) : null;
    save(noiseTensor ? [weights, noiseTensor] : [weights]);
    const gradFunc = (dy: tf.Tensor, [saved, savedNoise]: tf.Tensor[]) => {
      const upstream = savedNoise ? tf.mul(dy, savedNoise) : dy;
      const dyTimesY = tf.mul(upstream, saved);
      return tf.mul(tf.sub(dyTimesY, tf.mul(tf.sum(dyTimesY, -1, true), saved)), scale);
    };
    return { value: noiseTensor ? tf.mul(weights, noiseTensor) : weights, gradFunc };
  });
  return op(scores) as tf.Tensor3D;
}

/** [T, T] additive mask: 0 where key position ≤ query position, MASKED_SCORE after it. */
function causalMask(steps: number): tf.Tensor2D {
  const values = new Float32Array(steps * steps);
  for (let query = 0; query < steps; query++) values.fill(MASKED_SCORE, query * steps + query + 1, (query + 1) * steps);
  return tf.tensor2d(values, [steps, steps]);
}

/** Σ over rows of −log softmax(logits)[label]: the loss of every model, and its gradient softmax − one-hot. */
export function crossEntropySum(logits: tf.Tensor2D, labels: Int32Array): tf.Scalar {
  const [rows, classes] = logits.shape;
  const op = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = inputs as [tf.Tensor2D, tf.GradSaveFunc];
    if (onHostBackend()) {
      // A GPT-2 vocabulary makes these rows 50,257 wide: one pass each way, no one-hot matrix.
      const { loss, logSumExp } = hostCrossEntropy(hostValues(x), labels, classes);
      save([x, tf.tensor1d(logSumExp)]);
      const gradFunc = (dy: tf.Tensor, [savedX, savedLse]: tf.Tensor[]) =>
        tf.tensor2d(hostCrossEntropyGradient(hostValues(savedX), hostValues(savedLse), labels, hostValues(dy)[0], classes), [
          rows,
          classes,
        ]);
      return { value: tf.scalar(loss), gradFunc };
    }
    const oneHot = tf.oneHot(tf.tensor1d(labels, 'int32'), classes);
    const logProbabilities = tf.logSoftmax(x);
    save([logProbabilities, oneHot]);
    const gradFunc = (dy: tf.Tensor, [saved, targets]: tf.Tensor[]) => tf.mul(dy, tf.sub(tf.exp(saved), targets));
    return { value: tf.neg(tf.sum(tf.mul(logProbabilities, oneHot))), gradFunc };
  });
  return op(logits) as tf.Scalar;
}

const geluOp = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, save] = inputs as [tf.Tensor, tf.GradSaveFunc];
  if (onHostBackend()) {
    // x·σ(2u) in SIMD (common/simd/f32.ts), one exp per value. The forward pass also writes the
    // slope d/dx, so the backward pass is one multiply and x need not be kept.
    const { values, slopes } = geluForward(hostValues(x), hostOutput);
    save([tf.tensor(slopes, x.shape)]);
    const gradFunc = (dy: tf.Tensor, [savedSlopes]: tf.Tensor[]) => tf.mul(dy, savedSlopes);
    return { value: tf.tensor(values, x.shape), gradFunc };
  }
  save([x]);
  const gradFunc = (dy: tf.Tensor, [saved]: tf.Tensor[]) => {
    // d/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh(inner)
    const squared = tf.square(saved);
    const t = tf.tanh(tf.mul(tf.mul(saved, tf.add(tf.mul(squared, GELU_CUBIC), 1)), GELU_SCALE));
    const slope = tf.mul(tf.mul(tf.mul(saved, tf.sub(1, tf.square(t))), tf.add(tf.mul(squared, 3 * GELU_CUBIC), 1)), GELU_SCALE);
    return tf.mul(dy, tf.mul(tf.add(tf.add(t, 1), slope), 0.5));
  };
  const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), GELU_CUBIC)), GELU_SCALE);
  return { value: tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1)), gradFunc };
});

/**
 * Gradients of x and gain from normalized x̂, 1/σ per row and gain: dx = (g·dy − mean(g·dy) −
 * x̂·mean(g·dy·x̂)) / σ; on the host also a bias's (Σ dy over rows), for the op that adds one.
 */
function layerNormGradient(dy: tf.Tensor, [normalized, inverseStd, gain]: tf.Tensor[]): tf.Tensor[] {
  const [rows, width] = normalized.shape;
  if (onHostBackend()) {
    const host = width % 4 === 0 ? layerNormBackward : hostLayerNormGradient;
    const { dx, dGain, dBias } = host(hostValues(dy), hostValues(normalized), hostValues(inverseStd), hostValues(gain), width, hostOutput);
    return [tf.tensor2d(dx, [rows, width]), tf.tensor1d(dGain), tf.tensor1d(dBias)];
  }
  const scaled = tf.mul(dy, gain);
  const centred = tf.sub(scaled, tf.mean(scaled, -1, true));
  const dx = tf.mul(tf.sub(centred, tf.mul(normalized, tf.mean(tf.mul(scaled, normalized), -1, true))), tf.reshape(inverseStd, [rows, 1]));
  return [dx, tf.sum(tf.mul(dy, normalized), 0)];
}

function softmaxComposed(x: tf.Tensor): tf.Tensor {
  const exps = tf.exp(tf.sub(x, tf.max(x, -1, true)));
  return tf.div(exps, tf.sum(exps, -1, true));
}

function hostLayerNorm(x: Float32Array, gain: Float32Array, bias: Float32Array | null, width: number, epsilon: number, allocate: Allocate) {
  const rows = x.length / width;
  const values = allocate(x.length);
  const normalized = allocate(x.length);
  const inverseStd = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    const start = r * width;
    let sum = 0;
    for (let c = 0; c < width; c++) sum += x[start + c];
    const mean = sum / width;
    let squares = 0;
    for (let c = 0; c < width; c++) squares += (x[start + c] - mean) ** 2;
    const inverse = 1 / Math.sqrt(squares / width + epsilon);
    inverseStd[r] = inverse;
    for (let c = 0; c < width; c++) {
      const n = (x[start + c] - mean) * inverse;
      normalized[start + c] = n;
      values[start + c] = n * gain[c] + (bias ? bias[c] : 0);
    }
  }
  return { values, normalized, inverseStd };
}

function hostLayerNormGradient(
  dy: Float32Array,
  normalized: Float32Array,
  inverseStd: Float32Array,
  gain: Float32Array,
  width: number,
  allocate: Allocate,
) {
  const rows = inverseStd.length;
  const dx = allocate(dy.length);
  const dGain = new Float64Array(width);
  const dBias = new Float64Array(width);
  for (let r = 0; r < rows; r++) {
    const start = r * width;
    let meanScaled = 0;
    let meanScaledNormalized = 0;
    for (let c = 0; c < width; c++) {
      const scaled = dy[start + c] * gain[c];
      meanScaled += scaled;
      meanScaledNormalized += scaled * normalized[start + c];
      dGain[c] += dy[start + c] * normalized[start + c];
      dBias[c] += dy[start + c];
    }
    meanScaled /= width;
    meanScaledNormalized /= width;
    for (let c = 0; c < width; c++) {
      dx[start + c] = (dy[start + c] * gain[c] - meanScaled - normalized[start + c] * meanScaledNormalized) * inverseStd[r];
    }
  }
  return { dx, dGain: Float32Array.from(dGain), dBias: Float32Array.from(dBias) };
}

function hostCrossEntropy(x: Float32Array, labels: Int32Array, classes: number) {
  const logSumExp = logSumExpRows(x, { rows: labels.length, width: classes, steps: 0, scale: 1 });
  let loss = 0;
  for (let r = 0; r < labels.length; r++) loss += logSumExp[r] - x[r * classes + labels[r]];
  return { loss, logSumExp };
}

function hostCrossEntropyGradient(x: Float32Array, logSumExp: Float32Array, labels: Int32Array, dy: number, classes: number): Float32Array {
  const out = expShiftedRows(x, logSumExp, { rows: labels.length, width: classes, steps: 0, scale: 1 }, dy, hostOutput);
  for (let r = 0; r < labels.length; r++) out[r * classes + labels[r]] -= dy;
  return out;
}
