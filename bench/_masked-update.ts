// The masked Adam update alone, against memory speed: ms per call at 100 % and 10 % density over
// one parameter of `size` weights, and the bytes it reads and writes per second, beside a plain
// copy of the same arrays (weights and both moments) timed in the same run. The update is the
// replica's own (DeviceState.adamOnHost: the SIMD kernel over its heap) and its scalar twin.
import { adamCoefficients, adamUpdate, type AdamSettings } from '../src/training/adam.ts';
import { DeviceState } from '../src/training/device-state.ts';

export interface MaskedUpdateRow {
  density: number;
  /** The SIMD kernel, as a step runs it. */
  ms: number;
  gbPerSecond: number;
  /** Of the plain copy's rate. */
  ofCopy: number;
  /** The scalar JavaScript twin (the same bits). */
  scalarMs: number;
}

/** Update and copy timings over `size` weights; the copy moves 3 arrays in and out. Needs a host backend (cpu, blas). */
export function maskedUpdateRates(size: number, seconds: number): { copyGbPerSecond: number; rows: MaskedUpdateRow[] } {
  const arrays = () => Float32Array.from({ length: size }, (_, i) => Math.sin(i) * 0.01);
  const state = new DeviceState([{ name: 'bench.kernel', shape: [size], prunable: true, init: { kind: 'zeros' } }], [arrays()]);
  const { weights, m, v } = state.hostArrays();
  m[0].set(arrays());
  v[0].set(arrays().map(Math.abs));
  const gradient = arrays();
  const settings: AdamSettings = { learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 };
  const [w2, m2, v2] = [new Float32Array(size), new Float32Array(size), new Float32Array(size)];
  const copyMs = timePerCall(seconds, () => {
    w2.set(weights[0]);
    m2.set(m[0]);
    v2.set(v[0]);
  });
  const copyGbPerSecond = (3 * 2 * 4 * size) / (copyMs / 1000) / 1e9;
  const rows = [1, 0.1].map((density) => {
    const kept = Math.round(size * density);
    // 100 %: an unmasked parameter's loop; 10 %: every tenth position of a masked one.
    const positions = density === 1 ? null : Uint32Array.from({ length: kept }, (_, k) => Math.floor(k / density));
    state.setPositions(0, positions);
    const part = gradient.subarray(0, kept);
    let t = 1;
    const ms = timePerCall(seconds, () => state.adamOnHost(0, part, 1, t++, settings));
    const scalarMs = timePerCall(seconds, () => adamUpdate(w2, { m: m2, v: v2 }, part, positions, adamCoefficients(settings, 1, t++)));
    // Per kept weight: reads g, w, m, v (and its position), writes w, m, v.
    const bytes = kept * (7 * 4 + (positions ? 4 : 0));
    const gbPerSecond = bytes / (ms / 1000) / 1e9;
    return { density, ms, gbPerSecond, ofCopy: gbPerSecond / copyGbPerSecond, scalarMs };
  });
  state.dispose();
  return { copyGbPerSecond, rows };
}

function timePerCall(seconds: number, call: () => void): number {
  for (let i = 0; i < 3; i++) call();
  let calls = 0;
  const start = performance.now();
  while (calls < 5 || performance.now() - start < seconds * 1000) {
    call();
    calls++;
  }
  return (performance.now() - start) / calls;
}
