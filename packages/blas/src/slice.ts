// Slices and concatenations by copying whole innermost runs. The cpu kernels copy strided slices one
// element at a time through TensorBuffer index arithmetic (~60 ns each) and concatenate into fresh
// arrays; a contiguous slice of memory the pool does not recycle stays with the cpu kernel's zero-copy view.
import {
  backend_util,
  slice_util,
  util,
  type ConcatAttrs,
  type SliceAttrs,
  type SplitVAttrs,
  type TensorInfo,
  type TypedArray,
} from '@tensorflow/tfjs-core';
import { allocateFloat32, isRecycled } from './memory.ts';
import { runCpuKernel, storedValues, type KernelArgs } from './tensors.ts';

export function slice(args: KernelArgs<{ x: TensorInfo }, SliceAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  if (x.dtype === 'string' || x.dtype === 'complex64') return runCpuKernel('Slice', backend, inputs, attrs);
  const [begin, size] = slice_util.parseSliceParams(x, attrs.begin, attrs.size);
  slice_util.assertParamsValid(x, begin, size);
  const length = util.sizeFromShape(size);
  const values = storedValues(backend, x);
  if (length === 0) return runCpuKernel('Slice', backend, inputs, attrs);
  if (slice_util.isSliceContinous(x.shape, begin, size)) {
    // A view would take the whole array out of the pool for good (memory.ts): copying the part is cheaper.
    if (x.dtype !== 'float32' || !isRecycled(backend, values)) return runCpuKernel('Slice', backend, inputs, attrs);
    const start = slice_util.computeFlatOffset(begin, util.computeStrides(x.shape));
    const out = allocateFloat32(backend, length);
    out.set(values.subarray(start, start + length));
    return backend.makeTensorInfo(size, x.dtype, out);
  }

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

/** Float32 tensors side by side along `axis`, into a pooled array; other dtypes stay with the cpu kernel. */
export function concat(args: KernelArgs<TensorInfo[], ConcatAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  if (inputs.length === 0 || inputs.some((t) => t.dtype !== 'float32')) return runCpuKernel('Concat', backend, inputs, attrs);
  const axis = util.parseAxisParam(attrs.axis, inputs[0].shape)[0];
  backend_util.assertParamsConsistent(
    inputs.map((t) => t.shape),
    axis,
  );
  const outShape = backend_util.computeOutShape(
    inputs.map((t) => t.shape),
    axis,
  );
  const out = allocateFloat32(backend, util.sizeFromShape(outShape));
  const outer = util.sizeFromShape(outShape.slice(0, axis));
  // Row `o` of the output is each input's row `o` in turn, a row being everything from `axis` in.
  const parts = inputs.map((t) => ({ values: storedValues(backend, t), inner: util.sizeFromShape(t.shape.slice(axis)) }));
  let at = 0;
  for (let o = 0; o < outer; o++) {
    for (const { values, inner } of parts) {
      const from = o * inner;
      if (inner >= 64) out.set(values.subarray(from, from + inner), at);
      else for (let i = 0; i < inner; i++) out[at + i] = values[from + i];
      at += inner;
    }
  }
  return backend.makeTensorInfo(outShape, 'float32', out);
}

/** tf.split's pieces, each a slice above (the cpu kernel's would be views, or element-wise copies). */
export function splitV(args: KernelArgs<{ x: TensorInfo }, SplitVAttrs>): TensorInfo[] {
  const { inputs, backend, attrs } = args;
  const { x } = inputs;
  const axis = util.parseAxisParam(attrs.axis, x.shape)[0];
  const sizes = backend_util.prepareSplitSize(x, attrs.numOrSizeSplits, axis);
  const begin = new Array<number>(x.shape.length).fill(0);
  return sizes.map((length) => {
    const size = [...x.shape];
    size[axis] = length;
    const piece = slice({ inputs: { x }, backend, attrs: { begin: [...begin], size } });
    begin[axis] += length;
    return piece;
  });
}
