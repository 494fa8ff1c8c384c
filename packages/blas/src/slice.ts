// Slice of a strided region (e.g. some columns of a matrix) by copying whole innermost runs. The cpu
// kernel copies such slices one element at a time through TensorBuffer index arithmetic (~60 ns each);
// contiguous slices stay with it, as it returns them as zero-copy views.
import { slice_util, util, type SliceAttrs, type TensorInfo, type TypedArray } from '@tensorflow/tfjs-core';
import { allocateFloat32 } from './memory.ts';
import { runCpuKernel, storedValues, type KernelArgs } from './tensors.ts';

export function slice(args: KernelArgs<{ x: TensorInfo }, SliceAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  if (x.dtype === 'string' || x.dtype === 'complex64') return runCpuKernel('Slice', backend, inputs, attrs);
  const [begin, size] = slice_util.parseSliceParams(x, attrs.begin, attrs.size);
  slice_util.assertParamsValid(x, begin, size);
  const length = util.sizeFromShape(size);
  if (length === 0 || slice_util.isSliceContinous(x.shape, begin, size)) {
    return runCpuKernel('Slice', backend, inputs, attrs);
  }

  const values = storedValues(backend, x);
  const out: TypedArray = x.dtype === 'float32' ? allocateFloat32(backend, length) : util.getTypedArrayFromDType(x.dtype, length);
  const rank = x.shape.length;
  const strides = util.computeStrides(x.shape); // per dimension but the last
  const runLength = size[rank - 1];
  const position = new Array<number>(rank - 1).fill(0); // index into size[0 .. rank-2], an odometer
  for (let outOffset = 0; outOffset < length; outOffset += runLength) {
    let inOffset = begin[rank - 1];
    for (let d = 0; d < rank - 1; d++) inOffset += (begin[d] + position[d]) * strides[d];
    for (let i = 0; i < runLength; i++) out[outOffset + i] = values[inOffset + i];
    for (let d = rank - 2; d >= 0 && ++position[d] === size[d]; d--) position[d] = 0;
  }
  return backend.makeTensorInfo(size, x.dtype, out);
}
