// The paper's CIFAR-form network, scaled by u: conv u → max-pool → conv 2u → max-pool → conv 2u
// → dense 2u → dense classes (3×3 'valid' convolutions, ReLU). Kernels carry masks; biases do not.
import * as tf from '@tensorflow/tfjs-core';
import type { Examples } from '../data/source.ts';
import { inputTensor, type Model, type ParamSpec } from './model.ts';
import { convRelu } from './relu-layers.ts';

export interface CnnOptions {
  /** [height, width, channels] of one image. */
  inputShape: number[];
  units: number;
  classes: number;
}

export function createCnn({ inputShape, units, classes }: CnnOptions): Model {
  const [height, width, channels] = inputShape;
  const convs = [
    { name: 'conv1', inChannels: channels, outChannels: units },
    { name: 'conv2', inChannels: units, outChannels: 2 * units },
    { name: 'conv3', inChannels: 2 * units, outChannels: 2 * units },
  ];
  // 3×3 valid convolutions shrink each side by 2; the two pools halve it.
  const side = (n: number) => Math.floor((Math.floor((n - 2) / 2) - 2) / 2) - 2;
  if (side(height) < 1 || side(width) < 1) {
    throw new Error(`cnn: input ${height}×${width} is too small for three 3×3 convolutions and two pools`);
  }
  const flat = side(height) * side(width) * 2 * units;
  const params: ParamSpec[] = [
    ...convs.flatMap((c): ParamSpec[] => [
      {
        name: `${c.name}.kernel`,
        shape: [3, 3, c.inChannels, c.outChannels],
        prunable: true,
        init: { kind: 'glorot', fanIn: 9 * c.inChannels, fanOut: 9 * c.outChannels },
      },
      { name: `${c.name}.bias`, shape: [c.outChannels], prunable: false, init: { kind: 'zeros' } },
    ]),
    { name: 'dense.kernel', shape: [flat, 2 * units], prunable: true, init: { kind: 'glorot', fanIn: flat, fanOut: 2 * units } },
    { name: 'dense.bias', shape: [2 * units], prunable: false, init: { kind: 'zeros' } },
    { name: 'output.kernel', shape: [2 * units, classes], prunable: true, init: { kind: 'glorot', fanIn: 2 * units, fanOut: classes } },
    { name: 'output.bias', shape: [classes], prunable: false, init: { kind: 'zeros' } },
  ];

  function forward(weights: tf.Tensor[], batch: Examples): tf.Tensor2D {
    const [k1, b1, k2, b2, k3, b3, denseKernel, denseBias, outputKernel, outputBias] = weights;
    const conv = (x: tf.Tensor4D, kernel: tf.Tensor, bias: tf.Tensor, inputIsData = false) =>
      convRelu(x, kernel as tf.Tensor4D, bias as tf.Tensor1D, inputIsData);
    let x = inputTensor(batch, [height, width, channels]) as tf.Tensor4D;
    x = tf.maxPool(conv(x, k1, b1, true), 2, 2, 'valid');
    x = tf.maxPool(conv(x, k2, b2), 2, 2, 'valid');
    x = conv(x, k3, b3);
    const features = tf.reshape(x, [batch.count, flat]) as tf.Tensor2D;
    const dense = tf.fused.matMul({ a: features, b: denseKernel as tf.Tensor2D, bias: denseBias, activation: 'relu' });
    return tf.fused.matMul({ a: dense, b: outputKernel as tf.Tensor2D, bias: outputBias }) as tf.Tensor2D;
  }

  return { kind: 'cnn', params, forward, requiredKernels: ['FusedConv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter', 'MaxPoolGrad'] };
}
