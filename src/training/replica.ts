// One replica of the model: its weights and Adam moments as variables on the backend's device
// (device-state.ts), its masks, and the three things a worker does with them — compute the
// mask-compacted gradient of its shard of a global batch, apply the all-reduced gradient, and prune
// with agreed thresholds. Per step the only host↔device traffic is the compacted gradient going
// down (one asynchronous read) and the summed one coming back (one upload). It knows nothing of
// sockets: the step loop (step-loop.ts) moves the compacted gradient between replicas.
import * as tf from '@tensorflow/tfjs-core';
import { shardRange } from '../common/shard.ts';
import { addInPlace } from '../common/simd/f32.ts';
import type { OccamConfig } from '../config.ts';
import type { NamedTensor } from '../storage/safetensors.ts';
import { decodeState, encodeState, modelTensors, type ReplicaState, stateDigest } from '../storage/state-format.ts';
import { adamSettings, clipFactor, globalNorm, learningRateAt } from './adam.ts';
import { type DataSource, type EvalSplit, SEED_SALT } from './data/source.ts';
import { DeviceState } from './device-state.ts';
import { type BucketRelease, GradientTaps } from './gradient-taps.ts';
import { hostValues } from './host-backend.ts';
import { activeIndices, applyThreshold, countActive, pruneThreshold } from './masks.ts';
import { type EvalSums, evaluateShare } from './evaluate.ts';
import { initialWeights, lossSum, type Model, type ParamSpec, paramSize } from './models/model.ts';
import { mixSeed } from './rng.ts';

/** Part of the compacted gradient that travels on its own: whole parameters, [start, end) of it. */
export interface GradientBucket {
  params: number[];
  start: number;
  end: number;
}

/** One step's update, applied bucket by bucket: Adam's step count and the gradient's scale. */
export interface StepUpdate {
  t: number;
  scale: number;
  learningRate: number;
}

/** A micro-batch's taps, and its loss once every bucket they started has been handed on. */
interface Taps {
  taps: GradientTaps;
  settled(value: tf.Tensor): Promise<number>;
}

export class Replica {
  /** One mask per parameter: 1 = kept; null for parameters that are never pruned. Kept on the host: it changes only when pruning. */
  readonly masks: (Uint8Array | null)[];
  /** Adam's step count (bias correction). */
  adamSteps = 0;
  /** Values in a compacted gradient: the kept positions of every parameter. */
  gradientLength = 0;
  /** Global L2 norm of the last applied (mean) gradient, before clipping; computed only when gradClip is set. */
  gradientNorm = 0;
  private readonly state: DeviceState;
  /** Positions each parameter contributes to a compacted gradient (null = all of them: unmasked, or nothing pruned yet). */
  private positions: (Uint32Array | null)[] = [];
  /** The same positions on the device, for gathering and scattering there (device backends only). */
  private devicePositions: (tf.Tensor1D | null)[] = [];
  private offsets: number[] = [];

  constructor(
    readonly model: Model,
    readonly data: DataSource,
    private readonly config: OccamConfig,
  ) {
    this.state = new DeviceState(model.params, initialWeights(model.params, mixSeed(config.seed, SEED_SALT.init)));
    this.masks = model.params.map((p) => (p.prunable ? new Uint8Array(paramSize(p)).fill(1) : null));
    this.updateLayout();
  }

  get params(): ParamSpec[] {
    return this.model.params;
  }

  /** Indices (into params) of the prunable parameters: the layers thresholds refer to. */
  get prunableLayers(): number[] {
    return this.model.params.flatMap((p, i) => (p.prunable ? [i] : []));
  }

