// Element-wise kernels (Add, Multiply, Sqrt, Relu, Step, …) with one tight loop per operation; on
// large arrays, Add and Sub of equal shapes as a BLAS axpy and the four arithmetic ops in
// WebAssembly SIMD (loops.wat's binary_rows). The cpu
// backend routes every op through one shared loop that calls the op as a function, so V8 cannot inline
// it and each element costs ~10 ns; an optimizer step on a million weights spent most of its time there.
import { util, type TensorInfo } from '@tensorflow/tfjs-core';
import { addArrays } from './gemm.ts';
import { fitsLoops, loopRegions, loops } from './loops.ts';
import { allocateFloat32 } from './memory.ts';
import { float32Values, runCpuKernel, type BlasKernelFunc, type KernelArgs } from './tensors.ts';

/** A loop over `out` reading `a` and `b` in one broadcast pattern (see BinaryPattern). */
type BinaryLoop = (a: Float32Array, b: Float32Array, out: Float32Array, inner: number) => void;
type UnaryLoop = (x: Float32Array, out: Float32Array, parameter: number) => void;

/** How the two inputs of a binary op line up with the output. */
type BinaryPattern =
  | 'same' // both have the output's size
  | 'scalarA' // a has one element
  | 'scalarB'
  | 'tileA' // a repeats along the leading output dimensions (e.g. a bias row)
  | 'tileB'
  | 'rowA' // a has one element per output row of `inner` elements (e.g. [n, 1] against [n, k])
  | 'rowB';

type BinaryLoops = Record<BinaryPattern, BinaryLoop>;

/**
 * Compiles `expression` (over `a` and `b`) into one loop per broadcast pattern. Each loop is its own
 * function, so V8 specialises it for this op alone; a shared loop calling `op(a, b)` would not inline.
 */
function compileBinaryLoops(expression: string): BinaryLoops {
  const loop = (body: string): BinaryLoop => new Function('A', 'B', 'out', 'inner', body) as BinaryLoop;
  const apply = (a: string, b: string, at: string) => `{ const a = ${a}; const b = ${b}; out[${at}] = ${expression}; }`;
  return {
    same: loop(`for (let i = 0, n = out.length; i < n; i++) ${apply('A[i]', 'B[i]', 'i')}`),
    scalarA: loop(`const a0 = A[0]; for (let i = 0, n = out.length; i < n; i++) ${apply('a0', 'B[i]', 'i')}`),
    scalarB: loop(`const b0 = B[0]; for (let i = 0, n = out.length; i < n; i++) ${apply('A[i]', 'b0', 'i')}`),
    tileA: loop(
      `for (let row = 0, n = out.length; row < n; row += inner)
         for (let j = 0; j < inner; j++) ${apply('A[j]', 'B[row + j]', 'row + j')}`,
    ),
    tileB: loop(
      `for (let row = 0, n = out.length; row < n; row += inner)
         for (let j = 0; j < inner; j++) ${apply('A[row + j]', 'B[j]', 'row + j')}`,
    ),
    rowA: loop(
      `for (let r = 0, row = 0, n = out.length; row < n; r++, row += inner) {
         const a0 = A[r];
         for (let j = 0; j < inner; j++) ${apply('a0', 'B[row + j]', 'row + j')}
       }`,
    ),
    rowB: loop(
      `for (let r = 0, row = 0, n = out.length; row < n; r++, row += inner) {
         const b0 = B[r];
         for (let j = 0; j < inner; j++) ${apply('A[row + j]', 'b0', 'row + j')}
       }`,
    ),
  };
}

/** The broadcast pattern of an input of `shape` against `outShape`, with the row length it needs; null when none fits. */
function patternOf(
  shape: readonly number[],
  outShape: readonly number[],
): { kind: 'same' | 'scalar' | 'tile' | 'row'; inner: number } | null {
  const size = util.sizeFromShape(shape as number[]);
  const outSize = util.sizeFromShape(outShape as number[]);
  if (size === outSize) return { kind: 'same', inner: outSize };
  if (size === 1) return { kind: 'scalar', inner: outSize };
  // Drop leading/trailing 1s, then see whether what is left is a suffix or a prefix of the output shape.
  let first = 0;
  while (first < shape.length && shape[first] === 1) first++;
  let last = shape.length;
  while (last > first && shape[last - 1] === 1) last--;
  const core = shape.slice(first, last);
  const trailingOnes = shape.length - last;
  const suffixStart = outShape.length - core.length;
  if (trailingOnes === 0 && core.every((dim, i) => dim === outShape[suffixStart + i])) {
    return { kind: 'tile', inner: size };
  }
  // A prefix: the output dimensions before the core are all 1, the core matches, the rest is the row.
  const prefixStart = outShape.length - shape.length + first;
  const onesBefore = outShape.slice(0, prefixStart).every((dim) => dim === 1);
  if (onesBefore && core.every((dim, i) => dim === outShape[prefixStart + i])) {
    return { kind: 'row', inner: outSize / size };
  }
  return null;
}

