// The blas backend's WebAssembly loops (loops.wat, assembled into loops.generated.ts): one instance
// whose memory a kernel fills with its operands, runs a loop over, and reads back, within one call.
// Its memory grows with the largest call; kernels whose operands would not fit keep their JavaScript loops.
import { LOOPS_WASM_BASE64 } from './loops.generated.ts';

interface LoopKernels {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  max_pool(x: number, out: number, argmax: number, ...sizes: number[]): void;
  max_pool_grad(dy: number, argmax: number, n: number, dx: number): void;
  bias_relu(values: number, bias: number, n: number, channels: number, relu: number): void;
  im2col(x: number, cols: number, start: number, count: number, ...sizes: number[]): void;
  binary_rows(op: number, full: number, row: number, out: number, n: number, inner: number, rowFirst: number): void;
  copy_runs(src: number, dst: number, n0: number, n1: number, n2: number, s0: number, s1: number, s2: number, run: number): void;
}

/** The part of the WebAssembly JavaScript API used here (TypeScript declares it only beside the DOM). */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: object };
}

const PAGE_BYTES = 65536;
/** The most memory the loops take: half of what 32-bit WebAssembly can address. */
const MAX_BYTES = 2 ** 31;
const wasm = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
export const loops = new wasm.Instance(new wasm.Module(Buffer.from(LOOPS_WASM_BASE64, 'base64'))).exports as LoopKernels;

/** Whether operands of these many floats fit in the loops' memory. */
export function fitsLoops(floats: number): boolean {
  return 4 * floats + 16 * 8 <= MAX_BYTES;
}

/**
 * Carves the loops' memory into 16-byte-aligned regions of these many floats, growing it as needed:
 * [byte offset, Float32Array view] per region, valid until the next call (a grow moves the buffer).
 */
export function loopRegions(...floats: number[]): [number, Float32Array][] {
  const offsets: number[] = [];
  let bytes = 0;
  for (const n of floats) {
    offsets.push(bytes);
    bytes += Math.ceil(n / 4) * 16;
  }
  const have = loops.memory.buffer.byteLength;
  if (bytes > have) loops.memory.grow(Math.ceil((bytes - have) / PAGE_BYTES));
  return offsets.map((at, i) => [at, new Float32Array(loops.memory.buffer, at, floats[i])]);
}
