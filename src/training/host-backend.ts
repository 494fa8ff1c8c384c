// The host backends (cpu, blas) keep every tensor's values as a plain array in this process. Code
// with loops of its own over those values (the fused ops, the replica's state and compaction)
// uses the arrays in place instead of reading them out.
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
// A type only: erased from the build, so the GPU kit's bundle still leaves blas out.
import type { StridedGemm } from '@occam/blas';

/** Whether the current backend keeps tensors in host arrays (cpu, blas). */
export function onHostBackend(): boolean {
  return tf.backend() instanceof MathBackendCPU;
}

/**
 * The Float32Array a host backend keeps for a tensor: the tensor's own memory, so writing to it
 * changes the tensor. Unlike a read, which takes it out of blas's recycling pool for good, this
 * leaves it to be recycled once the tensor is disposed: use it before then.
 */
export function hostValues(tensor: tf.Tensor): Float32Array {
  const values = (tf.backend() as MathBackendCPU).data.get(tensor.dataId).values;
  return values instanceof Float32Array ? values : Float32Array.from(values as ArrayLike<number>);
}

/** What blas's backend class adds (packages/blas/src/memory.ts), by shape: the GPU kit's bundle leaves blas out. */
interface BlasAdditions {
  allocate(length: number): Float32Array;
  stridedGemm: StridedGemm;
}

/**
 * An array for the values of a tensor about to be made on a host backend. On blas it comes from the
 * backend's recycling pool (a step's large outputs, taken fresh, cost page faults and garbage
 * collections more than their math) and goes back when that tensor is disposed; contents arbitrary.
 */
export function hostOutput(length: number): Float32Array {
  const backend = tf.backend() as MathBackendCPU & Partial<BlasAdditions>;
  return typeof backend.allocate === 'function' ? backend.allocate(length) : new Float32Array(length);
}

/** The backend's BLAS matrix product on strided views (blas), or null where it has none (cpu, and off the host). */
export function hostGemm(): StridedGemm | null {
  const backend = tf.backend() as Partial<BlasAdditions>;
  return onHostBackend() && typeof backend.stridedGemm === 'function' ? backend.stridedGemm : null;
}