/** A kernel for a float32 binary op; other dtypes, complex numbers and unusual broadcasts go to the cpu kernel. */
function binaryKernel(kernelName: string, expression: string) {
  const loops = compileBinaryLoops(expression);
  return (args: KernelArgs<{ a: TensorInfo; b: TensorInfo }, object>): TensorInfo => {
    const { inputs, backend } = args;
    const { a, b } = inputs;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return runCpuKernel(kernelName, backend, inputs, args.attrs);
    const outShape = broadcastShape(a.shape, b.shape);
    if (outShape === null) return runCpuKernel(kernelName, backend, inputs, args.attrs);
    const aPattern = patternOf(a.shape, outShape);
    const bPattern = patternOf(b.shape, outShape);
    const choice = choosePattern(aPattern, bPattern);
    if (choice === null) return runCpuKernel(kernelName, backend, inputs, args.attrs);
    const out = allocateFloat32(backend, util.sizeFromShape(outShape));
    const [aValues, bValues] = [float32Values(backend, a), float32Values(backend, b)];
    if (out.length >= SIMD_MIN_LENGTH && largeBinary(kernelName, choice, aValues, bValues, out)) {
      return backend.makeTensorInfo(outShape, 'float32', out);
    }
    if (out.length > 0) loops[choice.pattern](aValues, bValues, out, choice.inner);
    return backend.makeTensorInfo(outShape, 'float32', out);
  };
}

/** Add and Sub of equal shapes (the residual connections and their gradients) are a BLAS axpy: no copies into WebAssembly. */
const AXPY_SIGNS: Partial<Record<string, 1 | -1>> = { Add: 1, Sub: -1 };

/** The ops loops.wat's binary_rows computes, by its op code. */
const SIMD_BINARY_OPS: Partial<Record<string, number>> = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3 };

/** Below this many outputs the copies into WebAssembly memory (or a call into BLAS) cost more than the loop saves. */
const SIMD_MIN_LENGTH = 4096;

/** out = a op b on a large output, through BLAS or WebAssembly SIMD; false (nothing written) when neither applies. */
function largeBinary(
  kernelName: string,
  choice: { pattern: BinaryPattern; inner: number },
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
) {
  const sign = AXPY_SIGNS[kernelName];
  if (sign !== undefined && choice.pattern === 'same' && addArrays(a, b, sign, out)) return true;
  const simdOp = SIMD_BINARY_OPS[kernelName];
  return simdOp !== undefined && simdBinary(simdOp, choice, a, b, out);
}

/**
 * out = a op b in WebAssembly SIMD when one side is the whole output and the other the whole
 * output too or a repeating row; false (nothing written) for the other patterns or operands too big.
 */
function simdBinary(op: number, choice: { pattern: BinaryPattern; inner: number }, a: Float32Array, b: Float32Array, out: Float32Array) {
  const n = out.length;
  const rowFirst = choice.pattern === 'tileA';
  if (choice.pattern !== 'same' && choice.pattern !== 'tileB' && !rowFirst) return false;
  const [full, row] = rowFirst ? [b, a] : [a, b];
  const inner = choice.pattern === 'same' ? n : choice.inner;
  // Each region keeps four floats after it: binary_rows' last vector may run past the end.
  if (inner < 1 || !fitsLoops(2 * n + inner + 12)) return false;
  const [[fullAt, fullRegion], [rowAt, rowRegion], [outAt, outRegion]] = loopRegions(n + 4, inner + 4, n + 4);
  fullRegion.set(full);
  rowRegion.set(row);
  loops.binary_rows(op, fullAt, rowAt, outAt, n, inner, rowFirst ? 1 : 0);
  out.set(outRegion.subarray(0, n));
  return true;
}

function choosePattern(a: ReturnType<typeof patternOf>, b: ReturnType<typeof patternOf>): { pattern: BinaryPattern; inner: number } | null {
  if (a === null || b === null) return null;
  if (a.kind === 'same' && b.kind === 'same') return { pattern: 'same', inner: 0 };
  if (a.kind === 'same') {
    if (b.kind === 'scalar') return { pattern: 'scalarB', inner: 0 };
    return { pattern: b.kind === 'tile' ? 'tileB' : 'rowB', inner: b.inner };
  }
  if (b.kind === 'same') {
    if (a.kind === 'scalar') return { pattern: 'scalarA', inner: 0 };
    return { pattern: a.kind === 'tile' ? 'tileA' : 'rowA', inner: a.inner };
  }
  return null; // both sides broadcast (e.g. [n, 1] against [1, k]): the cpu kernel handles it
}