  /**
   * Gradient of the summed loss over this rank's share of the global batch of `step`, compacted
   * to the kept positions (written into `into`, gradientLength values), and that share's loss sum.
   * Summing these over all ranks gives the global batch's gradient and loss sum. With
   * accumulateSteps K the share runs as K micro-batches whose gradients are summed here, so only
   * one micro-batch's activations are alive at a time.
   *
   * With `release` (`into` then has the loss slot after the gradient), the last
   * micro-batch's backward pass hands each bucket on as soon as its parameters are done, the loss
   * slot written just before bucket 0 leaves (gradient-taps.ts); buckets it did not hand on are
   * the caller's to send.
   */
  async shardGradient(
    step: number,
    rank: number,
    world: number,
    into: Float32Array = new Float32Array(this.gradientLength),
    release?: BucketRelease,
  ): Promise<{ gradient: Float32Array; lossSum: number; globalCount: number }> {
    const ids = this.data.globalBatch(step, this.config.batchSize);
    const [start, end] = shardRange(ids.length, rank, world);
    const gradient = into.subarray(0, this.gradientLength);
    const noiseSeed = mixSeed(this.config.seed, SEED_SALT.dropout, step);
    const micro = this.config.accumulateSteps;
    const shares = Array.from({ length: micro }, (_, k) => shardRange(end - start, k, micro)).filter(([from, to]) => to > from);
    // Every micro-batch writes all values (the first assigns them); a rank with no samples adds zeros.
    if (shares.length === 0) gradient.fill(0);
    let shardLoss = 0;
    for (const [k, [from, to]] of shares.entries()) {
      const last = k === shares.length - 1 && release && into.length > this.gradientLength;
      const taps = last ? this.tapsFor(release, into, shardLoss, k > 0) : null;
      shardLoss += await this.microBatchGradient(ids.subarray(start + from, start + to), noiseSeed, gradient, taps, k > 0);
    }
    return { gradient, lossSum: shardLoss, globalCount: ids.length };
  }

  /** Samples in the global batch of `step` (the divisor of its summed gradient). */
  globalCount(step: number): number {
    return this.data.globalBatch(step, this.config.batchSize).length;
  }

  /**
   * The compacted gradient and the loss slot after it (gradientLength + 1 values) in buckets of
   * whole parameters, last parameter first (the order the backward pass finishes them in, as in
   * DDP), each closed once it holds bucketBytes; one bucket when bucketBytes is 0. With gradClip
   * nothing can be applied before the whole gradient's norm is known: one bucket too.
   */
  gradientBuckets(): GradientBucket[] {
    const capFloats = this.config.gradClip > 0 ? 0 : this.config.bucketBytes / 4;
    const buckets: GradientBucket[] = [];
    let open: GradientBucket = { params: [], start: this.gradientLength, end: this.gradientLength + 1 };
    for (let i = this.params.length - 1; i >= 0; i--) {
      open.params.push(i);
      open.start = this.offsets[i];
      if (capFloats > 0 && open.end - open.start >= capFloats && i > 0) {
        buckets.push(open);
        open = { params: [], start: open.start, end: open.start };
      }
    }
    buckets.push(open);
    return buckets;
  }

  /**
   * Starts applying a summed gradient (as from shardGradient, summed over ranks): Adam's step
   * count, the scheduled learning rate, and the scale that clips it to gradClip by its global norm.
   * The norm needs the whole summed gradient; every replica computes it from the same values in
   * the same order, so all of them clip alike.
   */
  beginUpdate(globalCount: number, summed: Float32Array): StepUpdate {
    this.adamSteps++;
    const t = this.adamSteps;
    // The norm is a pass over the whole gradient: taken only when something clips with it.
    if (this.config.gradClip > 0) this.gradientNorm = globalNorm(summed.subarray(0, this.gradientLength)) / globalCount;
    const scale = clipFactor(this.gradientNorm, this.config.gradClip) / globalCount;
    return { t, scale, learningRate: learningRateAt(t - 1, this.config) };
  }

