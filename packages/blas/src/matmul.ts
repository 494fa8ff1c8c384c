// BatchMatMul and _FusedMatMul through BLAS: every transpose combination, batch dimensions with
// numpy-style broadcasting, and the fused bias/activation epilogue. Non-float32 inputs go to the cpu kernel.
import {
  broadcast_util,
  util,
  type BatchMatMulAttrs,
  type TensorInfo,
  type _FusedMatMulAttrs,
  type _FusedMatMulInputs,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { finishProduct } from './epilogue.ts';
import { gemm } from './gemm.ts';
import { allocateFloat32 } from './memory.ts';
import { float32Values, runCpuKernel, type KernelArgs } from './tensors.ts';

/** The inputs tfjs always passes (its typings mark every input optional). */
type MatMulInputs = {
  a: TensorInfo;
  b: TensorInfo;
};

export function batchMatMul(args: KernelArgs<MatMulInputs, BatchMatMulAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { a, b } = inputs;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return runCpuKernel('BatchMatMul', backend, inputs, attrs);
  const { values, shape } = multiply(backend, a, b, attrs.transposeA, attrs.transposeB);
  return backend.makeTensorInfo(shape, 'float32', values);
}

export function fusedMatMul(args: KernelArgs<MatMulInputs & _FusedMatMulInputs, _FusedMatMulAttrs>): TensorInfo {
  const { inputs, backend, attrs } = args;
  const { a, b, bias, preluActivationWeights } = inputs;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return runCpuKernel('_FusedMatMul', backend, inputs, attrs);
  // A bias row alone (a transformer's projections) starts the product: BLAS adds onto it, with no pass after.
  const linear = (attrs.activation ?? 'linear') === 'linear';
  const rowShaped = bias !== undefined && bias.shape.length <= a.shape.length && bias.shape.slice(0, -1).every((dim) => dim === 1);
  const biasRow = bias && linear && rowShaped && bias.dtype === 'float32' ? float32Values(backend, bias) : null;
  const { values, shape, biasAdded } = multiply(backend, a, b, attrs.transposeA, attrs.transposeB, biasRow);
  return finishProduct(backend, values, shape, {
    bias: biasAdded ? undefined : bias,
    activation: attrs.activation,
    preluActivationWeights,
    leakyreluAlpha: attrs.leakyreluAlpha,
  });
}

/** op(a) · op(b) over the broadcast batch dimensions, as a new array and its shape. */
function multiply(
  backend: MathBackendCPU,
  a: TensorInfo,
  b: TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  biasRow: Float32Array | null = null,
): { values: Float32Array; shape: number[]; biasAdded: boolean } {
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  const m = transposeA ? a.shape[aRank - 1] : a.shape[aRank - 2];
  const k = transposeA ? a.shape[aRank - 2] : a.shape[aRank - 1];
  const kB = transposeB ? b.shape[bRank - 1] : b.shape[bRank - 2];
  const n = transposeB ? b.shape[bRank - 2] : b.shape[bRank - 1];
  util.assert(
    k === kB,
    () =>
      `Error in matMul: inner shapes (${k}) and (${kB}) of Tensors with shapes ${a.shape} and ` +
      `${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
  );
  const aBatchShape = a.shape.slice(0, -2);
  const bBatchShape = b.shape.slice(0, -2);
  const outBatchShape = broadcast_util.assertAndGetBroadcastShape(aBatchShape, bBatchShape);
  const batch = util.sizeFromShape(outBatchShape);
  const aBatch = util.sizeFromShape(aBatchShape);
  const bBatch = util.sizeFromShape(bBatchShape);

  const aValues = float32Values(backend, a);
  const bValues = float32Values(backend, b);
  const out = allocateFloat32(backend, batch * m * n);
  const shape = [...outBatchShape, m, n];

  if (bBatch === 1 && !transposeA) {
    // A stack of row-major matrices times one matrix is a single tall product: one BLAS call.
    const rows = aBatch * m;
    const withBias = biasRow !== null && (biasRow.length === n || biasRow.length === 1) && rows * n > 0;
    if (withBias)
      for (let row = 0; row < rows; row++) biasRow.length === n ? out.set(biasRow, row * n) : out.fill(biasRow[0], row * n, (row + 1) * n);
    gemm(false, transposeB, rows, n, k, aValues, bValues, out, withBias);
    return { values: out, shape, biasAdded: withBias };
  }
  const aIndex = broadcastSourceIndices(outBatchShape, aBatchShape);
  const bIndex = broadcastSourceIndices(outBatchShape, bBatchShape);
  const aSize = m * k;
  const bSize = k * n;
  const outSize = m * n;
  for (let i = 0; i < batch; i++) {
    const ai = aIndex === null ? i : aIndex[i];
    const bi = bIndex === null ? i : bIndex[i];
    gemm(
      transposeA,
      transposeB,
      m,
      n,
      k,
      aValues.subarray(ai * aSize, (ai + 1) * aSize),
      bValues.subarray(bi * bSize, (bi + 1) * bSize),
      out.subarray(i * outSize, (i + 1) * outSize),
    );
  }
  return { values: out, shape, biasAdded: false };
}

/**
 * For each flat index into `outShape`, the flat index into `inShape` it reads under numpy
 * broadcasting (inShape right-aligned, size-1 dimensions repeated); null when they coincide.
 */
export function broadcastSourceIndices(outShape: number[], inShape: number[]): Int32Array | null {
  const count = util.sizeFromShape(outShape);
  if (util.sizeFromShape(inShape) === count) return null;
  const offset = outShape.length - inShape.length;
  const inStrides = new Array<number>(inShape.length);
  let stride = 1;
  for (let d = inShape.length - 1; d >= 0; d--) {
    inStrides[d] = inShape[d] === 1 ? 0 : stride;
    stride *= inShape[d];
  }
  const sources = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    let remaining = i;
    let source = 0;
    for (let d = outShape.length - 1; d >= offset; d--) {
      const coordinate = remaining % outShape[d];
      remaining = (remaining - coordinate) / outShape[d];
      source += coordinate * inStrides[d - offset];
    }
    sources[i] = source;
  }
  return sources;
}
