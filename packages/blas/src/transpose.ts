// Transpose and row gathers by copying whole runs. The cpu kernels move every element through
// TensorBuffer index arithmetic (~100 ns each); a GPT step transposes its attention activations
// and gathers its embedding rows every layer, so those copies cost more than its products.
import { util, type GatherV2Attrs, type TensorInfo, type TransposeAttrs, type TypedArray } from '@tensorflow/tfjs-core';
import { allocateFloat32 } from './memory.ts';
import { runCpuKernel, storedValues, type KernelArgs } from './tensors.ts';

export function transpose(args: KernelArgs<{ x: TensorInfo }, TransposeAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  const perm = attrs.perm;
  if (x.dtype !== 'float32' || x.shape.length < 2) return runCpuKernel('Transpose', backend, inputs, attrs);
  const rank = x.shape.length;
  const outShape = perm.map((axis) => x.shape[axis]);
  const length = util.sizeFromShape(x.shape);
  const values = storedValues(backend, x);
  const out = allocateFloat32(backend, length);
  const inStrides = [...util.computeStrides(x.shape), 1];
  // Output order walks the input with these strides; a kept last axis copies runs of its length.
  const strides = perm.map((axis) => inStrides[axis]);
  const run = perm[rank - 1] === rank - 1 ? x.shape[rank - 1] : 1;
  const outer = run === 1 ? rank : rank - 1; // axes the odometer counts over
  const position = new Array<number>(outer).fill(0);
  let inOffset = 0;
  for (let outOffset = 0; outOffset < length; outOffset += run) {
    if (run === 1) out[outOffset] = values[inOffset];
    else if (run >= 16) out.set(values.subarray(inOffset, inOffset + run), outOffset);
    else for (let i = 0; i < run; i++) out[outOffset + i] = values[inOffset + i];
    for (let d = outer - 1; d >= 0; d--) {
      inOffset += strides[d];
      if (++position[d] < outShape[d]) break;
      inOffset -= strides[d] * outShape[d];
      position[d] = 0;
    }
  }
  return backend.makeTensorInfo(outShape, x.dtype, out);
}

/** Rows of a float32 table by index (axis 0, no batch dimensions); other gathers stay with the cpu kernel. */
export function gatherV2(args: KernelArgs<{ x: TensorInfo; indices: TensorInfo }, GatherV2Attrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, indices } = inputs;
  const axis = util.parseAxisParam(attrs.axis, x.shape)[0];
  if (x.dtype !== 'float32' || axis !== 0 || attrs.batchDims !== 0 || x.shape.length < 1) {
    return runCpuKernel('GatherV2', backend, inputs, attrs);
  }
  const rows = x.shape[0];
  const rowLength = util.sizeFromShape(x.shape.slice(1));
  const ids = storedValues(backend, indices) as TypedArray;
  for (let i = 0; i < ids.length; i++) {
    if (!(ids[i] >= 0 && ids[i] < rows)) return runCpuKernel('GatherV2', backend, inputs, attrs); // its error names the index
  }
  const values = storedValues(backend, x);
  const out = allocateFloat32(backend, ids.length * rowLength);
  for (let i = 0; i < ids.length; i++) out.set(values.subarray(ids[i] * rowLength, (ids[i] + 1) * rowLength), i * rowLength);
  return backend.makeTensorInfo([...indices.shape, ...x.shape.slice(1)], x.dtype, out);
}
