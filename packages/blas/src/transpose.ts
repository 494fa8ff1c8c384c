// Transpose, row gathers and row scatters by copying whole runs (a transpose that keeps the last axis
// in WebAssembly, one bulk copy per run). The cpu kernels move every element
// through TensorBuffer index arithmetic (~100 ns each); a GPT step transposes its attention
// activations, gathers its embedding rows and scatters their gradient back, so those copies cost
// more than its products.
import {
  util,
  type GatherV2Attrs,
  type ScatterNdAttrs,
  type TensorInfo,
  type TransposeAttrs,
  type TypedArray,
} from '@tensorflow/tfjs-core';
import { fitsLoops, loopRegions, loops } from './loops.ts';
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
  if (run >= 4 && outer <= 3 && fitsLoops(2 * length)) {
    // In WebAssembly: one bulk copy per run, where JavaScript pays for a view or a float at a time.
    const [n0, n1, n2] = [1, 1, ...outShape.slice(0, outer)].slice(-3);
    const [s0, s1, s2] = [0, 0, ...strides.slice(0, outer)].slice(-3);
    const [[inAt, inRegion], [outAt, outRegion]] = loopRegions(length, length);
    inRegion.set(values);
    loops.copy_runs(inAt, outAt, n0, n1, n2, s0, s1, s2, run);
    out.set(outRegion);
    return backend.makeTensorInfo(outShape, x.dtype, out);
  }
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

/**
 * Sums of float32 rows into a zeroed table at row indices ([n, 1] indices: the gradient of a row
 * gather), in index order, so duplicates add up as the cpu kernel adds them; other scatters stay with it.
 */
export function scatterNd(args: KernelArgs<{ indices: TensorInfo; updates: TensorInfo }, ScatterNdAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { indices, updates } = inputs;
  const { shape } = attrs;
  const [count, depth] = indices.shape;
  if (updates.dtype !== 'float32' || indices.shape.length !== 2 || depth !== 1 || shape.length < 1 || updates.shape[0] !== count) {
    return runCpuKernel('ScatterNd', backend, inputs, attrs);
  }
  const rowLength = util.sizeFromShape(shape.slice(1));
  const ids = storedValues(backend, indices) as TypedArray;
  if (util.sizeFromShape(updates.shape) !== count * rowLength || ids.some((id) => !(id >= 0 && id < shape[0]))) {
    return runCpuKernel('ScatterNd', backend, inputs, attrs);
  }
  const values = storedValues(backend, updates) as Float32Array;
  const out = allocateFloat32(backend, util.sizeFromShape(shape), true);
  for (let i = 0; i < count; i++) {
    const [from, to] = [i * rowLength, ids[i] * rowLength];
    for (let j = 0; j < rowLength; j++) out[to + j] += values[from + j];
  }
  return backend.makeTensorInfo(shape, 'float32', out);
}
