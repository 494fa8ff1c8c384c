// Sum and Mean over the leading or the trailing axes of a float32 tensor without transposing it first
// (the cpu kernels transpose whenever the reduced axes are not innermost, e.g. for every bias gradient).
// A Sum over the leading axes (every bias gradient) is one BLAS matrix–vector product, in float32 as
// PyTorch sums; the rest is the cpu kernels' arithmetic in their order (float64 accumulation; Mean
// divides each element, rounded to float32, before summing), so those results are identical.
import { backend_util, util, type MeanAttrs, type SumAttrs, type TensorInfo } from '@tensorflow/tfjs-core';
import { columnSums } from './gemm.ts';
import { allocateFloat32 } from './memory.ts';
import { float32Values, runCpuKernel, type KernelArgs } from './tensors.ts';

export function sum(args: KernelArgs<{ x: TensorInfo }, SumAttrs>): TensorInfo {
  return reduce('Sum', args, 1);
}

export function mean(args: KernelArgs<{ x: TensorInfo }, MeanAttrs>): TensorInfo {
  const axes = util.parseAxisParam(args.attrs.axis, args.inputs.x.shape);
  const count = axes.reduce((product, axis) => product * args.inputs.x.shape[axis], 1);
  return reduce('Mean', args, count);
}

/** Σ (x / divisor) over the reduced axes; divisor 1 is a plain sum. */
function reduce(kernelName: 'Sum' | 'Mean', args: KernelArgs<{ x: TensorInfo }, SumAttrs>, divisor: number): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  if (x.dtype !== 'float32') return runCpuKernel(kernelName, backend, inputs, attrs);
  const rank = x.shape.length;
  const axes = [...new Set(util.parseAxisParam(attrs.axis, x.shape))].sort((p, q) => p - q);
  const leading = axes.every((axis, i) => axis === i);
  const trailing = axes.every((axis, i) => axis === rank - axes.length + i);
  if (!leading && !trailing) return runCpuKernel(kernelName, backend, inputs, attrs);

  const values = float32Values(backend, x);
  const reducedSize = axes.reduce((product, axis) => product * x.shape[axis], 1);
  const keptShape = x.shape.filter((_, axis) => !axes.includes(axis));
  const out = allocateFloat32(backend, util.sizeFromShape(keptShape));
  if (trailing) sumRows(values, reducedSize, divisor, out);
  else sumLeading(values, reducedSize, divisor, out);
  const shape = attrs.keepDims ? backend_util.expandShapeToKeepDim(keptShape, axes) : keptShape;
  return backend.makeTensorInfo(shape, 'float32', out);
}

/** out[i] = Σ_j values[i·rowLength + j] / divisor. */
function sumRows(values: Float32Array, rowLength: number, divisor: number, out: Float32Array): void {
  for (let i = 0, offset = 0; i < out.length; i++, offset += rowLength) {
    let total = 0;
    if (divisor === 1) for (let j = 0; j < rowLength; j++) total += values[offset + j];
    else for (let j = 0; j < rowLength; j++) total += Math.fround(values[offset + j] / divisor);
    out[i] = total;
  }
}

/** out[j] = Σ_r values[r·out.length + j] / divisor: adds whole rows, reading memory in order. */
function sumLeading(values: Float32Array, rows: number, divisor: number, out: Float32Array): void {
  const width = out.length;
  if (divisor === 1 && columnSums(values, rows, width, out)) return;
  const totals = new Float64Array(width);
  for (let r = 0, offset = 0; r < rows; r++, offset += width) {
    if (divisor === 1) for (let j = 0; j < width; j++) totals[j] += values[offset + j];
    else for (let j = 0; j < width; j++) totals[j] += Math.fround(values[offset + j] / divisor);
  }
  for (let j = 0; j < width; j++) out[j] = totals[j];
}
