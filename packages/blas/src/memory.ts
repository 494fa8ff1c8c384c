// The blas backend class: the cpu backend plus a pool that recycles the output arrays of blas kernels.
// A training step allocates the same large arrays every time; taking them fresh from V8 costs page
// faults, zeroing and frequent full garbage collections (external memory pressure), more than the math.
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { DataId, DataType, backend_util } from '@tensorflow/tfjs-core';
import { stridedGemm } from './gemm.ts';

/** Smaller arrays are cheap to allocate and not worth tracking. */
const POOL_MIN_LENGTH = 4096;
/** At most this many bytes wait in the pool; beyond it released arrays go to the garbage collector. */
const POOL_MAX_BYTES = 512 * 1024 * 1024;

/**
 * Recycles Float32Arrays that blas kernels allocated, once the tensor holding them is disposed.
 * Safety rules, tracked per ArrayBuffer (each pooled array has its own): memory is recycled only if
 * exactly one tensor ever held it. Any second holder disowns it for good: the same array written under
 * another data id (the Complex kernel) or a view of it (the cpu Slice kernel returns subarrays). So
 * does a read out of the backend (dataSync and friends), so no memory visible outside is ever reused.
 */
class Float32Pool {
  /** Buffers of arrays from `take` → whether a tensor holds them yet. Others are never recycled. */
  private readonly owned = new WeakMap<ArrayBufferLike, 'free' | 'held'>();
  private readonly free = new Map<number, Float32Array[]>();
  private freeBytes = 0;

  /** An array of `length` floats; its contents are arbitrary unless `zeroed`. */
  take(length: number, zeroed: boolean): Float32Array {
    if (length < POOL_MIN_LENGTH) return new Float32Array(length);
    const recycled = this.free.get(length)?.pop();
    if (recycled === undefined) {
      const array = new Float32Array(length);
      this.owned.set(array.buffer, 'free');
      return array;
    }
    this.freeBytes -= recycled.byteLength;
    this.owned.set(recycled.buffer, 'free');
    if (zeroed) recycled.fill(0);
    return recycled;
  }

  /** Called when a tensor starts holding `values`: the first holder of a whole pooled array keeps it pooled. */
  bind(values: unknown): void {
    if (!ArrayBuffer.isView(values)) return;
    const state = this.owned.get(values.buffer);
    if (state === undefined) return;
    const whole = values instanceof Float32Array && values.byteOffset === 0 && values.byteLength === values.buffer.byteLength;
    if (state === 'free' && whole) this.owned.set(values.buffer, 'held');
    else this.owned.delete(values.buffer);
  }

  /** Called when the tensor holding `values` is gone. */
  release(values: unknown): void {
    if (!(values instanceof Float32Array) || this.owned.get(values.buffer) !== 'held') return;
    if (this.freeBytes + values.byteLength > POOL_MAX_BYTES) {
      this.owned.delete(values.buffer);
      return;
    }
    this.owned.set(values.buffer, 'free');
    let bucket = this.free.get(values.length);
    if (bucket === undefined) {
      bucket = [];
      this.free.set(values.length, bucket);
    }
    bucket.push(values);
    this.freeBytes += values.byteLength;
  }

  /** Whether `values` is a whole array this pool will recycle when its one tensor is disposed. */
  recycles(values: unknown): boolean {
    return ArrayBuffer.isView(values) && this.owned.get(values.buffer) === 'held';
  }

  /** Never recycle the memory behind `values` (it became visible outside the backend). */
  disown(values: unknown): void {
    if (ArrayBuffer.isView(values)) this.owned.delete(values.buffer);
  }

  clear(): void {
    this.free.clear();
    this.freeBytes = 0;
  }
}

export class BlasBackend extends MathBackendCPU {
  private readonly pool = new Float32Pool();
  /** BLAS on strided views, for host code with products of its own outside the kernels (the GPT's fused attention). */
  readonly stridedGemm = stridedGemm;

  constructor() {
    super();
    // The cpu backend prints "install tfjs-node to speed things up" on first use in Node; the advice
    // does not apply here. The field is private in its typings.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }

  /** A Float32Array for a kernel output; recycled when the tensor is disposed. Contents arbitrary unless `zeroed`. */
  allocate(length: number, zeroed = false): Float32Array {
    return this.pool.take(length, zeroed);
  }

  override write(values: backend_util.BackendValues, shape: number[], dtype: DataType): DataId {
    this.pool.bind(values);
    return super.write(values, shape, dtype);
  }

  override move(dataId: DataId, values: backend_util.BackendValues, shape: number[], dtype: DataType, refCount: number): void {
    this.pool.bind(values);
    super.move(dataId, values, shape, dtype, refCount);
  }

  /** Whether the memory of `values` goes back to the pool once its tensor is disposed (a view of it would stop that). */
  recycles(values: unknown): boolean {
    return this.pool.recycles(values);
  }

  /** What a read hands out leaves the pool for good: callers may keep it after disposing the tensor. */
  override readSync(dataId: DataId): backend_util.BackendValues {
    const values = super.readSync(dataId);
    this.pool.disown(values);
    return values;
  }

  override disposeData(dataId: DataId, force = false): boolean {
    const values = this.data.has(dataId) ? this.data.get(dataId).values : undefined;
    const result = super.disposeData(dataId, force);
    if (values !== undefined && !this.data.has(dataId)) this.pool.release(values);
    return result;
  }

  override dispose(): void {
    this.pool.clear();
    super.dispose();
  }
}

/** Whether `values` is memory the blas backend will recycle (false on any other cpu-style backend). */
export function isRecycled(backend: MathBackendCPU, values: unknown): boolean {
  return backend instanceof BlasBackend && backend.recycles(values);
}

/** An output array from the blas backend's pool, or a fresh one for any other cpu-style backend. */
export function allocateFloat32(backend: MathBackendCPU, length: number, zeroed = false): Float32Array {
  return backend instanceof BlasBackend ? backend.allocate(length, zeroed) : new Float32Array(length);
}
