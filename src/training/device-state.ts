// Where a replica's state lives: weights and Adam moments are variables on the backend's device
// for the whole run. On backends that keep tensors in host arrays (cpu, blas) the "device" is host
// memory: the variables' arrays are regions of one WebAssembly heap, which the SIMD Adam kernel
// updates in place, with no copy (a masked parameter's moments packed at the front of their arrays
// between reads, so only its weights are scattered); on the others (webgpu, tensorflow, wasm) compaction, scatter
// and Adam run as device ops (on webgpu Adam is three WGSL kernels, webgpu-adam.ts), and the host
// sees the state only through asynchronous reads (checkpoints, digests, thresholds).
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { SIMD_HEAP_MAX_BYTES, SimdHeap } from '../common/simd/f32.ts';
import { type AdamSettings, adamCoefficients, adamUpdate } from './adam.ts';
import { hostValues, onHostBackend } from './host-backend.ts';
import { adamOnWebGpu } from './webgpu-adam.ts';
import { type ParamSpec, paramSize } from './models/model.ts';

/** The state as host arrays, in parameter order. */
export interface HostArrays {
  weights: Float32Array[];
  m: Float32Array[];
  v: Float32Array[];
}

export class DeviceState {
  readonly weights: tf.Variable[];
  readonly m: tf.Variable[];
  readonly v: tf.Variable[];
  /** The backend keeps tensors in host arrays, which the replica may use in place. */
  readonly onHost: boolean;
  /** Adam runs as webgpu-adam.ts's kernels. */
  private readonly onWebGpu: boolean;
  /** Host backends: the heap holding every variable's array, kept positions and a gradient slot (null: too large, scalar Adam). */
  private readonly heap: SimdHeap | null = null;
  /** Per parameter, on a heap: its kept positions (a region of its size) and how many are set; null = all. */
  private readonly positions: { region: Uint32Array; count: number | null }[] = [];
  private readonly gradientSlot: Float32Array | null = null;
  private hostPositions: (Uint32Array | null)[];
  /** Per parameter, on a heap: its moments are packed (m[k] and v[k] belong to kept position k), not dense. */
  private readonly packed: boolean[];

  constructor(
    private readonly params: ParamSpec[],
    initial: Float32Array[],
  ) {
    this.onHost = onHostBackend();
    this.onWebGpu = tf.getBackend() === 'webgpu';
    const variable = (values: Float32Array, p: ParamSpec) => tf.variable(tf.tensor(values, p.shape, 'float32'), true);
    this.weights = params.map((p, i) => variable(initial[i], p));
    this.m = params.map((p) => variable(new Float32Array(paramSize(p)), p));
    this.v = params.map((p) => variable(new Float32Array(paramSize(p)), p));
    this.hostPositions = params.map(() => null);
    this.packed = params.map(() => false);
    const sizes = params.map(paramSize);
    // Weights, m, v and positions per parameter, and one gradient slot as large as the largest.
    const heapBytes = SimdHeap.bytesFor([...sizes, ...sizes, ...sizes, ...sizes, Math.max(0, ...sizes)]);
    if (!this.onHost || heapBytes > SIMD_HEAP_MAX_BYTES) return;
    const heap = new SimdHeap(heapBytes);
    // The backend's own arrays are replaced by heap regions holding the same values: kernels read them as before.
    for (const variables of [this.weights, this.m, this.v]) {
      for (const [i, variable] of variables.entries()) {
        const entry = (tf.backend() as MathBackendCPU).data.get(variable.dataId);
        const region = heap.floats(sizes[i]);
        region.set(entry.values as Float32Array);
        entry.values = region;
      }
    }
    this.positions = sizes.map((n) => ({ region: heap.uint32s(n), count: null }));
    this.gradientSlot = heap.floats(Math.max(0, ...sizes));
    this.heap = heap;
  }

  /** Host backends: the positions `adamOnHost` updates for a parameter (null = every one), until set again. */
  setPositions(param: number, positions: Uint32Array | null): void {
    this.unpack(param);
    this.hostPositions[param] = positions;
    if (!this.heap) return;
    const slot = this.positions[param];
    slot.count = positions ? positions.length : null;
    if (positions) slot.region.set(positions);
  }