  /** Adam(W) on the given parameters from their part of the summed compacted gradient. */
  applyUpdate(update: StepUpdate, summed: Float32Array, params: readonly number[]): void {
    const { t, scale, learningRate } = update;
    if (this.state.onHost) {
      for (const i of params) {
        const part = summed.subarray(this.offsets[i], this.offsets[i] + this.keptCount(i));
        this.state.adamOnHost(i, part, scale, t, adamSettings(this.config, this.params[i], learningRate));
      }
      return;
    }
    // One upload per parameter (no slicing kernel), scattered to its kept positions on the device.
    // A copy, not a view: the step buffer is shared memory, which a backend need not accept, and a
    // backend may read its values after this returns.
    for (const i of params) {
      const part = summed.slice(this.offsets[i], this.offsets[i] + this.keptCount(i));
      const dense = tf.tidy(() => this.scatterOnDevice(part, i, this.params[i]));
      this.state.adam(i, dense, scale, t, adamSettings(this.config, this.params[i], learningRate));
      dense.dispose();
    }
  }

  /** Applies a summed gradient whole: beginUpdate, then applyUpdate on every parameter. */
  applyGradient(summed: Float32Array, globalCount: number): void {
    if (summed.length !== this.gradientLength) {
      throw new Error(`gradient has ${summed.length} values, the model's active layout has ${this.gradientLength}`);
    }
    this.applyUpdate(
      this.beginUpdate(globalCount, summed),
      summed,
      this.params.map((_, i) => i),
    );
  }

  /** Loss sum, correct predictions and count over this rank's share of an evaluation split. */
  evaluate(split: EvalSplit, rank: number, world: number): Promise<EvalSums> {
    return evaluateShare(this.model, this.state.weights, this.data, split, { rank, world }, this.config);
  }

  /** Occam's threshold for one prunable parameter: the p-quantile of its surviving |w|. */
  async threshold(param: number, p: number): Promise<number> {
    const mask = this.masks[param];
    if (!mask) throw new Error(`parameter ${this.params[param].name} is not prunable`);
    // Only the weights: on host backends their own array (reading every parameter's moments would unpack them).
    const weights = this.state.onHost ? hostValues(this.state.weights[param]) : ((await this.state.weights[param].data()) as Float32Array);
    return pruneThreshold(weights, mask, p);
  }

  /** Prunes every prunable parameter with its agreed threshold (same order as prunableLayers). */
  async applyThresholds(thresholds: number[]): Promise<number> {
    const layers = this.prunableLayers;
    if (thresholds.length !== layers.length) throw new Error(`got ${thresholds.length} thresholds for ${layers.length} prunable layers`);
    const host = await this.state.read();
    let pruned = 0;
    layers.forEach((param, k) => {
      const weights = host.weights[param];
      pruned += applyThreshold(thresholds[k], this.masks[param] as Uint8Array, [weights, host.m[param], host.v[param]], weights);
    });
    if (!this.state.onHost) this.state.write(host);
    this.updateLayout();
    return pruned;
  }

  /** Kept weights per prunable layer, and in the whole model (unmasked parameters count as kept). */
  activeCounts(): { perLayer: number[]; prunableKept: number; prunableTotal: number; activeParams: number } {
    const perLayer = this.prunableLayers.map((i) => countActive(this.masks[i] as Uint8Array));
    const prunableKept = perLayer.reduce((a, b) => a + b, 0);
    const sizes = this.params.map(paramSize);
    const prunableTotal = this.prunableLayers.reduce((n, i) => n + sizes[i], 0);
    const unprunable = sizes.reduce((n, s, i) => n + (this.masks[i] ? 0 : s), 0);
    return { perLayer, prunableKept, prunableTotal, activeParams: prunableKept + unprunable };
  }

  /** The whole state on the host (the device's own arrays on cpu and blas: treat as read-only). */
  async hostState(): Promise<ReplicaState> {
    const { weights, m, v } = await this.state.read();
    return { weights, masks: this.masks, moments: weights.map((_, i) => ({ m: m[i], v: v[i] })), adamSteps: this.adamSteps };
  }

