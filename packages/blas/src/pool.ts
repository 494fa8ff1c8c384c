// MaxPool and its gradient (NHWC, float32) in tight loops over channels: the forward pass in
// WebAssembly SIMD (loops.wat) where the channels come in fours, scalar JavaScript otherwise. The cpu
// backend's MaxPoolGrad reads every element through TensorBuffer.get and took ~0.6 s per step of a
// small MNIST CNN. Same semantics as the cpu kernels: the first maximum of a window wins, NaN never
// does. The gradient reuses the maxima its forward pass found.
import { backend_util, type MaxPoolAttrs, type MaxPoolGradAttrs, type TensorInfo } from '@tensorflow/tfjs-core';
import { allocateFloat32 } from './memory.ts';
import { fitsLoops, loopRegions, loops } from './loops.ts';
import { float32Values, runCpuKernel, type KernelArgs } from './tensors.ts';

type PoolInfo = backend_util.Conv2DInfo;

export function maxPool(args: KernelArgs<{ x: TensorInfo }, MaxPoolAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  if (x.dtype !== 'float32') return runCpuKernel('MaxPool', backend, inputs, attrs);
  const info = poolInfo(x.shape, attrs);
  const out = allocateFloat32(
    backend,
    info.outShape.reduce((a, b) => a * b, 1),
  );
  const xValues = float32Values(backend, x);
  let argmax: Int32Array;
  if (info.inChannels % 4 === 0 && fitsLoops(xValues.length + 2 * out.length)) {
    argmax = simdMaxima(xValues, info, out);
  } else {
    argmax = windowMaxima(xValues, info, out.length).slice(0, out.length);
    for (let i = 0; i < out.length; i++) out[i] = argmax[i] < 0 ? -Infinity : xValues[argmax[i]];
  }
  forwardMaxima.set(x.dataId, { windows: windowsKey(attrs), argmax });
  return backend.makeTensorInfo(info.outShape, 'float32', out);
}

/** dx: each output's gradient flows back to the input position that was the maximum of its window. */
export function maxPoolGrad(args: KernelArgs<{ dy: TensorInfo; input: TensorInfo; output: TensorInfo }, MaxPoolGradAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, input } = inputs;
  if (input.dtype !== 'float32' || dy.dtype !== 'float32') return runCpuKernel('MaxPoolGrad', backend, inputs, attrs);
  const info = poolInfo(input.shape, attrs);
  const length = input.shape.reduce((a, b) => a * b, 1);
  const dyValues = float32Values(backend, dy);
  const saved = forwardMaxima.get(input.dataId);
  const argmax =
    saved?.windows === windowsKey(attrs) && saved.argmax.length === dyValues.length
      ? saved.argmax
      : windowMaxima(float32Values(backend, input), info, dyValues.length);
  if (fitsLoops(2 * dyValues.length + length)) {
    // In WebAssembly (loops.wat): the same sums in the same order.
    const dx = allocateFloat32(backend, length);
    const [[dyAt, dyRegion], [argmaxAt, argmaxRegion], [dxAt, dxRegion]] = loopRegions(dyValues.length, dyValues.length, length);
    dyRegion.set(dyValues);
    new Int32Array(argmaxRegion.buffer, argmaxRegion.byteOffset, dyValues.length).set(argmax.subarray(0, dyValues.length));
    dxRegion.fill(0);
    loops.max_pool_grad(dyAt, argmaxAt, dyValues.length, dxAt);
    dx.set(dxRegion);
    return backend.makeTensorInfo(input.shape, 'float32', dx);
  }
  const dx = allocateFloat32(backend, length, true);
  for (let i = 0; i < dyValues.length; i++) if (argmax[i] >= 0) dx[argmax[i]] += dyValues[i];
  return backend.makeTensorInfo(input.shape, 'float32', dx);
}

/**
 * The maxima MaxPool found, by its input's data id, for the MaxPoolGrad of the same input that a
 * training step runs next: searching the windows again was half the pool's cost. A tensor's values
 * never change under its data id, and the entry goes with the tensor.
 */
const forwardMaxima = new WeakMap<object, { windows: string; argmax: Int32Array }>();

/** What decides a pool's windows, besides the input's shape. */
function windowsKey(attrs: MaxPoolAttrs | MaxPoolGradAttrs): string {
  return JSON.stringify([attrs.filterSize, attrs.strides, attrs.pad, attrs.dimRoundingMode ?? null]);
}

function poolInfo(inShape: readonly number[], attrs: MaxPoolAttrs | MaxPoolGradAttrs): PoolInfo {
  return backend_util.computePool2DInfo(
    inShape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
}

/** The SIMD forward pass (channels a multiple of 4): writes the maxima into `out`, returns their input indices. */
function simdMaxima(x: Float32Array, info: PoolInfo, out: Float32Array): Int32Array {
  const [[xAt, xRegion], [outAt, outRegion], [argmaxAt, argmaxRegion]] = loopRegions(x.length, out.length, out.length);
  xRegion.set(x);
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, strideHeight, strideWidth } = info;
  const sizes = [batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, strideHeight, strideWidth];
  const window = [info.effectiveFilterHeight, info.effectiveFilterWidth, info.padInfo.top, info.padInfo.left];
  loops.max_pool(xAt, outAt, argmaxAt, ...sizes, ...window);
  out.set(outRegion);
  return new Int32Array(argmaxRegion.buffer, argmaxRegion.byteOffset, out.length).slice();
}

let bestValues = new Float64Array(0);
let argmaxScratch = new Int32Array(0);

/**
 * For every output element, the flat input index of its window's first strict maximum (−1 when the
 * window holds only NaN or −∞), in a scratch array valid until the next call. Channels are the
 * innermost loop, so the input is read in memory order; the comparison feeds selects, not branches
 * (on random data a branch mispredicts often).
 */
function windowMaxima(x: Float32Array, info: PoolInfo, outLength: number): Int32Array {
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth, strideHeight, strideWidth } = info;
  const { effectiveFilterHeight, effectiveFilterWidth } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  if (bestValues.length < channels) bestValues = new Float64Array(channels);
  if (argmaxScratch.length < outLength) argmaxScratch = new Int32Array(outLength);
  const best = bestValues;
  const argmax = argmaxScratch;
  let outIndex = 0;
  for (let b = 0; b < batchSize; b++) {
    const imageBase = b * inHeight * inWidth * channels;
    for (let outY = 0; outY < outHeight; outY++) {
      const yStart = Math.max(0, outY * strideHeight - top);
      const yEnd = Math.min(inHeight, outY * strideHeight - top + effectiveFilterHeight);
      for (let outX = 0; outX < outWidth; outX++, outIndex += channels) {
        const xStart = Math.max(0, outX * strideWidth - left);
        const xEnd = Math.min(inWidth, outX * strideWidth - left + effectiveFilterWidth);
        for (let c = 0; c < channels; c++) {
          best[c] = -Infinity;
          argmax[outIndex + c] = -1;
        }
        for (let y = yStart; y < yEnd; y++) {
          for (let xPos = xStart; xPos < xEnd; xPos++) {
            const base = imageBase + (y * inWidth + xPos) * channels;
            for (let c = 0; c < channels; c++) {
              const value = x[base + c];
              const current = best[c];
              const better = value > current;
              best[c] = better ? value : current;
              argmax[outIndex + c] = better ? base + c : argmax[outIndex + c];
            }
          }
        }
      }
    }
  }
  return argmax;
}
