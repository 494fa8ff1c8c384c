// Conv2D, FusedConv2D and both Conv2D gradients (NHWC) as im2col + BLAS GEMM. The column matrix is
// built in chunks of output pixels in one reused buffer, so memory stays bounded for big batches:
// by loops.wat in WebAssembly memory, which BLAS reads and writes in place (JavaScript loops for
// dilated filters); 1×1 stride-1 unpadded convolutions skip im2col (the input is the column matrix).
import {
  backend_util,
  type Conv2DAttrs,
  type Conv2DBackpropFilterAttrs,
  type Conv2DBackpropInputAttrs,
  type FusedConv2DAttrs,
  type FusedConv2DInputs,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { finishProduct } from './epilogue.ts';
import { gemm } from './gemm.ts';
import { fitsLoops, loopRegions, loops } from './loops.ts';
import { allocateFloat32 } from './memory.ts';
import { float32Values, runCpuKernel, type KernelArgs } from './tensors.ts';

type ConvInfo = backend_util.Conv2DInfo;

// The inputs tfjs always passes (its typings mark every input optional).
type ConvInputs = {
  x: TensorInfo;
  filter: TensorInfo;
};
type BackpropInputInputs = {
  dy: TensorInfo;
  filter: TensorInfo;
};
type BackpropFilterInputs = {
  x: TensorInfo;
  dy: TensorInfo;
};

/** Floats per im2col chunk (4 MiB): GEMMs this size already run at full speed, and memory stays bounded. */
const CHUNK_FLOATS = 1 << 20;
/** Fewer rows than this would make each GEMM too thin to be efficient, whatever the filter size. */
const MIN_CHUNK_ROWS = 32;

export function conv2D(args: KernelArgs<ConvInputs, Conv2DAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, filter } = inputs;
  if (!isFloatNHWC(attrs.dataFormat, x, filter)) return runCpuKernel('Conv2D', backend, inputs, attrs);
  const info = convInfo(x.shape, filter.shape, attrs.strides, attrs.dilations, attrs.pad, attrs.dimRoundingMode);
  const out = convolve(backend, float32Values(backend, x), float32Values(backend, filter), info);
  return backend.makeTensorInfo(info.outShape, 'float32', out);
}

export function fusedConv2D(args: KernelArgs<ConvInputs & FusedConv2DInputs, FusedConv2DAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, filter, bias, preluActivationWeights } = inputs;
  if (!isFloatNHWC(attrs.dataFormat, x, filter)) return runCpuKernel('FusedConv2D', backend, inputs, attrs);
  const info = convInfo(x.shape, filter.shape, attrs.strides, attrs.dilations, attrs.pad, attrs.dimRoundingMode);
  const out = convolve(backend, float32Values(backend, x), float32Values(backend, filter), info);
  return finishProduct(backend, out, info.outShape, {
    bias,
    activation: attrs.activation,
    preluActivationWeights,
    leakyreluAlpha: attrs.leakyreluAlpha,
  });
}

