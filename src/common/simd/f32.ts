// Float32 kernels in WebAssembly SIMD (f32.wat) for loops V8 runs one float at a time: the ring's
// sum of a received chunk and its own values, the masked Adam update, the ReLU layers' dropout
// product and backward pass, and the GPT's GELU and LayerNorm (its softmax rows: softmax-rows.ts).
// A SimdHeap is one instance of the module with its own memory, whose regions are carved out once
// and never move (arrays a backend may hold for a whole run); the other kernels copy their operands
// into the scratch instance (scratch.ts), and their results out into arrays from the caller's
// `allocate` (a backend's recycling pool; fresh arrays by default).
import {
  type Allocate,
  aligned,
  copyOut,
  doublesAt,
  floatsAt,
  instantiate,
  newFloats,
  PAGE_BYTES,
  scratch,
  scratchRegions,
} from './scratch.ts';

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

/** The most memory a heap may take: half of what 32-bit WebAssembly can address. */
export const SIMD_HEAP_MAX_BYTES = 2 ** 31;
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
/** `into[i] += values[i]` for every i: float32 sums, as `into[i] += values[i]` in JavaScript gives. */
export function addInPlace(into: Float32Array, values: Float32Array): void {
  if (values.length !== into.length) throw new RangeError(`cannot add ${values.length} values to ${into.length}`);
  if (into.length < SMALL) for (let i = 0; i < into.length; i++) into[i] += values[i];
  else elementwise(scratch.add, into, values);
}

/** `into[i] *= values[i]` for every i: float32 products, as JavaScript's loop gives. */
export function multiplyInPlace(into: Float32Array, values: Float32Array): void {
  if (values.length !== into.length) throw new RangeError(`cannot multiply ${into.length} values by ${values.length}`);
  if (into.length < SMALL) for (let i = 0; i < into.length; i++) into[i] *= values[i];
  else elementwise(scratch.mul, into, values);
}

/**
 * The backward pass through a ReLU whose output y was multiplied by `noise` (dropout; null for
 * none): dz = dy·noise·[y > 0], and each channel's sum of dz (the bias's gradient; channels
 * innermost) in double precision. The bits of the scalar loop: its products are exact in double.
 */
export function reluBackward(
  dy: Float32Array,
  y: Float32Array,
  noise: Float32Array | null,
  channels: number,
  allocate: Allocate = newFloats,
): { dz: Float32Array; sums: Float64Array } {
  const n = y.length;
  if (dy.length !== n || (noise && noise.length !== n) || n % channels !== 0)
    throw new RangeError(`reluBackward: ${dy.length} gradients, ${n} outputs, ${noise?.length ?? 'no'} noise values, ${channels} channels`);
  const [dyAt, yAt, noiseAt, dzAt, sumsAt] = scratchRegions(4 * n, 4 * n, 4 * n, 4 * n, 8 * channels);
  floatsAt(dyAt, n).set(dy);
  floatsAt(yAt, n).set(y);
  if (noise) floatsAt(noiseAt, n).set(noise);
  doublesAt(sumsAt, channels).fill(0);
  // noise at 0 says "none": dy's region is the first, so no operand region starts at 0 but dy's.
  if (n > 0) scratch.relu_backward(dzAt, dyAt, yAt, noise ? noiseAt : 0, n, channels, sumsAt);
  return { dz: copyOut(dzAt, n, allocate), sums: doublesAt(sumsAt, channels).slice() };
}

/**
 * Dropout noise for `seeds.length` rows of `width`: row r from its own Rng(seeds[r]) stream
 * (training/rng.ts), two values per 32 bits, low half first; keep where the 16 bits reach
 * `threshold`, else 0. The values the scalar loop over Rng.nextUint32 gives.
 */
export function dropoutNoise(seeds: Uint32Array, width: number, threshold: number, keep: number): Float32Array {
  const n = seeds.length * width;
  const [outAt, seedsAt] = scratchRegions(4 * n, 4 * seeds.length);
  new Uint32Array(scratch.memory.buffer, seedsAt, seeds.length).set(seeds);
  scratch.dropout_noise(outAt, seedsAt, seeds.length, width, threshold, keep);
  return floatsAt(outAt, n).slice();
}

/**
 * GELU's tanh form, x·σ(2u) with u = √(2/π)·(x + 0.044715·x³), in float32 (an exp within 2 ulp):
 * the values, and the slopes d/dx its gradient is (dy·slope, the bits of the same expression).
 */
