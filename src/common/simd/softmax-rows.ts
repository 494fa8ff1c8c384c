// Softmax rows in WebAssembly SIMD (f32.wat): the softmax itself, per-row log-sum-exp, the shifted
// exp that gives the softmax from it, and the causal softmax's gradient, for the GPT's attention
// weights and every model's cross-entropy. Rows go through scratch memory in chunks of about a megabyte.
import { type Allocate, floatsAt, newFloats, scratch, scratchRegions } from './scratch.ts';

/**
 * Rows of `width` values and the positions of each that count: the first (r mod steps) + 1 of row r
 * when `steps` > 0 (a causal attention row: query r mod steps), all of them when 0.
 */
export interface SoftmaxRows {
  rows: number;
  width: number;
  steps: number;
  scale: number;
}

/** Per row, log Σ e^(scale·x) over its valid positions (max-shifted, so nothing overflows). */
export function logSumExpRows(x: Float32Array, shape: SoftmaxRows): Float32Array {
  const { rows, width, steps, scale } = checkRows('logSumExpRows', x, shape);
  const out = new Float32Array(rows);
  forRowChunks(shape, (first, count) => {
    const n = count * width;
    // The x region has one vector to spare: a row's last four values may read past it.
    const [xAt, maxesAt, sumsAt] = scratchRegions(4 * n + 16, 4 * count, 4 * count);
    floatsAt(xAt, n).set(x.subarray(first * width, first * width + n));
    scratch.row_max_sum(xAt, maxesAt, sumsAt, count, width, steps, scale);
    const [maxes, sums] = [floatsAt(maxesAt, count), floatsAt(sumsAt, count)];
    for (let k = 0; k < count; k++) out[first + k] = maxes[k] + Math.log(sums[k]);
  });
  return out;
}

/** softmax(scale·x) over each row's valid positions, 0 at the rest: one exp per value (what the attention weights use). */
export function softmaxRows(x: Float32Array, shape: SoftmaxRows, allocate: Allocate = newFloats): Float32Array {
  const { width, steps, scale } = checkRows('softmaxRows', x, shape);
  const out = allocate(x.length);
  forRowChunks(shape, (first, count) => {
    const n = count * width;
    // Each region has one vector to spare: a row's last four may read and write past it.
    const [xAt, outAt] = scratchRegions(4 * n + 16, 4 * n + 16);
    floatsAt(xAt, n).set(x.subarray(first * width, first * width + n));
    scratch.softmax(xAt, outAt, count, width, steps, scale);
    out.set(floatsAt(outAt, n), first * width);
  });
  return out;
}

/** factor·e^(scale·x − shifts[r]) at each row's valid positions, 0 at the rest: with shifts = logSumExpRows, factor·softmax. */
export function expShiftedRows(
  x: Float32Array,
  shifts: Float32Array,
  shape: SoftmaxRows,
  factor = 1,
  allocate: Allocate = newFloats,
): Float32Array {
  const { rows, width, steps, scale } = checkRows('expShiftedRows', x, shape);
  if (shifts.length !== rows) throw new RangeError(`expShiftedRows: ${shifts.length} shifts for ${rows} rows`);
  const out = allocate(x.length);
  forRowChunks(shape, (first, count) => {
    const n = count * width;
    const [xAt, shiftsAt, outAt] = scratchRegions(4 * n + 16, 4 * count, 4 * n + 16);
    floatsAt(xAt, n).set(x.subarray(first * width, first * width + n));
    floatsAt(shiftsAt, count).set(shifts.subarray(first, first + count));
    scratch.exp_shifted(xAt, shiftsAt, outAt, count, width, steps, scale, factor);
    out.set(floatsAt(outAt, n), first * width);
  });
  return out;
}

/** The gradient of expShiftedRows' causal softmax y (factor 1): scale·y·(g − Σ g·y) per row, g = dy·noise (noise: dropout's, or null). */
export function causalSoftmaxBackward(
  y: Float32Array,
  dy: Float32Array,
  noise: Float32Array | null,
  shape: SoftmaxRows,
  allocate: Allocate = newFloats,
): Float32Array {
  const { width, steps, scale } = checkRows('causalSoftmaxBackward', y, shape);
  if (steps !== width || dy.length !== y.length || (noise && noise.length !== y.length))
    throw new RangeError(
      `causalSoftmaxBackward: rows of ${width} with ${steps} steps, ${dy.length} gradients, ${noise?.length ?? 0} noise values`,
    );
  const out = allocate(y.length);
  forRowChunks(shape, (first, count) => {
    const n = count * width;
    const part = (values: Float32Array) => values.subarray(first * width, first * width + n);
    // Each region has one vector to spare: a row's last four may read and write past it.
    const [yAt, dyAt, noiseAt, outAt] = scratchRegions(4 * n + 16, 4 * n + 16, noise ? 4 * n + 16 : 0, 4 * n + 16);
    floatsAt(yAt, n).set(part(y));
    floatsAt(dyAt, n).set(part(dy));
    if (noise) floatsAt(noiseAt, n).set(part(noise));
    scratch.softmax_backward(yAt, dyAt, noiseAt, outAt, count, steps, scale, noise ? 1 : 0);
    out.set(floatsAt(outAt, n), first * width);
  });
  return out;
}

/**
 * Rows per call into scratch: about a megabyte of them (it stays in cache), whole rows, and with
 * causal rows whole multiples of `steps`, so that row k of a chunk has the query of row k of the whole.
 */
function forRowChunks({ rows, width, steps }: SoftmaxRows, each: (first: number, count: number) => void): void {
  const unit = Math.max(1, steps);
  const perChunk = unit * Math.max(1, Math.floor(ROW_CHUNK_FLOATS / (width * unit)));
  for (let first = 0; first < rows; first += perChunk) each(first, Math.min(perChunk, rows - first));
}

const ROW_CHUNK_FLOATS = 1 << 18;

function checkRows(name: string, x: Float32Array, shape: SoftmaxRows): SoftmaxRows {
  const { rows, width, steps } = shape;
  if (x.length !== rows * width || width < 1 || !Number.isInteger(steps) || steps < 0 || steps > width)
    throw new RangeError(`${name}: ${x.length} values as ${rows} rows of ${width} (steps ${steps})`);
  return shape;
}
