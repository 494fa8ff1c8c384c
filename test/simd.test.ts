// The WebAssembly SIMD kernels: the module in the repository is what its .wat assembles to, and
// each kernel gives the bits of the scalar JavaScript it replaces, at every length and alignment.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GENERATED, generateWasmModule } from '../scripts/gen-wasm.ts';
import { addInPlace, SimdHeap } from '../src/common/simd/f32.ts';
import { adamCoefficients, adamUpdate } from '../src/training/adam.ts';
import { Rng } from '../src/training/rng.ts';

/** Values of every magnitude and sign, with exact zeros, so roundings of all kinds occur. */
function values(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () =>
    rng.uniform() < 0.05 ? 0 : (rng.uniform() - 0.5) * 2 ** Math.floor(rng.uniform() * 60 - 30),
  );
}

describe('WebAssembly SIMD kernels', () => {
  it('f32.generated.ts is what scripts/gen-wasm.ts assembles from f32.wat (npm run gen:wasm)', async () => {
    expect(readFileSync(GENERATED, 'utf8')).toBe(await generateWasmModule());
  });

  it('addInPlace gives the bits of the scalar loop, at every length and buffer offset', () => {
    const rng = new Rng(7);
    for (const n of [0, 1, 3, 63, 64, 65, 1001, 65536, 200_003]) {
      for (const offset of [0, 1, 3]) {
        const a = values(rng, n + offset).subarray(offset);
        const b = values(rng, n + offset).subarray(offset);
        const expected = Float32Array.from(a);
        for (let i = 0; i < n; i++) expected[i] += b[i];
        const before = Float32Array.from(b);
        addInPlace(a, b);
        expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(expected.buffer)), `n ${n}, offset ${offset}`).toBe(
          true,
        );
        expect(b).toEqual(before);
      }
    }
    expect(() => addInPlace(new Float32Array(3), new Float32Array(4))).toThrow(/cannot add 4 values to 3/);
  });

  it('the Adam(W) kernel gives the bits of its scalar twin, dense and at kept positions, with and without decay', () => {
    const rng = new Rng(11);
    for (const n of [1, 5, 64, 1003]) {
      for (const density of [1, 0.3]) {
        for (const weightDecay of [0, 0.1]) {
          const positions = density === 1 ? null : Uint32Array.from({ length: n }, (_, i) => i).filter(() => rng.uniform() < density);
          const kept = positions ? positions.length : n;
          const heap = new SimdHeap(SimdHeap.bytesFor([n, n, n, kept, kept]));
          const [w, m, v, g] = [heap.floats(n), heap.floats(n), heap.floats(n), heap.floats(kept)];
          const position = positions ? heap.uint32s(kept) : null;
          position?.set(positions as Uint32Array);
          w.set(values(rng, n));
          m.set(values(rng, n));
          v.set(values(rng, n).map(Math.abs));
          const [w2, m2, v2] = [Float32Array.from(w), Float32Array.from(m), Float32Array.from(v)];
          const initial = Float32Array.from(w);
          const settings = { learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay };
          for (let t = 1; t <= 3; t++) {
            g.set(values(rng, kept));
            const c = adamCoefficients(settings, 1 / 96, t);
            heap.adam(w, m, v, g, position, kept, c);
            adamUpdate(w2, { m: m2, v: v2 }, g, positions, c);
          }
          const label = `n ${n}, density ${density}, decay ${weightDecay}`;
          for (const [a, b] of [
            [w, w2],
            [m, m2],
            [v, v2],
          ]) {
            expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer)), label).toBe(true);
          }
          if (positions) {
            // Positions not kept are never touched; kept ones moved.
            const keptSet = new Set(positions);
            for (let i = 0; i < n; i++) if (!keptSet.has(i)) expect(w[i]).toBe(initial[i]);
            if (kept > 2) expect(positions.some((i) => w[i] !== initial[i])).toBe(true);
          }
        }
      }
    }
    const heap = new SimdHeap(SimdHeap.bytesFor([4]));
    expect(() => heap.floats(8)).toThrow(/SIMD heap full/);
  });
});
