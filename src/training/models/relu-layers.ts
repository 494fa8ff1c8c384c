// Dense and convolution layers with bias and ReLU as one op each, with their gradients written
// out: relu(A(x, W) + b), times dropout noise when given. On the host backends (cpu, blas) the
// product, bias and ReLU are one kernel with its epilogue, and the backward pass is one SIMD loop
// (the ReLU's mask, the noise, the bias's gradient: common/simd/f32.ts) before the products; TF.js fuses none of this while
// it records gradients, and ran four element-wise ops and a sum over every activation instead.
// Elsewhere (webgpu, tensorflow, wasm) TF.js's own fused ops run.
import * as tf from '@tensorflow/tfjs-core';
import { multiplyInPlace, reluBackward } from '../../common/simd/f32.ts';
import { hostOutput, hostValues, onHostBackend } from '../host-backend.ts';

/**
 * relu(x·W + b)·noise (noise: 0 or 1/(1 − rate) per value, row after row; null for none). x is
 * data here: no gradient is computed for it.
 */
export function denseRelu(x: tf.Tensor2D, kernel: tf.Tensor2D, bias: tf.Tensor1D, noise: Float32Array | null): tf.Tensor2D {
  if (!onHostBackend()) {
    const hidden = tf.fused.matMul({ a: x, b: kernel, bias, activation: 'relu' }) as tf.Tensor2D;
    return noise ? (tf.mul(hidden, tf.tensor2d(noise, [x.shape[0], kernel.shape[1]])) as tf.Tensor2D) : hidden;
  }
  const attrs = { transposeA: false, transposeB: false, activation: 'relu' };
  return reluLayer(x, kernel, bias, noise, {
    product: (input, w, b) => tf.engine().runKernel('_FusedMatMul', { a: input, b: w, bias: b }, attrs) as tf.Tensor,
    kernelGradient: (input, dz) => tf.matMul(input as tf.Tensor2D, dz as tf.Tensor2D, true, false),
    inputGradient: null,
  }) as tf.Tensor2D;
}

/**
 * relu(conv2d(x, filter, stride 1, 'valid') + b), NHWC. With `inputIsData` no gradient is
 * computed for x (a network's first layer).
 */
export function convRelu(x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor1D, inputIsData: boolean): tf.Tensor4D {
  if (!onHostBackend()) return tf.fused.conv2d({ x, filter, strides: 1, pad: 'valid', bias, activation: 'relu' });
  const conv = { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1] };
  return reluLayer(x, filter, bias, null, {
    product: (input, w, b) =>
      tf.engine().runKernel('FusedConv2D', { x: input, filter: w, bias: b }, { ...conv, activation: 'relu' }) as tf.Tensor,
    kernelGradient: (input, dz) =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x: input, dy: dz }, { ...conv, filterShape: filter.shape }) as tf.Tensor,
    inputGradient: inputIsData
      ? null
      : (dz, w) => tf.engine().runKernel('Conv2DBackpropInput', { dy: dz, filter: w }, { ...conv, inputShape: x.shape }) as tf.Tensor,
  }) as tf.Tensor4D;
}

/** The linear map under a ReLU layer: its forward kernel (bias and ReLU fused) and its gradients. */
interface LinearMap {
  product(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor;
  kernelGradient(x: tf.Tensor, dz: tf.Tensor): tf.Tensor;
  /** null: x is data, and gets no gradient. */
  inputGradient: ((dz: tf.Tensor, w: tf.Tensor) => tf.Tensor) | null;
}

function reluLayer(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor1D, noise: Float32Array | null, map: LinearMap): tf.Tensor {
  const channels = b.shape[0];
  const op = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = inputs[inputs.length - 1] as tf.GradSaveFunc;
    const [input, kernel, bias] = (map.inputGradient ? inputs : [x, ...inputs]) as tf.Tensor[];
    const value = map.product(input, kernel, bias);
    // The kernel's own fresh output, seen by nothing else yet: the noise goes on in place.
    if (noise) multiplyInPlace(hostValues(value), noise);
    save([value, input, kernel]); // x too: the forward pass's scope would dispose data before the backward pass
    const gradFunc = (dy: tf.Tensor, [y, savedInput, savedKernel]: tf.Tensor[]) => {
      const { dz, sums } = reluBackward(hostValues(dy), hostValues(y), noise, channels, hostOutput);
      const dzTensor = tf.tensor(dz, y.shape);
      const grads = [map.kernelGradient(savedInput, dzTensor), tf.tensor1d(Float32Array.from(sums))];
      return map.inputGradient ? [map.inputGradient(dzTensor, savedKernel), ...grads] : grads;
    };
    return { value, gradFunc };
  });
  return (map.inputGradient ? op(x, w, b) : op(w, b)) as tf.Tensor;
}