/** The numpy broadcast of two shapes, or null when they are incompatible (the cpu kernel then throws). */
function broadcastShape(a: readonly number[], b: readonly number[]): number[] | null {
  const rank = Math.max(a.length, b.length);
  const shape = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return null;
    shape[i] = da === 1 ? db : da;
  }
  return shape;
}

/**
 * Unary element formulas over `x` (and the op's numeric attribute `parameter`), with the cpu backend's
 * results. Relu and Step are written without data-dependent branches: on activations, whose signs are
 * random, a branch mispredicts half the time and costs 5 ns per element instead of 1.
 */
const UNARY_EXPRESSIONS = {
  Sqrt: 'Math.sqrt(x)',
  Rsqrt: '1 / Math.sqrt(x)',
  Square: 'x * x',
  Exp: 'Math.exp(x)',
  Log: 'Math.log(x)',
  Neg: '-x',
  Abs: 'Math.abs(x)',
  Reciprocal: '1 / x',
  // max(0, x) as (x + |x|) / 2; -Infinity, the one input where that differs, is tested for (never taken, so free).
  Relu: 'x === -Infinity ? 0 : 0.5 * (x + Math.abs(x))',
  Relu6: 'Math.min(Math.max(0, x), 6)',
  Elu: 'x >= 0 ? x : Math.exp(x) - 1',
  Sigmoid: '1 / (1 + Math.exp(-x))',
  Tanh: 'Math.tanh(x)',
  // x > 0 ? 1 : alpha, with the comparison used as a number; NaN stays NaN as in the cpu kernel.
  Step: 'x !== x ? x : parameter + (1 - parameter) * +(x > 0)',
  LeakyRelu: 'x < 0 ? parameter * x : x',
} as const;

export type UnaryOp = keyof typeof UNARY_EXPRESSIONS;

/** The numeric attribute each parameterised op reads as `parameter`. */
const UNARY_PARAMETERS: Partial<Record<UnaryOp, string>> = { Step: 'alpha', LeakyRelu: 'alpha' };

/** One compiled loop per op (see compileBinaryLoops for why); `out` may be `x` itself for in-place use. */
export const UNARY_LOOPS = Object.fromEntries(
  Object.entries(UNARY_EXPRESSIONS).map(([op, expression]) => [
    op,
    new Function(
      'X',
      'out',
      'parameter',
      `for (let i = 0, n = out.length; i < n; i++) { const x = X[i]; out[i] = ${expression}; }`,
    ) as UnaryLoop,
  ]),
) as Record<UnaryOp, UnaryLoop>;

/** A kernel for a float32 unary op; other dtypes go to the cpu kernel. */
function unaryKernel(op: UnaryOp) {
  const loop = UNARY_LOOPS[op];
  const parameterAttr = UNARY_PARAMETERS[op];
  return (args: KernelArgs<{ x: TensorInfo }, Record<string, unknown>>): TensorInfo => {
    const { inputs, backend, attrs } = args;
    const { x } = inputs;
    if (x.dtype !== 'float32') return runCpuKernel(op, backend, inputs, attrs);
    const values = float32Values(backend, x);
    const out = allocateFloat32(backend, values.length);
    loop(values, out, parameterAttr === undefined ? 0 : Number(attrs[parameterAttr]));
    return backend.makeTensorInfo(x.shape, 'float32', out);
  };
}

/** Binary element formulas are the cpu backend's too, so both backends give the same float32 results. */
export const ELEMENTWISE_KERNELS: Record<string, BlasKernelFunc> = {
  Add: binaryKernel('Add', 'a + b'),
  Sub: binaryKernel('Sub', 'a - b'),
  Multiply: binaryKernel('Multiply', 'a * b'),
  RealDiv: binaryKernel('RealDiv', 'a / b'),
  Maximum: binaryKernel('Maximum', 'Math.max(a, b)'),
  Minimum: binaryKernel('Minimum', 'Math.min(a, b)'),
  SquaredDifference: binaryKernel('SquaredDifference', '(a - b) * (a - b)'),
  ...Object.fromEntries(Object.keys(UNARY_EXPRESSIONS).map((op) => [op, unaryKernel(op as UnaryOp)])),
};