  /**
   * Adam(W) on the host for one parameter, from its part of the summed compacted gradient (a
   * value per kept position): the SIMD kernel over the heap, or its scalar twin, the same bits.
   */
  adamOnHost(param: number, gradient: Float32Array, scale: number, step: number, settings: AdamSettings): void {
    const coefficients = adamCoefficients(settings, scale, step);
    const [weights, m, v] = [this.weights[param], this.m[param], this.v[param]].map(hostValues);
    if (!this.heap || !this.gradientSlot) {
      adamUpdate(weights, { m, v }, gradient, this.hostPositions[param], coefficients);
      return;
    }
    const { region, count } = this.positions[param];
    const positions = count === null ? null : region.subarray(0, count);
    if (positions) this.pack(param, positions);
    const slot = this.gradientSlot.subarray(0, gradient.length);
    slot.set(gradient);
    this.heap.adam(weights, m, v, slot, positions, gradient.length, coefficients);
  }

  /** The host arrays behind the variables (onHost backends only), moments dense: writing them changes the state. */
  hostArrays(): HostArrays {
    if (!this.onHost) throw new Error('the state lives on a device: read() it');
    this.params.forEach((_, i) => this.unpack(i));
    return { weights: this.weights.map(hostValues), m: this.m.map(hostValues), v: this.v.map(hostValues) };
  }

  /** A host view of the state: the arrays themselves on host backends, asynchronous copies elsewhere. */
  async read(): Promise<HostArrays> {
    if (this.onHost) return this.hostArrays();
    const all = async (tensors: tf.Variable[]) => Promise.all(tensors.map((t) => t.data() as Promise<Float32Array>));
    const [weights, m, v] = await Promise.all([all(this.weights), all(this.m), all(this.v)]);
    return { weights, m, v };
  }

  /** Replaces the whole state. */
  write(state: HostArrays): void {
    if (this.onHost) {
      const arrays = this.hostArrays();
      for (const key of ['weights', 'm', 'v'] as const) arrays[key].forEach((array, i) => array.set(state[key][i]));
      return;
    }
    const assign = (variables: tf.Variable[], values: Float32Array[]) =>
      variables.forEach((variable, i) => tf.tidy(() => variable.assign(tf.tensor(values[i], this.params[i].shape, 'float32'))));
    assign(this.weights, state.weights);
    assign(this.m, state.m);
    assign(this.v, state.v);
  }

  /**
   * Adam(W) on the device for one parameter, with its summed dense gradient (zero at pruned
   * positions, so their weight and moments stay exactly zero: 0·β + 0 = 0, 0·keep = 0 and 0 / (0 + ε) = 0).
   */
  adam(param: number, gradient: tf.Tensor, scale: number, step: number, settings: AdamSettings): void {
    if (this.onWebGpu) {
      const next = adamOnWebGpu(this.weights[param], this.m[param], this.v[param], gradient, adamCoefficients(settings, scale, step));
      for (const key of ['weights', 'm', 'v'] as const) {
        this[key][param].assign(next[key]);
        next[key].dispose();
      }
      return;
    }
    const { beta1, beta2, epsilon, learningRate, weightDecay } = settings;
    const stepSize = (learningRate * Math.sqrt(1 - beta2 ** step)) / (1 - beta1 ** step);
    const keep = 1 - learningRate * weightDecay;
    tf.tidy(() => {
      const g = tf.mul(gradient, scale);
      const m = tf.add(tf.mul(this.m[param], beta1), tf.mul(g, 1 - beta1));
      const v = tf.add(tf.mul(this.v[param], beta2), tf.mul(tf.square(g), 1 - beta2));
      this.m[param].assign(m);
      this.v[param].assign(v);
      const decayed = keep === 1 ? this.weights[param] : tf.mul(this.weights[param], keep);
      this.weights[param].assign(tf.sub(decayed, tf.div(tf.mul(m, stepSize), tf.add(tf.sqrt(v), epsilon))));
    });
  }

  /** Moves a masked parameter's kept moments to the front of their arrays, in kept order (once until unpacked). */
  private pack(param: number, positions: Uint32Array): void {
    if (this.packed[param]) return;
    // Kept positions ascend, so each value moves down onto a slot already read.
    for (const moments of [hostValues(this.m[param]), hostValues(this.v[param])]) {
      for (let k = 0; k < positions.length; k++) moments[k] = moments[positions[k]];
    }
    this.packed[param] = true;
  }

  /** Puts a packed parameter's moments back at their positions; a pruned position's moments are zero. */
  private unpack(param: number): void {
    if (!this.packed[param] || !this.gradientSlot) return;
    const positions = this.hostPositions[param] as Uint32Array;
    const scratch = this.gradientSlot.subarray(0, positions.length);
    for (const moments of [hostValues(this.m[param]), hostValues(this.v[param])]) {
      scratch.set(moments.subarray(0, positions.length));
      moments.fill(0);
      for (let k = 0; k < positions.length; k++) moments[positions[k]] = scratch[k];
    }
    this.packed[param] = false;
  }

  dispose(): void {
    tf.dispose([...this.weights, ...this.m, ...this.v]);
  }
}
