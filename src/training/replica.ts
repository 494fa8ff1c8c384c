// One replica of the model: its weights, masks and Adam moments on host arrays, and the three
// things a worker does with them — compute the mask-compacted gradient of its shard of a global
// batch, apply the all-reduced gradient, and prune with agreed thresholds. It knows nothing of
// sockets: the step loop (step-loop.ts) moves the compacted gradient between replicas.
import * as tf from '@tensorflow/tfjs-core';
import { adamUpdate, ADAM_DEFAULTS, type AdamMoments, type AdamSettings } from './adam.ts';
import type { OccamConfig } from '../config.ts';
import { shardRange } from '../common/shard.ts';
import { SEED_SALT, type DataSource, type EvalSplit } from './data/source.ts';
import { activeIndices, applyThreshold, countActive, pruneThreshold } from './masks.ts';
import { evaluateBatch, initialWeights, lossSum, type Model, type ParamSpec } from './models/model.ts';
import { mixSeed } from './rng.ts';
import type { NamedTensor } from '../storage/safetensors.ts';
import { decodeState, encodeState, modelTensors, stateDigest, type ReplicaState } from '../storage/state-format.ts';

/** Partial sums a worker reports for an evaluation split or a round's training loss. */
export interface EvalSums {
  lossSum: number;
  correct: number;
  count: number;
}

export class Replica {
  readonly weights: Float32Array[];
  /** One mask per parameter: 1 = kept; null for parameters that are never pruned. */
  readonly masks: (Uint8Array | null)[];
  readonly moments: AdamMoments[];
  /** Adam's step count (bias correction). */
  adamSteps = 0;
  /** Positions each parameter contributes to a compacted gradient (null = all of them: unmasked, or nothing pruned yet). */
  private positions: (Uint32Array | null)[] = [];
  private offsets: number[] = [];
  /** Values in a compacted gradient: the kept positions of every parameter. */
  gradientLength = 0;
  private readonly adam: AdamSettings;