export function geluForward(x: Float32Array, allocate: Allocate = newFloats): { values: Float32Array; slopes: Float32Array } {
  const n = x.length;
  const [xAt, valuesAt, slopesAt] = scratchRegions(4 * n, 4 * n, 4 * n);
  floatsAt(xAt, n).set(x);
  scratch.gelu(xAt, valuesAt, slopesAt, n);
  return { values: copyOut(valuesAt, n, allocate), slopes: copyOut(slopesAt, n, allocate) };
}

/**
 * LayerNorm over rows of `width` (a multiple of 4): (x − mean)/σ·gain + bias (none when null), the
 * mean and variance summed in double precision; also x̂ and 1/σ per row for the gradient.
 */
export function layerNormForward(
  x: Float32Array,
  gain: Float32Array,
  bias: Float32Array | null,
  width: number,
  epsilon: number,
  allocate: Allocate = newFloats,
): { values: Float32Array; normalized: Float32Array; inverseStd: Float32Array } {
  const rows = x.length / width;
  if (width % 4 !== 0 || gain.length !== width || (bias && bias.length !== width) || !Number.isInteger(rows))
    throw new RangeError(`layerNormForward: ${x.length} values, width ${width}, ${gain.length} gains, ${bias?.length ?? 0} biases`);
  const n = x.length;
  const [xAt, gainAt, biasAt, valuesAt, normalizedAt, inverseAt] = scratchRegions(4 * n, 4 * width, 4 * width, 4 * n, 4 * n, 4 * rows);
  floatsAt(xAt, n).set(x);
  floatsAt(gainAt, width).set(gain);
  if (bias) floatsAt(biasAt, width).set(bias);
  else floatsAt(biasAt, width).fill(0);
  scratch.layer_norm(xAt, gainAt, biasAt, valuesAt, normalizedAt, inverseAt, rows, width, epsilon);
  return {
    values: copyOut(valuesAt, n, allocate),
    normalized: copyOut(normalizedAt, n, allocate),
    inverseStd: floatsAt(inverseAt, rows).slice(),
  };
}

/** layerNormForward's gradients: dx, the gain's (Σ over rows of dy·x̂) and the bias's (Σ over rows of dy), both summed in double precision. */
export function layerNormBackward(
  dy: Float32Array,
  normalized: Float32Array,
  inverseStd: Float32Array,
  gain: Float32Array,
  width: number,
  allocate: Allocate = newFloats,
): { dx: Float32Array; dGain: Float32Array; dBias: Float32Array } {
  const rows = inverseStd.length;
  if (width % 4 !== 0 || dy.length !== rows * width || normalized.length !== dy.length || gain.length !== width)
    throw new RangeError(`layerNormBackward: ${dy.length} gradients, ${normalized.length} normalized, ${rows} rows of ${width}`);
  const n = dy.length;
  const [dyAt, normalizedAt, dxAt, inverseAt, gainAt, dGainAt, dBiasAt] = scratchRegions(
    4 * n,
    4 * n,
    4 * n,
    4 * rows,
    4 * width,
    8 * width,
    8 * width,
  );
  floatsAt(dyAt, n).set(dy);
  floatsAt(normalizedAt, n).set(normalized);
  floatsAt(inverseAt, rows).set(inverseStd);
  floatsAt(gainAt, width).set(gain);
  doublesAt(dGainAt, width).fill(0);
  doublesAt(dBiasAt, width).fill(0);
  scratch.layer_norm_backward(dyAt, normalizedAt, inverseAt, gainAt, dxAt, dGainAt, dBiasAt, rows, width);
  return {
    dx: copyOut(dxAt, n, allocate),
    dGain: Float32Array.from(doublesAt(dGainAt, width)),
    dBias: Float32Array.from(doublesAt(dBiasAt, width)),
  };
}

/** into = kernel(into, values) elementwise, over copies in scratch memory. */
function elementwise(kernel: (dst: number, src: number, n: number) => void, into: Float32Array, values: Float32Array): void {
  const n = into.length;
  const [intoAt, valuesAt] = scratchRegions(4 * n, 4 * n);
  floatsAt(intoAt, n).set(into);
  floatsAt(valuesAt, n).set(values);
  kernel(intoAt, valuesAt, n);
  into.set(floatsAt(intoAt, n));
}
