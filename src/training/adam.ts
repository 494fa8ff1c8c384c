// Adam and AdamW on host arrays, applied only at the positions a mask keeps: pruned weights and
// their moments are never touched and so stay exactly zero. Keras's form of Adam (the paper's);
// AdamW's decay is decoupled, as in PyTorch: w ← w·(1 − lr·λ) before the Adam step.
import type { OccamConfig } from '../config.ts';
import type { ParamSpec } from './models/model.ts';

export interface AdamSettings {
  /** This step's learning rate (after the schedule). */
  learningRate: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  /** Decoupled weight decay λ of this parameter (0 = Adam). */
  weightDecay: number;
}

/**
 * One parameter's settings at a step's learning rate (learningRateAt, computed once per step).
 * Weight decay applies to weight matrices only — kernels, in Occam's naming — not to biases,
 * norm gains or embeddings.
 */
export function adamSettings(config: OccamConfig, param: ParamSpec, learningRate: number): AdamSettings {
  const { beta1, beta2, epsilon } = config;
  const weightDecay = param.name.endsWith('.kernel') ? config.weightDecay : 0;
  return { learningRate, beta1, beta2, epsilon, weightDecay };
}

/**
 * nanoGPT's schedule at step `step` (0-based): linear warmup over warmupSteps, then a cosine from
 * learningRate down to minLearningRate that ends at lrDecaySteps, then the floor. lrDecaySteps 0
 * keeps learningRate after warmup. A pure function of the step, whose count every checkpoint
 * records, so a resumed run continues the schedule exactly.
 */
export function learningRateAt(
  step: number,
  config: Pick<OccamConfig, 'learningRate' | 'warmupSteps' | 'lrDecaySteps' | 'minLearningRate'>,
): number {
  const { learningRate, warmupSteps, lrDecaySteps, minLearningRate } = config;
  if (step < warmupSteps) return (learningRate * (step + 1)) / (warmupSteps + 1);
  if (lrDecaySteps === 0) return learningRate;
  if (step > lrDecaySteps) return minLearningRate;
  const progress = lrDecaySteps === warmupSteps ? 1 : (step - warmupSteps) / (lrDecaySteps - warmupSteps);
  return minLearningRate + 0.5 * (1 + Math.cos(Math.PI * progress)) * (learningRate - minLearningRate);
}

/**
 * The factor that clips a gradient of global L2 norm `norm` to `maxNorm` (PyTorch's
 * clip_grad_norm_: maxNorm / (norm + 1e-6), at most 1); 1 when maxNorm is 0 (no clipping).
 */
export function clipFactor(norm: number, maxNorm: number): number {
  return maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
}

export interface AdamMoments {
  m: Float32Array;
  v: Float32Array;
}

/**
 * One update of one parameter from a compacted gradient: `gradient[offset + k] · scale` is the
 * gradient at position `positions[k]` (or at k when positions is null: an unmasked parameter).
 * `t` is the 1-based step count of the bias correction.
 */
export function adamUpdate(
  weights: Float32Array,
  moments: AdamMoments,
  gradient: Float32Array,
  offset: number,
  positions: Uint32Array | null,
  scale: number,
  t: number,
  settings: AdamSettings,
): void {
  const { beta1, beta2, epsilon } = settings;
  const stepSize = (settings.learningRate * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
  // w·1 is w exactly, so Adam (λ = 0) is bit for bit what it was without the decay term.
  const keep = 1 - settings.learningRate * settings.weightDecay;
  // The gradient scale folds into the moment coefficients: m' = β1·m + (1−β1)·s·g.
  const gm = (1 - beta1) * scale;
  const gv = (1 - beta2) * scale * scale;
  const { m, v } = moments;
  // Two loops rather than one with a branch per element: this is the hot path of every step, and
  // V8 keeps it tight only as a plain counted loop. Measured, the scalar square root and division
  // per weight bound it, not memory (the same loads and stores alone run about 3× faster).
  if (positions === null) {
    for (let i = 0; i < weights.length; i++) {
      const g = gradient[offset + i];
      const mi = beta1 * m[i] + gm * g;
      const vi = beta2 * v[i] + gv * g * g;
      m[i] = mi;
      v[i] = vi;
      weights[i] = weights[i] * keep - (stepSize * mi) / (Math.sqrt(vi) + epsilon);
    }
    return;
  }
  for (let k = 0; k < positions.length; k++) {
    const i = positions[k];
    const g = gradient[offset + k];
    const mi = beta1 * m[i] + gm * g;
    const vi = beta2 * v[i] + gv * g * g;
    m[i] = mi;
    v[i] = vi;
    weights[i] = weights[i] * keep - (stepSize * mi) / (Math.sqrt(vi) + epsilon);
  }
}
