// The WebAssembly SIMD kernels: the module in the repository is what its .wat assembles to, and
// each kernel gives the bits of the scalar JavaScript it replaces, at every length and alignment.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateWasmModule, WASM_MODULES } from '../scripts/gen-wasm.ts';
import { addInPlace, dropoutNoise, geluForward, multiplyInPlace, reluBackward, SimdHeap } from '../src/common/simd/f32.ts';
import { causalSoftmaxBackward, expShiftedRows, logSumExpRows, softmaxRows } from '../src/common/simd/softmax-rows.ts';
import { adamCoefficients, adamUpdate } from '../src/training/adam.ts';
import { DeviceState } from '../src/training/device-state.ts';
import { selectBackend } from '../src/training/engine.ts';
import { Rng } from '../src/training/rng.ts';

/** Values of every magnitude and sign, with exact zeros, so roundings of all kinds occur. */
function values(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () =>
    rng.uniform() < 0.05 ? 0 : (rng.uniform() - 0.5) * 2 ** Math.floor(rng.uniform() * 60 - 30),
  );
}

describe('WebAssembly SIMD kernels', () => {
  it('each .generated.ts is what scripts/gen-wasm.ts assembles from its .wat (npm run gen:wasm)', async () => {
    for (const { wat, generated, constant } of WASM_MODULES)
      expect(readFileSync(generated, 'utf8'), generated).toBe(await generateWasmModule(wat, constant));
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

  it('multiplyInPlace and reluBackward give the bits of their scalar loops, at every shape, with and without noise', () => {
    const rng = new Rng(13);
    const bits = (a: Float32Array | Float64Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    for (const [rows, channels] of [
      [1, 1],
      [3, 5],
      [7, 4],
      [64, 33],
      [128, 1024],
    ]) {
      const n = rows * channels;
      const [dy, y] = [values(rng, n), values(rng, n)];
      const dropped = Float32Array.from({ length: n }, () => (rng.uniform() < 0.3 ? 0 : 1.25));
      const product = Float32Array.from(y);
      multiplyInPlace(product, dropped);
      const expectedProduct = Float32Array.from(y, (value, i) => value * dropped[i]);
      expect(bits(product).equals(bits(expectedProduct)), `product ${rows}×${channels}`).toBe(true);
      for (const noise of [null, dropped]) {
        const dz = new Float32Array(n);
        const sums = new Float64Array(channels);
        for (let i = 0; i < n; i++) {
          const g = noise ? dy[i] * noise[i] * +(y[i] > 0) : dy[i] * +(y[i] > 0);
          dz[i] = g;
          sums[i % channels] += g;
        }
        const got = reluBackward(dy, y, noise, channels);
        const label = `${rows}×${channels}, ${noise ? 'noise' : 'no noise'}`;
        expect(bits(got.dz).equals(bits(dz)), `dz ${label}`).toBe(true);
        expect(bits(got.sums).equals(bits(sums)), `sums ${label}`).toBe(true);
      }
    }
    expect(() => reluBackward(new Float32Array(6), new Float32Array(6), null, 4)).toThrow(/6 outputs, no noise values, 4 channels/);
  });

  it("dropoutNoise gives each row its own Rng stream's values, two per 32 bits, at any width", () => {
    for (const [rows, width, rate] of [
      [1, 1, 0.5],
      [3, 7, 0.1],
      [128, 1024, 0.2],
      [5, 33, 0.9],
    ]) {
      const seeds = Uint32Array.from({ length: rows }, (_, r) => (r * 2654435761) >>> 0);
      const [threshold, keep] = [Math.round(rate * 65536), 1 / (1 - rate)];
      const expected = new Float32Array(rows * width);
      for (let r = 0; r < rows; r++) {
        const rng = new Rng(seeds[r]);
        for (let col = 0; col < width; col += 2) {
          const bits = rng.nextUint32();
          expected[r * width + col] = (bits & 0xffff) < threshold ? 0 : keep;
          if (col + 1 < width) expected[r * width + col + 1] = bits >>> 16 < threshold ? 0 : keep;
        }
      }
      const got = dropoutNoise(seeds, width, threshold, keep);
      expect(got).toEqual(expected);
      const dropped = got.filter((value) => value === 0).length / got.length;
      if (got.length > 10000) expect(dropped).toBeCloseTo(rate, 1);
    }
  });

  it('GELU and its gradient close to the double-precision formula at every magnitude (error ∝ the float32 argument of exp), NaN kept', () => {
    const rng = new Rng(17);
    const x = Float32Array.from({ length: 4099 }, (_, i) =>
      i < 8 ? [0, -0, 1e-30, -1e-30, 50, -50, 200, -200][i] : (rng.uniform() - 0.5) * 24,
    );
    const { values: out, slopes } = geluForward(x);
    const [scale, cubic] = [Math.sqrt(2 / Math.PI), 0.044715];
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      const argument = -2 * scale * v * (1 + cubic * v * v);
      const gate = 1 / (1 + Math.exp(argument));
      // Rounding the argument to float32 moves exp by about 2^-24 of |argument|, relatively; a gate
      // below float32's range (x < −10) is about 1e-39, not 0.
      const relative = 2e-7 * (4 + Math.abs(argument));
      const second = v * gate * (1 - gate) * 2 * scale * (1 + 3 * cubic * v * v);
      const slope = gate + second;
      expect(Math.abs(out[i] - v * gate), `gelu(${v})`).toBeLessThanOrEqual(relative * Math.abs(v) * (gate + 1e-30));
      expect(Math.abs(slopes[i] - slope), `gelu'(${v})`).toBeLessThanOrEqual(relative * (gate + Math.abs(second) + 1e-30));
    }
    expect(Number.isNaN(geluForward(Float32Array.of(Number.NaN)).values[0])).toBe(true);
  });

  it('softmax rows (log Σ e^(scale·x), the shifted exp and the one-exp softmax) match double precision, causal or whole, at widths that are not whole vectors, across chunks', () => {
    const rng = new Rng(11);
    // Causal rows of width 7 and 48 (a chunk of 2^18 floats would end mid-sequence at 48), vocabulary rows of 5 and 65 599 (one row a chunk).
    for (const [rows, width, steps, scale] of [
      [14, 7, 7, 0.5],
      [48 * 120, 48, 48, 0.125],
      [3, 5, 0, 1],
      [5, 65_599, 0, 1],
    ]) {
      const x = Float32Array.from({ length: rows * width }, () => (rng.uniform() - 0.5) * 40);
      const shape = { rows, width, steps, scale };
      const lse = logSumExpRows(x, shape);
      const softmax = expShiftedRows(x, lse, shape, 2);
      // Written over NaNs: every position, masked ones too, must be set.
      const direct = softmaxRows(x, shape, (length) => new Float32Array(length).fill(Number.NaN));
      let [lseError, softmaxError, directError, masked] = [0, 0, 0, 0];
      for (let r = 0; r < rows; r++) {
        const valid = steps ? (r % steps) + 1 : width;
        const row = Array.from(x.subarray(r * width, r * width + valid), (v) => scale * v);
        const max = row.reduce((a, b) => Math.max(a, b), -Infinity);
        const exact = max + Math.log(row.reduce((sum, v) => sum + Math.exp(v - max), 0));
        lseError = Math.max(lseError, Math.abs(lse[r] - exact) / Math.max(1, Math.abs(exact)));
        for (let c = 0; c < valid; c++) {
          const want = 2 * Math.exp(row[c] - exact);
          softmaxError = Math.max(softmaxError, Math.abs(softmax[r * width + c] - want) / (want + 1e-30));
          directError = Math.max(directError, Math.abs(direct[r * width + c] - want / 2) / (want / 2 + 1e-30));
        }
        for (let c = valid; c < width; c++) if (softmax[r * width + c] !== 0 || direct[r * width + c] !== 0) masked++;
      }
      expect(lseError, `width ${width}`).toBeLessThanOrEqual(1e-5);
      expect(softmaxError, `width ${width}`).toBeLessThanOrEqual(1e-5);
      expect(directError, `width ${width}`).toBeLessThanOrEqual(1e-5);
      expect(masked, `width ${width}: masked positions not 0`).toBe(0);
    }
    expect(() => logSumExpRows(new Float32Array(10), { rows: 3, width: 4, steps: 0, scale: 1 })).toThrow(/10 values as 3 rows of 4/);
  });

  it("the causal softmax's gradient matches double precision, with and without dropout noise, across chunks", () => {
    const rng = new Rng(12);
    for (const [rows, steps] of [
      [21, 7],
      [48 * 120, 48],
    ]) {
      const shape = { rows, width: steps, steps, scale: 0.25 };
      const x = Float32Array.from({ length: rows * steps }, () => (rng.uniform() - 0.5) * 8);
      const y = expShiftedRows(x, logSumExpRows(x, shape), shape);
      const dy = Float32Array.from(x, () => rng.uniform() - 0.5);
      const noise = Float32Array.from(x, () => (rng.uniform() < 0.2 ? 0 : 1.25));
      for (const n of [null, noise]) {
        const dx = causalSoftmaxBackward(y, dy, n, shape);
        let [error, masked] = [0, 0];
        for (let r = 0; r < rows; r++) {
          const valid = (r % steps) + 1;
          const at = r * steps;
          const g = (c: number) => dy[at + c] * (n ? n[at + c] : 1);
          let dot = 0;
          for (let c = 0; c < valid; c++) dot += g(c) * y[at + c];
          for (let c = 0; c < valid; c++) error = Math.max(error, Math.abs(dx[at + c] - 0.25 * y[at + c] * (g(c) - dot)));
          for (let c = valid; c < steps; c++) if (dx[at + c] !== 0) masked++;
        }
        expect(error, `rows of ${steps}, noise ${n !== null}`).toBeLessThanOrEqual(1e-6);
        expect(masked).toBe(0);
      }
    }
  });

  it('the Adam(W) kernel gives the bits of its scalar twin, dense and at kept positions (moments packed), with and without decay', () => {
    const rng = new Rng(11);
    for (const n of [1, 5, 64, 1003]) {
      for (const density of [1, 0.3]) {
        for (const weightDecay of [0, 0.1]) {
          const positions = density === 1 ? null : Uint32Array.from({ length: n }, (_, i) => i).filter(() => rng.uniform() < density);
          const kept = positions ? positions.length : n;
          const heap = new SimdHeap(SimdHeap.bytesFor([n, kept, kept, kept, kept]));
          const [w, m, v, g] = [heap.floats(n), heap.floats(kept), heap.floats(kept), heap.floats(kept)];
          const position = positions ? heap.uint32s(kept) : null;
          position?.set(positions as Uint32Array);
          // The twin holds dense moments; the kernel the kept ones, in order.
          const [w2, m2, v2] = [values(rng, n), values(rng, n), values(rng, n).map(Math.abs)];
          const at = (dense: Float32Array) => (positions ? Float32Array.from(positions, (i) => dense[i]) : dense);
          w.set(w2);
          m.set(at(m2));
          v.set(at(v2));
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
            [m, at(m2)],
            [v, at(v2)],
          ]) {
            expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)), label).toBe(
              true,
            );
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

describe("a replica's state on a host backend", () => {
  beforeAll(async () => {
    await selectBackend('cpu');
  });

  it("packs a masked parameter's moments for the kernel and reads them back dense: the scalar twin's state, across reads and prunes", () => {
    const rng = new Rng(5);
    const n = 4099;
    const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const keptOf = (mask: Uint8Array) => Uint32Array.from({ length: n }, (_, i) => i).filter((i) => mask[i] === 1);
    const mask = Uint8Array.from({ length: n }, () => +(rng.uniform() < 0.3));
    const twin = { w: values(rng, n), m: values(rng, n), v: values(rng, n).map(Math.abs) };
    // As after a prune: pruned weights and their moments are zero.
    for (const array of [twin.w, twin.m, twin.v]) for (let i = 0; i < n; i++) if (!mask[i]) array[i] = 0;
    const state = new DeviceState([{ name: 'x.kernel', shape: [n], prunable: true, init: { kind: 'zeros' } }], [Float32Array.from(twin.w)]);
    state.write({ weights: [twin.w], m: [twin.m], v: [twin.v] });
    const settings = { learningRate: 0.01, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1 };
    let t = 1;
    const steps = (count: number) => {
      const positions = keptOf(mask);
      for (let k = 0; k < count; k++, t++) {
        const g = values(rng, positions.length);
        state.adamOnHost(0, g, 1 / 32, t, settings);
        adamUpdate(twin.w, twin, g, positions, adamCoefficients(settings, 1 / 32, t));
      }
    };
    const expectTwin = (label: string) => {
      const { weights, m, v } = state.hostArrays();
      for (const [a, b, name] of [
        [weights[0], twin.w, 'weights'],
        [m[0], twin.m, 'm'],
        [v[0], twin.v, 'v'],
      ] as const)
        expect(bits(a).equals(bits(b)), `${label}: ${name}`).toBe(true);
    };
    state.setPositions(0, keptOf(mask));
    steps(3);
    expectTwin('after 3 steps');
    steps(2);
    expectTwin('after a read and 2 more steps');
    // Prune about half the survivors, as applyThreshold does (weight and moments to zero), then train on.
    for (let i = 0; i < n; i++) if (mask[i] && rng.uniform() < 0.5) mask[i] = twin.w[i] = twin.m[i] = twin.v[i] = 0;
    state.write({ weights: [twin.w], m: [twin.m], v: [twin.v] });
    state.setPositions(0, keptOf(mask));
    steps(2);
    expectTwin('after a prune and 2 steps');
    state.dispose();
  });
});