  /** Digest of everything training depends on: weights, masks, Adam moments and step count. */
  async stateDigest(): Promise<string> {
    return stateDigest(await this.hostState());
  }

  /** Weights and masks as named tensors: the exported model. */
  async modelTensors(): Promise<NamedTensor[]> {
    return modelTensors(this.params, await this.hostState());
  }

  /** The full replica state (weights, masks, moments, Adam steps) in safetensors bytes. */
  async encodeState(): Promise<Buffer> {
    return (await this.snapshot()).state;
  }

  /** The state's bytes and their digest, from one read of the device. */
  async snapshot(): Promise<{ state: Buffer; digest: string }> {
    const state = await this.hostState();
    return { state: encodeState(this.params, state), digest: stateDigest(state) };
  }

  /** Replaces the whole state with one from encodeState; checks every tensor against the model first. */
  loadState(bytes: Uint8Array): void {
    const loaded = decodeState(bytes, this.params); // validates everything before changing anything
    this.state.write({ weights: loaded.weights, m: loaded.moments.map((x) => x.m), v: loaded.moments.map((x) => x.v) });
    loaded.masks.forEach((mask, i) => this.masks[i]?.set(mask as Uint8Array));
    this.adamSteps = loaded.adamSteps;
    this.updateLayout();
  }

  /** Frees the device memory; the replica is unusable after. */
  dispose(): void {
    this.state.dispose();
    tf.dispose(this.devicePositions.filter((t): t is tf.Tensor1D => t !== null));
  }

  /** Writes one micro-batch's compacted gradient into `gradient` (adds it with `accumulate`); returns its loss sum. */
  private async microBatchGradient(ids: Uint32Array, noiseSeed: number, gradient: Float32Array, taps: Taps | null, accumulate: boolean) {
    const batch = this.data.trainExamples(ids);
    const forward = (...w: tf.Tensor[]) =>
      taps ? taps.taps.forward(w, (tapped) => lossSum(this.model, tapped, batch, noiseSeed)) : lossSum(this.model, w, batch, noiseSeed);
    const { value, grads } = tf.valueAndGrads(forward)(this.state.weights);
    let loss: number;
    if (taps) {
      // The taps took every gradient the backward pass finished; the rest (unused weights) now.
      taps.taps.finish(grads);
      loss = await taps.settled(value);
    } else if (this.state.onHost) {
      // The gradients are host arrays already: compact them straight into the ring's buffer.
      grads.forEach((g, i) => this.compactInto(hostValues(g), i, gradient, accumulate));
      loss = hostValues(value)[0];
    } else {
      // Compacted on the device, with the loss in one extra slot: a single read comes down.
      const packed = tf.tidy(() => tf.concat([...grads.map((g, i) => this.compactOnDevice(g, i)), tf.reshape(value, [1])]));
      const values = (await packed.data()) as Float32Array;
      packed.dispose();
      writeInto(gradient, values.subarray(0, this.gradientLength), accumulate);
      loss = values[this.gradientLength];
    }
    tf.dispose([value, ...grads]);
    return loss;
  }

