// bfloat16 on the wire: the top 16 bits of a float32, rounded to nearest even. Same exponent range
// as float32 (no overflow from gradients), 8 bits of mantissa; the ring sums in float32 and only
// the values in flight are bf16, which halves the bytes each all-reduce moves.

/** Encodes `source` into `target` (same length), rounding to nearest even; NaN stays NaN. */
export function encodeBf16(source: Float32Array, target: Uint16Array): void {
  const bits = new Uint32Array(source.buffer, source.byteOffset, source.length);
  for (let i = 0; i < bits.length; i++) target[i] = roundToBf16(bits[i]);
}

/**
 * `values[i] ← bf16(values[i] + addend[i])` for bf16 `values`, summing in float32. One pass
 * (twice as fast as decode, add, encode); `scratch` holds at least `values.length` floats.
 */
export function addToBf16(values: Uint16Array, addend: Float32Array, scratch: Float32Array): void {
  const count = values.length;
  const bits = new Uint32Array(scratch.buffer, scratch.byteOffset, count);
  for (let i = 0; i < count; i++) {
    bits[i] = values[i] << 16;
    scratch[i] += addend[i];
    values[i] = roundToBf16(bits[i]);
  }
}

/** Decodes `source` into `target` (same length): exact, bf16 values are float32 values. */
export function decodeBf16(source: Uint16Array, target: Float32Array): void {
  const bits = new Uint32Array(target.buffer, target.byteOffset, target.length);
  for (let i = 0; i < source.length; i++) bits[i] = source[i] << 16;
}

/** The bf16 nearest to the float32 with these bits (ties to even); a NaN stays a (quiet) NaN. */
function roundToBf16(u: number): number {
  return (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}
