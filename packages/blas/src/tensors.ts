// What the blas kernels share: reading a tensor's values from the cpu backend's storage without
// copying, and handing a call back to the cpu backend's own kernel for the cases the fast paths
// do not cover (other dtypes, NCHW, unusual broadcasts).
import {
  getKernel,
  type KernelFunc,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
  type TypedArray,
} from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

/** The arguments tfjs passes to every kernel, with the backend and attributes typed. */
export interface KernelArgs<Inputs, Attrs> {
  inputs: Inputs;
  backend: MathBackendCPU;
  attrs: Attrs;
}

/**
 * Any blas kernel, whatever its inputs and attributes; tfjs calls it through the untyped KernelFunc.
 * (`never` parameters accept every specific kernel signature.)
 */
export type BlasKernelFunc = (args: KernelArgs<never, never>) => TensorInfo | TensorInfo[];

/** The values array the backend stores for `info` (shared, not copied: never write to it). */
export function storedValues(backend: MathBackendCPU, info: TensorInfo): TypedArray {
  return backend.data.get(info.dataId).values as TypedArray;
}

/** The stored values of a float32 tensor as a Float32Array (shared, not copied: never write to it). */
export function float32Values(backend: MathBackendCPU, info: TensorInfo): Float32Array {
  const values = storedValues(backend, info);
  return values instanceof Float32Array ? values : Float32Array.from(values);
}

/** Runs the cpu backend's kernel `kernelName` on the blas backend (the storage is the same). */
export function runCpuKernel(
  kernelName: string,
  backend: MathBackendCPU,
  inputs: Record<string, TensorInfo | undefined> | TensorInfo[],
  attrs: object = {},
): TensorInfo {
  const config = getKernel(kernelName, 'cpu');
  if (config === undefined) throw new Error(`the cpu backend has no kernel ${kernelName}`);
  const kernelFunc: KernelFunc = config.kernelFunc;
  // A list of inputs (Concat's) goes as it is; named ones without the undefined entries.
  const definedInputs: Record<string, TensorInfo> = {};
  if (!Array.isArray(inputs)) for (const [name, info] of Object.entries(inputs)) if (info !== undefined) definedInputs[name] = info;
  const passed = (Array.isArray(inputs) ? inputs : definedInputs) as unknown as NamedTensorInfoMap;
  return kernelFunc({ inputs: passed, backend, attrs: attrs as NamedAttrMap }) as TensorInfo;
}

/**
 * True when a tensor of `shape` broadcast against an output of `outShape` adds one value per
 * output channel (last dimension) or a single value everywhere, without growing the output.
 */
export function broadcastsPerChannel(shape: readonly number[], outShape: readonly number[]): boolean {
  if (shape.length > outShape.length) return false;
  const size = shape.reduce((product, dim) => product * dim, 1);
  if (size === 1) return true;
  const channels = outShape[outShape.length - 1];
  return size === channels && shape[shape.length - 1] === channels;
}
