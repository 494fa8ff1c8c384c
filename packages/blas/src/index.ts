// Registers the TensorFlow.js backend `blas`: the cpu backend's storage and kernels, with the heavy
// kernels (matrix products, convolutions and their gradients) replaced by system-BLAS versions.
// Registration is synchronous and idempotent; without a BLAS library it throws one line saying how to get one.
import * as tf from '@tensorflow/tfjs-core';
import { conv2D, conv2DBackpropFilter, conv2DBackpropInput, fusedConv2D } from './conv.ts';
import { ELEMENTWISE_KERNELS } from './elementwise.ts';
import { findBlasLibrary, loadBlasLibrary, type BlasLibrary } from './library.ts';
import { batchMatMul, fusedMatMul } from './matmul.ts';
import { BlasBackend } from './memory.ts';
import { maxPool, maxPoolGrad } from './pool.ts';
import { mean, sum } from './reduce.ts';
import { concat, slice, splitV } from './slice.ts';
import { gatherV2, scatterNd, transpose } from './transpose.ts';
import type { BlasKernelFunc } from './tensors.ts';

export type { StridedGemm } from './gemm.ts';

export const BLAS_BACKEND = 'blas';

export interface BlasBackendOptions {
  /** BLAS threads; 0 defers to env OCCAM_BLAS_THREADS, else the library's own default. */
  threads: number;
}

export interface BlasLibraryInfo {
  /** The library name or path that was loaded. */
  path: string;
  vendor: BlasLibrary['vendor'];
  /** Build configuration, where the library reports one (OpenBLAS: version, target CPU). */
  config: string | null;
  /** Threads the library uses now, or null when it cannot say. */
  threads: number | null;
}

/**
 * The kernels this backend replaces: matrix products and convolutions through BLAS, plus the
 * element-wise ops, reductions, slices, concatenations, transposes, row gathers and scatters and max pooling that dominate a training step once the products are fast.
 * Every other kernel is the cpu backend's.
 */
const BLAS_KERNELS: Record<string, BlasKernelFunc> = {
  [tf.BatchMatMul]: batchMatMul,
  [tf._FusedMatMul]: fusedMatMul,
  [tf.Conv2D]: conv2D,
  [tf.FusedConv2D]: fusedConv2D,
  [tf.Conv2DBackpropInput]: conv2DBackpropInput,
  [tf.Conv2DBackpropFilter]: conv2DBackpropFilter,
  [tf.Sum]: sum,
  [tf.Mean]: mean,
  [tf.Slice]: slice,
  [tf.Concat]: concat,
  [tf.SplitV]: splitV,
  [tf.Transpose]: transpose,
  [tf.GatherV2]: gatherV2,
  [tf.ScatterNd]: scatterNd,
  [tf.MaxPool]: maxPool,
  [tf.MaxPoolGrad]: maxPoolGrad,
  ...ELEMENTWISE_KERNELS,
};

/** Registers backend `blas` (once) and applies the thread count; throws when no BLAS library loads. */
export function registerBlasBackend(options: BlasBackendOptions): void {
  const library = loadBlasLibrary();
  const threads = resolveThreads(options.threads);
  if (threads > 0) library.setThreads(threads);
  // A second copy of this module (or a second call) finds the backend already there.
  if (tf.findBackendFactory(BLAS_BACKEND) !== null) return;

  tf.registerBackend(BLAS_BACKEND, () => new BlasBackend());
  for (const config of tf.getKernelsForBackend('cpu')) {
    if (!(config.kernelName in BLAS_KERNELS)) tf.registerKernel({ ...config, backendName: BLAS_BACKEND });
  }
  for (const [kernelName, kernelFunc] of Object.entries(BLAS_KERNELS)) {
    // tfjs declares kernels with untyped inputs and attributes; ours take the cpu backend and typed ones.
    tf.registerKernel({ kernelName, backendName: BLAS_BACKEND, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}

/** Which BLAS library runs the math and with how many threads; null when none can be loaded. */
export function blasLibraryInfo(): BlasLibraryInfo | null {
  const library = findBlasLibrary();
  if (library === null) return null;
  return { path: library.path, vendor: library.vendor, config: library.config, threads: library.threads() };
}

/** True when a BLAS library can be loaded here (tests and benchmarks skip the backend otherwise). */
export function isBlasAvailable(): boolean {
  return findBlasLibrary() !== null;
}

/** An explicit count wins; 0 falls back to OCCAM_BLAS_THREADS; 0 again means the library's default. */
function resolveThreads(requested: number): number {
  if (Number.isInteger(requested) && requested > 0) return requested;
  const fromEnv = Number.parseInt(process.env.OCCAM_BLAS_THREADS ?? '', 10);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 0;
}
