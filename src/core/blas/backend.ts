// Registers the TensorFlow.js backend `blas`: the cpu backend's storage and kernels, with the heavy
// kernels (matrix products, convolutions and their gradients) replaced by system-BLAS versions.
// Registration is synchronous and idempotent; without a BLAS library it throws one line saying how to get one.
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { conv2D, conv2DBackpropFilter, conv2DBackpropInput, fusedConv2D } from './conv.ts';
import { findBlasLibrary, loadBlasLibrary, type BlasLibrary } from './library.ts';
import { batchMatMul, fusedMatMul } from './matmul.ts';

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

/** The kernels this backend runs through BLAS; every other kernel is the cpu backend's. */
const BLAS_KERNELS: tf.KernelConfig[] = [
  { kernelName: tf.BatchMatMul, kernelFunc: batchMatMul },
  { kernelName: tf._FusedMatMul, kernelFunc: fusedMatMul },
  { kernelName: tf.Conv2D, kernelFunc: conv2D },
  { kernelName: tf.FusedConv2D, kernelFunc: fusedConv2D },
  { kernelName: tf.Conv2DBackpropInput, kernelFunc: conv2DBackpropInput },
  { kernelName: tf.Conv2DBackpropFilter, kernelFunc: conv2DBackpropFilter },
].map(({ kernelName, kernelFunc }) => ({
  kernelName,
  backendName: BLAS_BACKEND,
  // The kernels take the cpu backend and typed attributes; tfjs declares them loosely.
  kernelFunc: kernelFunc as unknown as tf.KernelFunc,
}));

let registered = false;

/** Registers backend `blas` (once) and applies the thread count; throws when no BLAS library loads. */
export function registerBlasBackend(options: BlasBackendOptions): void {
  const library = loadBlasLibrary();
  const threads = resolveThreads(options.threads);
  if (threads > 0) library.setThreads(threads);
  if (registered) return;

  tf.registerBackend(BLAS_BACKEND, createBackend);
  const replaced = new Set(BLAS_KERNELS.map((config) => config.kernelName));
  for (const config of tf.getKernelsForBackend('cpu')) {
    if (!replaced.has(config.kernelName)) tf.registerKernel({ ...config, backendName: BLAS_BACKEND });
  }
  for (const config of BLAS_KERNELS) tf.registerKernel(config);
  registered = true;
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

function createBackend(): MathBackendCPU {
  const backend = new MathBackendCPU();
  // The cpu backend prints "install tfjs-node to speed things up" on first use in Node; the advice
  // does not apply to a backend whose heavy kernels are native already. The field is private in its typings.
  (backend as unknown as { firstUse: boolean }).firstUse = false;
  return backend;
}

/** An explicit count wins; 0 falls back to OCCAM_BLAS_THREADS; 0 again means the library's default. */
function resolveThreads(requested: number): number {
  if (Number.isInteger(requested) && requested > 0) return requested;
  const fromEnv = Number.parseInt(process.env.OCCAM_BLAS_THREADS ?? '', 10);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 0;
}