/** dx = col2im(dy · Wᵀ): the gradient of a convolution with respect to its input. */
export function conv2DBackpropInput(args: KernelArgs<BackpropInputInputs, Conv2DBackpropInputAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { dy, filter } = inputs;
  if (!isFloatNHWC(attrs.dataFormat, dy, filter)) {
    return runCpuKernel('Conv2DBackpropInput', backend, inputs, attrs);
  }
  const info = convInfo(attrs.inputShape, filter.shape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  const dyValues = float32Values(backend, dy);
  const filterValues = float32Values(backend, filter);
  const rows = info.batchSize * info.outHeight * info.outWidth;
  const columns = info.filterHeight * info.filterWidth * info.inChannels;
  const dxLength = info.batchSize * info.inHeight * info.inWidth * info.inChannels;
  if (isPointwise(info)) {
    const dx = allocateFloat32(backend, dxLength);
    gemm(false, true, rows, info.inChannels, info.outChannels, dyValues, filterValues, dx);
    return backend.makeTensorInfo(info.inShape, 'float32', dx);
  }
  const chunkRows = rowsPerChunk(columns, rows);
  const dx = allocateFloat32(backend, dxLength);
  const adjoint = columnAdjoint(info, dx, chunkRows * columns);
  for (let start = 0; start < rows; start += chunkRows) {
    const count = Math.min(chunkRows, rows - start);
    const dyChunk = dyValues.subarray(start * info.outChannels, (start + count) * info.outChannels);
    gemm(false, true, count, columns, info.outChannels, dyChunk, filterValues, adjoint.cols);
    adjoint.add(start, count);
  }
  adjoint.finish();
  return backend.makeTensorInfo(info.inShape, 'float32', dx);
}

/** dW = im2col(x)ᵀ · dy: the gradient of a convolution with respect to its filter. */
export function conv2DBackpropFilter(args: KernelArgs<BackpropFilterInputs, Conv2DBackpropFilterAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { x, dy } = inputs;
  if (!isFloatNHWC(attrs.dataFormat, x, dy)) return runCpuKernel('Conv2DBackpropFilter', backend, inputs, attrs);
  const info = convInfo(x.shape, attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  const xValues = float32Values(backend, x);
  const dyValues = float32Values(backend, dy);
  const columns = info.filterHeight * info.filterWidth * info.inChannels;
  const rows = info.batchSize * info.outHeight * info.outWidth;
  // The GEMMs overwrite dW (the first chunk with beta = 0); only an empty batch leaves it to be zeroed.
  const dW = allocateFloat32(backend, columns * info.outChannels, rows === 0);
  if (isPointwise(info)) {
    gemm(true, false, info.inChannels, info.outChannels, rows, xValues, dyValues, dW);
  } else {
    const chunkRows = rowsPerChunk(columns, rows);
    const columnsOf = columnMaker(xValues, info, chunkRows * columns);
    for (let start = 0; start < rows; start += chunkRows) {
      const count = Math.min(chunkRows, rows - start);
      const cols = columnsOf(start, count);
      const dyChunk = dyValues.subarray(start * info.outChannels, (start + count) * info.outChannels);
      gemm(true, false, columns, info.outChannels, count, cols, dyChunk, dW, start > 0);
    }
  }
  return backend.makeTensorInfo(info.filterShape, 'float32', dW);
}

function isFloatNHWC(dataFormat: string, first: TensorInfo, second: TensorInfo): boolean {
  return dataFormat === 'NHWC' && first.dtype === 'float32' && second.dtype === 'float32';
}

function convInfo(
  inShape: readonly number[],
  filterShape: readonly number[],
  strides: [number, number] | number,
  dilations: [number, number] | number,
  pad: Conv2DAttrs['pad'],
  dimRoundingMode: Conv2DAttrs['dimRoundingMode'],
): ConvInfo {
  return backend_util.computeConv2DInfo(
    inShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    strides,
    dilations,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
}

/** Forward convolution: out[pixels, outChannels] = im2col(x) · W, written straight into the NHWC output. */
function convolve(backend: MathBackendCPU, x: Float32Array, filter: Float32Array, info: ConvInfo): Float32Array {
  const rows = info.batchSize * info.outHeight * info.outWidth;
  const columns = info.filterHeight * info.filterWidth * info.inChannels;
  const out = allocateFloat32(backend, rows * info.outChannels);
  if (isPointwise(info)) {
    gemm(false, false, rows, info.outChannels, info.inChannels, x, filter, out);
    return out;
  }
  const chunkRows = rowsPerChunk(columns, rows);
  const columnsOf = columnMaker(x, info, chunkRows * columns);
  for (let start = 0; start < rows; start += chunkRows) {
    const count = Math.min(chunkRows, rows - start);
    const cols = columnsOf(start, count);
    const outChunk = out.subarray(start * info.outChannels, (start + count) * info.outChannels);
    gemm(false, false, count, info.outChannels, columns, cols, filter, outChunk);
  }
  return out;
}

/** A 1×1 filter at stride 1 without padding: every output pixel reads exactly its input pixel. */
function isPointwise(info: ConvInfo): boolean {
  const { padInfo } = info;
  return (
    info.filterHeight === 1 &&
    info.filterWidth === 1 &&
    info.strideHeight === 1 &&
    info.strideWidth === 1 &&
    padInfo.top === 0 &&
    padInfo.left === 0 &&
    padInfo.bottom === 0 &&
    padInfo.right === 0 &&
    info.outHeight === info.inHeight &&
    info.outWidth === info.inWidth
  );
}

function rowsPerChunk(columns: number, rows: number): number {
  return Math.max(1, Math.min(rows, Math.max(MIN_CHUNK_ROWS, Math.floor(CHUNK_FLOATS / Math.max(1, columns)))));
}

/**
 * The im2col of chunks of output pixels, in one buffer of `chunkFloats` reused for every chunk: built
 * in the loops' memory (loops.wat, x copied in once) where the convolution allows, else in JavaScript.
 */
function columnMaker(x: Float32Array, info: ConvInfo, chunkFloats: number): (start: number, count: number) => Float32Array {
  if (!inLoops(info, x.length + chunkFloats)) {
    const cols = scratch(chunkFloats);
    return (start, count) => {
      im2col(x, info, start, count, cols);
      return cols;
    };
  }
  const [[xAt, xRegion], [colsAt, cols]] = loopRegions(x.length, chunkFloats);
  xRegion.set(x);
  const sizes = loopSizes(info);
  return (start, count) => {
    loops.im2col(xAt, colsAt, start, count, ...sizes, 0);
    return cols;
  };
}

/**
 * col2im into `dx`: `cols` takes each chunk's columns, `add` puts that chunk's entries back onto the
 * input positions they came from, `finish` leaves the sums in `dx`. Summed in the loops' memory
 * (loops.wat's im2col run as its adjoint) where it fits, else in JavaScript straight into dx.
 */
function columnAdjoint(
  info: ConvInfo,
  dx: Float32Array,
  chunkFloats: number,
): { cols: Float32Array; add(start: number, count: number): void; finish(): void } {
  if (!inLoops(info, dx.length + chunkFloats)) {
    const cols = scratch(chunkFloats);
    dx.fill(0);
    return { cols, add: (start, count) => col2imAdd(cols, info, start, count, dx), finish: () => {} };
  }
  const [[sumsAt, sums], [colsAt, cols]] = loopRegions(dx.length, chunkFloats);
  sums.fill(0);
  const sizes = loopSizes(info);
  return { cols, add: (start, count) => loops.im2col(sumsAt, colsAt, start, count, ...sizes, 1), finish: () => dx.set(sums) };
}

/** Whether loops.wat's im2col fits this convolution (no dilation) and operands of these many floats. */
function inLoops(info: ConvInfo, floats: number): boolean {
  return info.dilationHeight === 1 && info.dilationWidth === 1 && fitsLoops(floats);
}

/** loops.wat's im2col arguments after its pointers and pixel range. */
function loopSizes(info: ConvInfo): number[] {
  const { inHeight, inWidth, inChannels, outHeight, outWidth, filterHeight, filterWidth, strideHeight, strideWidth } = info;
  return [
    inHeight,
    inWidth,
    inChannels,
    outHeight,
    outWidth,
    filterHeight,
    filterWidth,
    strideHeight,
    strideWidth,
    info.padInfo.top,
    info.padInfo.left,
  ];
}

let scratchBuffer = new Float32Array(0);

/** A reused working buffer of at least `size` floats; only ever used inside one kernel call. */
function scratch(size: number): Float32Array {
  if (scratchBuffer.length < size) scratchBuffer = new Float32Array(size);
  return scratchBuffer;
}

/**
 * Visits the receptive field of output pixels [start, start + count): for each pixel and filter
 * row, calls `visit(columnOffset, inputOffset, length)` for the in-bounds run and `pad(columnOffset, length)`
 * for out-of-bounds parts. Column order is (filterRow, filterCol, inChannel), matching the filter layout.
 */
function forEachReceptiveRun(
  info: ConvInfo,
  start: number,
  count: number,
  visit: (column: number, input: number, length: number) => void,
  pad: (column: number, length: number) => void,
): void {
  const { inHeight, inWidth, inChannels, outHeight, outWidth, filterHeight, filterWidth } = info;
  const { strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const top = info.padInfo.top;
  const left = info.padInfo.left;
  const columns = filterHeight * filterWidth * inChannels;
  const rowLength = filterWidth * inChannels;
  const pixelsPerImage = outHeight * outWidth;
  for (let row = start; row < start + count; row++) {
    const image = Math.floor(row / pixelsPerImage);
    const pixel = row - image * pixelsPerImage;
    const outY = Math.floor(pixel / outWidth);
    const outX = pixel - outY * outWidth;
    const inY0 = outY * strideHeight - top;
    const inX0 = outX * strideWidth - left;
    const imageBase = image * inHeight * inWidth * inChannels;
    let column = (row - start) * columns;
    for (let fy = 0; fy < filterHeight; fy++, column += rowLength) {
      const inY = inY0 + fy * dilationHeight;
      if (inY < 0 || inY >= inHeight) {
        pad(column, rowLength);
        continue;
      }
      const lineBase = imageBase + inY * inWidth * inChannels;
      if (dilationWidth === 1) {
        // Without dilation a filter row reads one contiguous run of the input row.
        const firstX = Math.max(0, inX0);
        const endX = Math.min(inWidth, inX0 + filterWidth);
        const before = (firstX - inX0) * inChannels;
        const inside = Math.max(0, endX - firstX) * inChannels;
        if (before > 0) pad(column, before);
        if (inside > 0) visit(column + before, lineBase + firstX * inChannels, inside);
        const after = rowLength - before - inside;
        if (after > 0) pad(column + before + inside, after);
        continue;
      }
      for (let fx = 0; fx < filterWidth; fx++) {
        const inX = inX0 + fx * dilationWidth;
        const at = column + fx * inChannels;
        if (inX < 0 || inX >= inWidth) pad(at, inChannels);
        else visit(at, lineBase + inX * inChannels, inChannels);
      }
    }
  }
}

/** cols[(pixel - start), :] = receptive field of output pixel `pixel`, zeros where it hangs over the padding. */
function im2col(x: Float32Array, info: ConvInfo, start: number, count: number, cols: Float32Array): void {
  forEachReceptiveRun(
    info,
    start,
    count,
    (column, input, length) => {
      if (length >= 64) cols.set(x.subarray(input, input + length), column);
      else for (let i = 0; i < length; i++) cols[column + i] = x[input + i];
    },
    (column, length) => cols.fill(0, column, column + length),
  );
}

/** The adjoint of im2col: adds every column entry back onto the input position it was read from. */
function col2imAdd(cols: Float32Array, info: ConvInfo, start: number, count: number, dx: Float32Array): void {
  forEachReceptiveRun(
    info,
    start,
    count,
    (column, input, length) => {
      for (let i = 0; i < length; i++) dx[input + i] += cols[column + i];
    },
    () => {},
  );
}
