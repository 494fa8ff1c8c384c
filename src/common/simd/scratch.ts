// The f32.wat module (f32.generated.ts): its kernels' signatures, fresh instances of it, and the
// scratch instance the copy-in kernels share, with the helpers that lay out its memory and copy
// results out into arrays from the caller's `allocate`.
import { F32_WASM_BASE64 } from './f32.generated.ts';

/** Where a kernel's output arrays come from; their contents are overwritten whole. */
export type Allocate = (length: number) => Float32Array;

export const newFloats: Allocate = (length) => new Float32Array(length);

export interface F32Kernels {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  add(dst: number, src: number, n: number): void;
  mul(dst: number, src: number, n: number): void;
  relu_backward(dz: number, dy: number, y: number, noise: number, n: number, channels: number, sums: number): void;
  dropout_noise(out: number, seeds: number, rows: number, width: number, threshold: number, keep: number): void;
  gelu(x: number, values: number, slopes: number, n: number): void;
  layer_norm(
    x: number,
    gain: number,
    bias: number,
    values: number,
    normalized: number,
    inverseStd: number,
    rows: number,
    width: number,
    epsilon: number,
  ): void;
  layer_norm_backward(
    dy: number,
    normalized: number,
    inverseStd: number,
    gain: number,
    dx: number,
    dGain: number,
    dBias: number,
    rows: number,
    width: number,
  ): void;
  softmax(x: number, out: number, rows: number, width: number, steps: number, scale: number): void;
  row_max_sum(x: number, maxes: number, sums: number, rows: number, width: number, steps: number, scale: number): void;
  exp_shifted(x: number, shifts: number, out: number, rows: number, width: number, steps: number, scale: number, factor: number): void;
  softmax_backward(y: number, dy: number, noise: number, out: number, rows: number, steps: number, scale: number, hasNoise: number): void;
  adam(w: number, m: number, v: number, g: number, n: number, ...c: number[]): void;
  adam_masked(w: number, m: number, v: number, g: number, pos: number, n: number, ...c: number[]): void;
}

/** The part of the WebAssembly JavaScript API used here (TypeScript declares it only beside the DOM). */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: object };
}

export const PAGE_BYTES = 65536;
const wasm = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
const compiled = new wasm.Module(Buffer.from(F32_WASM_BASE64, 'base64'));

/** A fresh instance of f32.wat, with its own memory. */
export function instantiate(): F32Kernels {
  return new wasm.Instance(compiled).exports as F32Kernels;
}

/** The operands of the copy-in kernels (f32.ts, softmax-rows.ts), copied in: it grows with the largest call. */
export const scratch = instantiate();

/**
 * Lays out consecutive 16-byte-aligned regions of these many bytes in scratch memory, growing it to
 * fit, and returns their byte offsets; take views (floatsAt, doublesAt) after, since a grow moves the buffer.
 */
export function scratchRegions(...bytes: number[]): number[] {
  const offsets: number[] = [];
  let end = 0;
  for (const size of bytes) {
    offsets.push(end);
    end += aligned(size);
  }
  const have = scratch.memory.buffer.byteLength;
  if (end > have) scratch.memory.grow(Math.ceil((end - have) / PAGE_BYTES));
  return offsets;
}

/** Copies `n` floats out of scratch into an array from `allocate`. */
export function copyOut(at: number, n: number, allocate: Allocate): Float32Array {
  const out = allocate(n);
  out.set(floatsAt(at, n));
  return out;
}

export function floatsAt(at: number, n: number): Float32Array {
  return new Float32Array(scratch.memory.buffer, at, n);
}

export function doublesAt(at: number, n: number): Float64Array {
  return new Float64Array(scratch.memory.buffer, at, n);
}

/** Bytes rounded up to whole 16-byte vectors. */
export function aligned(bytes: number): number {
  return Math.ceil(bytes / 16) * 16;
}
