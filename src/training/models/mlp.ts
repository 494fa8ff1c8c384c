// The paper's MNIST network: input → dense `units` (ReLU, dropout) → dense classes.
// Both kernels carry masks; the biases do not.
import * as tf from '@tensorflow/tfjs-core';
import type { Examples } from '../data/source.ts';
import { denseRelu } from './relu-layers.ts';
import { dropoutValues, inputTensor, type Model, type ParamSpec } from './model.ts';

export interface MlpOptions {
  inputs: number;
  units: number;
  classes: number;
  dropout: number;
}

export function createMlp({ inputs, units, classes, dropout }: MlpOptions): Model {
  const params: ParamSpec[] = [
    { name: 'hidden.kernel', shape: [inputs, units], prunable: true, init: { kind: 'glorot', fanIn: inputs, fanOut: units } },
    { name: 'hidden.bias', shape: [units], prunable: false, init: { kind: 'zeros' } },
    { name: 'output.kernel', shape: [units, classes], prunable: true, init: { kind: 'glorot', fanIn: units, fanOut: classes } },
    { name: 'output.bias', shape: [classes], prunable: false, init: { kind: 'zeros' } },
  ];

  function forward(weights: tf.Tensor[], batch: Examples, noiseSeed: number | null): tf.Tensor2D {
    const [hiddenKernel, hiddenBias, outputKernel, outputBias] = weights as [tf.Tensor2D, tf.Tensor1D, tf.Tensor2D, tf.Tensor1D];
    const x = inputTensor(batch, [inputs]) as tf.Tensor2D;
    const noise = noiseSeed !== null && dropout > 0 ? dropoutValues(batch.ids, noiseSeed, 0, units, dropout) : null;
    const hidden = denseRelu(x, hiddenKernel, hiddenBias, noise);
    return tf.fused.matMul({ a: hidden, b: outputKernel, bias: outputBias }) as tf.Tensor2D;
  }

  return { kind: 'mlp', params, forward, requiredKernels: [] };
}
