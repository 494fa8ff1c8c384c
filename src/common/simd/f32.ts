// Float32 kernels in WebAssembly SIMD (f32.wat) for loops V8 runs one float at a time: the ring's
// sum of a received chunk and its own values, and the masked Adam update. A SimdHeap is one
// instance of the module with its own memory, whose regions are carved out once and never move
// (arrays a backend may hold for a whole run); addInPlace copies its operands into a scratch one.
import { F32_WASM_BASE64 } from './f32.generated.ts';

/** Adam's per-step coefficients, float32 values (training/adam.ts's adamCoefficients computes them). */
export interface AdamCoefficients {
  beta1: number;
  beta2: number;
  /** (1 − β1)·s: the gradient's scale s folds into the moment coefficients, m' = β1·m + (1−β1)·s·g. */
  gm: number;
  /** (1 − β2)·s². */
  gv: number;
  /** The learning rate with Adam's bias correction at step t. */
  stepSize: number;
  /** 1 − lr·λ: AdamW's decoupled decay (exactly 1 for Adam, and w·1 is w). */
  keep: number;
  epsilon: number;
}

interface F32Kernels {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  add(dst: number, src: number, n: number): void;
  adam(w: number, m: number, v: number, g: number, n: number, ...c: number[]): void;
  adam_masked(w: number, m: number, v: number, g: number, pos: number, n: number, ...c: number[]): void;
}

/** The part of the WebAssembly JavaScript API used here (TypeScript declares it only beside the DOM). */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: object };
}

const PAGE_BYTES = 65536;
/** The most memory a heap may take: half of what 32-bit WebAssembly can address. */
export const SIMD_HEAP_MAX_BYTES = 2 ** 31;
const wasm = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
const compiled = new wasm.Module(Buffer.from(F32_WASM_BASE64, 'base64'));

function instantiate(): F32Kernels {
  return new wasm.Instance(compiled).exports as F32Kernels;
}

/** Memory for arrays that stay put: sized once, then handed out in 16-byte-aligned regions. */
export class SimdHeap {
  private readonly kernels = instantiate();
  private usedBytes = 0;

  /** A heap of `capacityBytes` (at most SIMD_HEAP_MAX_BYTES, a RangeError beyond). */
  constructor(readonly capacityBytes: number) {
    if (capacityBytes > SIMD_HEAP_MAX_BYTES)
      throw new RangeError(`a SIMD heap of ${capacityBytes} bytes is over the ${SIMD_HEAP_MAX_BYTES} limit`);
    const have = this.kernels.memory.buffer.byteLength;
    if (capacityBytes > have) this.kernels.memory.grow(Math.ceil((capacityBytes - have) / PAGE_BYTES));
  }

  /** Bytes the regions of `lengths` 4-byte values take, alignment included. */
  static bytesFor(lengths: number[]): number {
    return lengths.reduce((sum, n) => sum + aligned(4 * n), 0);
  }

  /** A new region of n floats, zeroed. */
  floats(n: number): Float32Array {
    return new Float32Array(this.kernels.memory.buffer, this.take(4 * n), n);
  }

  /** A new region of n unsigned 32-bit integers, zeroed. */
  uint32s(n: number): Uint32Array {
    return new Uint32Array(this.kernels.memory.buffer, this.take(4 * n), n);
  }

  /**
   * Adam(W) at n weights (regions of this heap): `gradient[k]` is the gradient at `positions[k]`,
   * or at k when positions is null. With positions the moments are compacted: `m[k]` and `v[k]` belong
   * to `weights[positions[k]]`. The same bits as adamUpdate in training/adam.ts.
   */
  adam(
    weights: Float32Array,
    m: Float32Array,
    v: Float32Array,
    gradient: Float32Array,
    positions: Uint32Array | null,
    n: number,
    c: AdamCoefficients,
  ): void {
    for (const region of [weights, m, v, gradient, positions]) {
      if (region && region.buffer !== this.kernels.memory.buffer) throw new Error('adam: an array is not a region of this heap');
    }
    const coefficients = [c.beta1, c.beta2, c.gm, c.gv, c.stepSize, c.keep, c.epsilon];
    const [w, mp, vp, g] = [weights.byteOffset, m.byteOffset, v.byteOffset, gradient.byteOffset];
    if (positions) this.kernels.adam_masked(w, mp, vp, g, positions.byteOffset, n, ...coefficients);
    else this.kernels.adam(w, mp, vp, g, n, ...coefficients);
  }

  private take(bytes: number): number {
    const at = this.usedBytes;
    if (at + bytes > this.capacityBytes) throw new RangeError(`SIMD heap full: ${bytes} bytes asked, ${this.capacityBytes - at} left`);
    this.usedBytes += aligned(bytes);
    return at;
  }
}

/** Below this many values the copies cost more than the scalar loop saves. */
const SMALL = 64;
/** addInPlace's operands, copied in; it grows with the largest call (a grow replaces its buffer). */
const scratch = instantiate();
let scratchView = new Float32Array(scratch.memory.buffer);

/** `into[i] += values[i]` for every i: float32 sums, as `into[i] += values[i]` in JavaScript gives. */
export function addInPlace(into: Float32Array, values: Float32Array): void {
  const n = into.length;
  if (values.length !== n) throw new RangeError(`cannot add ${values.length} values to ${n}`);
  if (n < SMALL) {
    for (let i = 0; i < n; i++) into[i] += values[i];
    return;
  }
  const second = aligned(4 * n) / 4;
  const bytes = 8 * second;
  const have = scratch.memory.buffer.byteLength;
  if (bytes > have) {
    scratch.memory.grow(Math.ceil((bytes - have) / PAGE_BYTES));
    scratchView = new Float32Array(scratch.memory.buffer);
  }
  scratchView.set(into, 0);
  scratchView.set(values, second);
  scratch.add(0, 4 * second, n);
  into.set(scratchView.subarray(0, n));
}

/** Bytes rounded up to whole 16-byte vectors. */
function aligned(bytes: number): number {
  return Math.ceil(bytes / 16) * 16;
}
