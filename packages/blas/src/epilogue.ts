// The bias add and activation that follow a fused matmul or convolution, applied in place on the
// freshly computed product (one pass, no intermediate tensors). Element formulas are the cpu
// backend's, so fused results match it; unusual broadcasts go to the cpu kernels instead.
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { TensorInfo, TypedArray, backend_util } from '@tensorflow/tfjs-core';
import { UNARY_LOOPS, type UnaryOp } from './elementwise.ts';
import { fitsLoops, loopRegions, loops } from './loops.ts';
import { broadcastsPerChannel, runCpuKernel, storedValues } from './tensors.ts';

export interface Epilogue {
  bias?: TensorInfo;
  activation?: backend_util.Activation;
  preluActivationWeights?: TensorInfo;
  leakyreluAlpha?: number;
}

/** Wraps `values` (owned by the caller, not yet shared) as a tensor after adding bias and activation. */
export function finishProduct(backend: MathBackendCPU, values: Float32Array, shape: number[], epilogue: Epilogue): TensorInfo {
  const { bias, activation, preluActivationWeights, leakyreluAlpha } = epilogue;
  let result = backend.makeTensorInfo(shape, 'float32', values);
  let resultValues = values;

  if (bias !== undefined && activation === 'relu' && broadcastsPerChannel(bias.shape, shape)) {
    // The common pair in one pass: a convolution's output is the size of the step's largest activations.
    addPerChannelRelu(values, storedValues(backend, bias));
    return result;
  }
  if (bias !== undefined) {
    if (broadcastsPerChannel(bias.shape, shape)) {
      addPerChannel(resultValues, storedValues(backend, bias));
    } else {
      result = replace(backend, result, runCpuKernel('Add', backend, { a: result, b: bias }));
      resultValues = storedValues(backend, result) as Float32Array;
    }
  }

  if (activation === undefined || activation === 'linear') return result;
  if (activation === 'prelu') {
    if (preluActivationWeights === undefined) throw new Error('prelu activation needs preluActivationWeights');
    if (broadcastsPerChannel(preluActivationWeights.shape, result.shape)) {
      preluPerChannel(resultValues, storedValues(backend, preluActivationWeights));
      return result;
    }
    const activated = runCpuKernel('Prelu', backend, { x: result, alpha: preluActivationWeights });
    return replace(backend, result, activated);
  }
  activateInPlace(resultValues, activation, leakyreluAlpha ?? 0.2);
  return result;
}

function replace(backend: MathBackendCPU, old: TensorInfo, next: TensorInfo): TensorInfo {
  backend.disposeIntermediateTensorInfo(old);
  return next;
}

/** values[i] += bias[i mod channels]; a one-element bias is added everywhere. */
function addPerChannel(values: Float32Array, bias: TypedArray): void {
  const channels = bias.length;
  if (biasInLoops(values, bias, false)) return;
  if (channels === 1) {
    const b = bias[0];
    for (let i = 0; i < values.length; i++) values[i] += b;
    return;
  }
  for (let row = 0; row < values.length; row += channels) {
    for (let c = 0; c < channels; c++) values[row + c] += bias[c];
  }
}

/** values[i] = relu(values[i] + bias[i mod channels]): the bits of the Add kernel, then the Relu kernel's formula. */
function addPerChannelRelu(values: Float32Array, bias: TypedArray): void {
  const channels = bias.length;
  if (biasInLoops(values, bias, true)) return;
  for (let row = 0; row < values.length; row += channels) {
    for (let c = 0; c < channels; c++) {
      const v = Math.fround(values[row + c] + bias[c]);
      values[row + c] = v === Number.NEGATIVE_INFINITY ? 0 : 0.5 * (v + Math.abs(v));
    }
  }
}

/** The bias (and ReLU) in WebAssembly SIMD (loops.wat) over a copy, the same bits; false where it does not fit. */
function biasInLoops(values: Float32Array, bias: TypedArray, relu: boolean): boolean {
  if (!(bias instanceof Float32Array) || !fitsLoops(values.length + bias.length)) return false;
  const [[valuesAt, region], [biasAt, biasRegion]] = loopRegions(values.length, bias.length);
  region.set(values);
  biasRegion.set(bias);
  loops.bias_relu(valuesAt, biasAt, values.length, bias.length, relu ? 1 : 0);
  values.set(region);
  return true;
}

function preluPerChannel(values: Float32Array, alpha: TypedArray): void {
  const channels = alpha.length;
  for (let row = 0; row < values.length; row += channels) {
    for (let c = 0; c < channels; c++) {
      const v = values[row + c];
      if (v < 0) values[row + c] = alpha[c] * v;
    }
  }
}

/** The unary kernel of each fused activation (the same loops, run in place). */
const ACTIVATION_OPS: Record<Exclude<backend_util.Activation, 'linear' | 'prelu'>, UnaryOp> = {
  relu: 'Relu',
  relu6: 'Relu6',
  elu: 'Elu',
  leakyrelu: 'LeakyRelu',
  sigmoid: 'Sigmoid',
};

function activateInPlace(values: Float32Array, activation: backend_util.Activation, leakyreluAlpha: number): void {
  if (activation === 'linear' || activation === 'prelu' || !(activation in ACTIVATION_OPS)) {
    throw new Error(`activation ${activation} is not implemented by the blas backend`);
  }
  UNARY_LOOPS[ACTIVATION_OPS[activation]](values, values, leakyreluAlpha);
}