  constructor(
    readonly model: Model,
    readonly data: DataSource,
    private readonly config: OccamConfig,
  ) {
    this.weights = initialWeights(model.params, mixSeed(config.seed, SEED_SALT.init));
    this.masks = model.params.map((p) => (p.prunable ? new Uint8Array(size(p)).fill(1) : null));
    this.moments = model.params.map((p) => ({ m: new Float32Array(size(p)), v: new Float32Array(size(p)) }));
    this.adam = { learningRate: config.learningRate, ...ADAM_DEFAULTS };
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
   * Summing these over all ranks gives the global batch's gradient and loss sum.
   */
  async shardGradient(
    step: number,
    rank: number,
    world: number,
    into = new Float32Array(this.gradientLength),
  ): Promise<{ gradient: Float32Array; lossSum: number; globalCount: number }> {
    const ids = this.data.globalBatch(step, this.config.batchSize);
    const [start, end] = shardRange(ids.length, rank, world);
    const gradient = into.subarray(0, this.gradientLength);
    if (end <= start) {
      gradient.fill(0); // a rank with no samples this step adds nothing
      return { gradient, lossSum: 0, globalCount: ids.length };
    }
    const batch = this.data.trainExamples(ids.subarray(start, end));
    const noiseSeed = mixSeed(this.config.seed, SEED_SALT.dropout, step);
    const { value, grads } = tf.tidy(() => {
      const weights = this.weightTensors();
      return tf.valueAndGrads((...w: tf.Tensor[]) => lossSum(this.model, w, batch, noiseSeed))(weights);
    });
    // Asynchronous reads: a GPU backend cannot read synchronously in Node (on cpu and blas they cost nothing more).
    const [loss, ...dense] = await Promise.all([value.data(), ...grads.map((g) => g.data())]);
    tf.dispose([value, ...grads]);
    dense.forEach((values, i) => this.compact(values as Float32Array, i, gradient));
    return { gradient, lossSum: loss[0], globalCount: ids.length };
  }

  /** Applies a summed gradient (as from shardGradient, summed over ranks) with Adam. */
  applyGradient(summed: Float32Array, globalCount: number): void {
    if (summed.length !== this.gradientLength) {
      throw new Error(`gradient has ${summed.length} values, the model's active layout has ${this.gradientLength}`);
    }
    this.adamSteps++;
    this.weights.forEach((w, i) => {
      adamUpdate(w, this.moments[i], summed, this.offsets[i], this.positions[i], 1 / globalCount, this.adamSteps, this.adam);
    });
  }

  /**
   * Loss sum, correct predictions and count over this rank's share of an evaluation split.
   * Yields to the event loop between batches so heartbeats keep flowing during long evaluations.
   */
  async evaluate(split: EvalSplit, rank: number, world: number): Promise<EvalSums> {
    const total = split === 'holdback' ? this.data.holdbackCount : this.data.testCount;
    const limit = this.config.evalLimit > 0 ? Math.min(total, this.config.evalLimit) : total;
    const [start, end] = shardRange(limit, rank, world);
    const sums: EvalSums = { lossSum: 0, correct: 0, count: end - start };
    for (let at = start; at < end; at += this.config.evalBatchSize) {
      const batch = this.data.evalExamples(split, at, Math.min(end, at + this.config.evalBatchSize));
      const weights = this.weightTensors();
      const result = await evaluateBatch(this.model, weights, batch);
      tf.dispose(weights);
      sums.lossSum += result.lossSum;
      sums.correct += result.correct;
      await new Promise((resolve) => setImmediate(resolve));
    }
    return sums;
  }

  /** Occam's threshold for one prunable parameter: the p-quantile of its surviving |w|. */
  threshold(param: number, p: number): number {
    const mask = this.masks[param];
    if (!mask) throw new Error(`parameter ${this.params[param].name} is not prunable`);
    return pruneThreshold(this.weights[param], mask, p);
  }

  /** Prunes every prunable parameter with its agreed threshold (same order as prunableLayers). */
  applyThresholds(thresholds: number[]): number {
    const layers = this.prunableLayers;
    if (thresholds.length !== layers.length) throw new Error(`got ${thresholds.length} thresholds for ${layers.length} prunable layers`);
    let pruned = 0;
    layers.forEach((param, k) => {
      const { m, v } = this.moments[param];
      pruned += applyThreshold(thresholds[k], this.masks[param] as Uint8Array, [this.weights[param], m, v], this.weights[param]);
    });
    this.updateLayout();
    return pruned;
  }

  /** Kept weights per prunable layer, and in the whole model (unmasked parameters count as kept). */
  activeCounts(): { perLayer: number[]; prunableKept: number; prunableTotal: number; activeParams: number } {
    const perLayer = this.prunableLayers.map((i) => countActive(this.masks[i] as Uint8Array));
    const prunableKept = perLayer.reduce((a, b) => a + b, 0);
    const prunableTotal = this.prunableLayers.reduce((n, i) => n + this.weights[i].length, 0);
    const unprunable = this.weights.reduce((n, w, i) => n + (this.masks[i] ? 0 : w.length), 0);
    return { perLayer, prunableKept, prunableTotal, activeParams: prunableKept + unprunable };
  }

  /** Digest of everything training depends on: weights, masks, Adam moments and step count. */
  stateDigest(): string {
    return stateDigest(this.state());
  }

  /** Weights and masks as named tensors: the exported model. */
  modelTensors(): NamedTensor[] {
    return modelTensors(this.params, this.state());
  }

  /** The full replica state (weights, masks, moments, Adam steps) in safetensors bytes. */
  encodeState(): Buffer {
    return encodeState(this.params, this.state());
  }

  /** Replaces the whole state with one from encodeState; checks every tensor against the model first. */
  loadState(bytes: Uint8Array): void {
    const loaded = decodeState(bytes, this.params); // validates everything before changing anything
    loaded.weights.forEach((w, i) => {
      this.weights[i].set(w);
      this.masks[i]?.set(loaded.masks[i] as Uint8Array);
      this.moments[i].m.set(loaded.moments[i].m);
      this.moments[i].v.set(loaded.moments[i].v);
    });
    this.adamSteps = loaded.adamSteps;
    this.updateLayout();
  }

  private state(): ReplicaState {
    return { weights: this.weights, masks: this.masks, moments: this.moments, adamSteps: this.adamSteps };
  }

  private weightTensors(): tf.Tensor[] {
    return this.params.map((p, i) => tf.tensor(this.weights[i], p.shape, 'float32'));
  }

  private compact(dense: Float32Array, param: number, into: Float32Array): void {
    const positions = this.positions[param];
    const offset = this.offsets[param];
    if (!positions) into.set(dense, offset);
    else for (let k = 0; k < positions.length; k++) into[offset + k] = dense[positions[k]];
  }

  private updateLayout(): void {
    let offset = 0;
    // A mask that keeps everything needs no index list: compaction is then a copy and Adam runs
    // its dense loop (same arithmetic, no indirection), which is the whole of the first round.
    this.positions = this.masks.map((mask) => (mask && countActive(mask) < mask.length ? activeIndices(mask) : null));
    this.offsets = this.weights.map((w, i) => {
      const start = offset;
      offset += this.positions[i]?.length ?? w.length;
      return start;
    });
    this.gradientLength = offset;
  }
}

function size(param: ParamSpec): number {
  return param.shape.reduce((a, b) => a * b, 1);
}