  /**
   * Taps for the last micro-batch: each finished gradient compacted into `into` at once (host
   * backends), or on the device with one read per bucket; each bucket handed on, in order, once its
   * values (and for bucket 0 the loss slot, after `lossBefore`) are in.
   */
  private tapsFor(release: BucketRelease, into: Float32Array, lossBefore: number, accumulate: boolean): Taps {
    const length = this.gradientLength;
    const { buckets } = release;
    if (this.state.onHost) {
      const take = (i: number, dy: tf.Tensor) => this.compactInto(hostValues(dy), i, into, accumulate);
      const taps = new GradientTaps(buckets, this.params.length, take, (k, loss) => {
        if (k === 0) into[length] = lossBefore + loss.dataSync()[0];
        release.onBucket(k);
      });
      return { taps, settled: async (value) => (await value.data())[0] };
    }
    const compacted: tf.Tensor[] = [];
    let reads = Promise.resolve();
    let loss = 0;
    const take = (i: number, dy: tf.Tensor) => {
      compacted[i] = tf.keep(this.compactOnDevice(dy, i));
    };
    const taps = new GradientTaps(buckets, this.params.length, take, (k, lossTensor) => {
      const { params, start, end } = buckets[k];
      const parts = [...params].sort((a, b) => a - b).map((i) => compacted[i]);
      const packed = tf.keep(tf.concat(k === 0 ? [...parts, tf.reshape(lossTensor, [1])] : parts));
      tf.dispose(parts);
      const read = packed.data() as Promise<Float32Array>;
      read.catch(() => {}); // awaited in turn below
      reads = reads.then(async () => {
        const values = await read;
        packed.dispose();
        const count = Math.min(end, length) - start;
        writeInto(into.subarray(start, start + count), values.subarray(0, count), accumulate);
        if (k === 0) {
          loss = values[count];
          into[length] = lossBefore + loss;
        }
        release.onBucket(k);
      });
    });
    return { taps, settled: () => reads.then(() => loss) };
  }

  /** A parameter's dense gradient at its kept positions, written (added, with `accumulate`) into its part of the compacted one. */
  private compactInto(dense: Float32Array, param: number, into: Float32Array, accumulate: boolean): void {
    const positions = this.positions[param];
    const part = into.subarray(this.offsets[param], this.offsets[param] + this.keptCount(param));
    if (!positions) writeInto(part, dense, accumulate);
    else if (accumulate) for (let k = 0; k < positions.length; k++) part[k] += dense[positions[k]];
    else for (let k = 0; k < positions.length; k++) part[k] = dense[positions[k]];
  }

  private compactOnDevice(gradient: tf.Tensor, param: number): tf.Tensor {
    const flat = tf.reshape(gradient, [-1]);
    const positions = this.devicePositions[param];
    return positions ? tf.gather(flat, positions) : flat;
  }

  /** Values one parameter contributes to the compacted gradient. */
  private keptCount(param: number): number {
    return this.positions[param]?.length ?? paramSize(this.params[param]);
  }

  /** One parameter's dense gradient on the device from its part of the summed compacted one: zeros at pruned positions. */
  private scatterOnDevice(part: Float32Array, param: number, spec: ParamSpec): tf.Tensor {
    const positions = this.devicePositions[param];
    if (!positions) return tf.tensor(part, spec.shape, 'float32');
    const dense = tf.scatterND(tf.reshape(positions, [part.length, 1]), tf.tensor1d(part, 'float32'), [paramSize(spec)]);
    return tf.reshape(dense, spec.shape);
  }

  private updateLayout(): void {
    let offset = 0;
    // A mask that keeps everything needs no index list: compaction is then a copy and Adam runs
    // its dense loop (same arithmetic, no indirection), which is the whole of the first round.
    this.positions = this.masks.map((mask) => (mask && countActive(mask) < mask.length ? activeIndices(mask) : null));
    this.offsets = this.params.map((p, i) => {
      const start = offset;
      offset += this.positions[i]?.length ?? paramSize(p);
      return start;
    });
    this.gradientLength = offset;
    if (this.state.onHost) {
      this.positions.forEach((positions, i) => this.state.setPositions(i, positions));
      return;
    }
    tf.dispose(this.devicePositions.filter((t): t is tf.Tensor1D => t !== null));
    this.devicePositions = this.positions.map((positions) => (positions ? tf.tensor1d(Int32Array.from(positions), 'int32') : null));
  }
}

/** `part` = values, or `part` += values with `accumulate` (a later micro-batch): float32 sums, SIMD. */
function writeInto(part: Float32Array, values: Float32Array, accumulate: boolean): void {
  if (accumulate) addInPlace(part, values);
  else part.set(values);
}
