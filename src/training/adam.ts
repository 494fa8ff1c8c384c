// Adam and AdamW on host arrays, applied only at the positions a mask keeps: pruned weights and
// their moments are never touched and so stay exactly zero. Keras's form of Adam (the paper's);
// AdamW's decay is decoupled, as in PyTorch: w ← w·(1 − lr·λ) before the Adam step. The hot path
// is the SIMD kernel in common/simd/f32.wat; adamUpdate here is its scalar twin, bit for bit.
import type { OccamConfig } from '../config.ts';
import type { AdamCoefficients } from '../common/simd/f32.ts';
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

/** √(Σ g²), summed in index order in double precision: the same value on every replica. */
export function globalNorm(values: Float32Array): number {
  let squares = 0;
  for (let i = 0; i < values.length; i++) squares += values[i] * values[i];
  return Math.sqrt(squares);
}

export interface AdamMoments {
  m: Float32Array;
  v: Float32Array;
}

/** The coefficients of the 1-based step `t` for a gradient scaled by `scale`, each rounded to float32. */
export function adamCoefficients(settings: AdamSettings, scale: number, t: number): AdamCoefficients {
  const { beta1, beta2, epsilon, learningRate, weightDecay } = settings;
  const f = Math.fround;
  return {
    beta1: f(beta1),
    beta2: f(beta2),
    gm: f((1 - beta1) * scale),
    gv: f((1 - beta2) * scale * scale),
    stepSize: f((learningRate * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t)),
    keep: f(1 - learningRate * weightDecay),
    epsilon: f(epsilon),
  };
}

/**
 * One update of one parameter from a compacted gradient, in scalar JavaScript: `gradient[k]` is
 * the gradient at position `positions[k]` (or at k when positions is null: an unmasked parameter).
 * float32 arithmetic, each operation rounded once in the order the SIMD kernel (common/simd/f32.wat)
 * uses, so the two give the same bits: this is its reference, and the path for states too large
 * for WebAssembly memory.
 */
export function adamUpdate(
  weights: Float32Array,
  moments: AdamMoments,
  gradient: Float32Array,
  positions: Uint32Array | null,
  c: AdamCoefficients,
): void {
  const f = Math.fround;
  const { m, v } = moments;
  const count = positions ? positions.length : weights.length;
  for (let k = 0; k < count; k++) {
    const i = positions ? positions[k] : k;
    const g = gradient[k];
    const mi = f(f(c.beta1 * m[i]) + f(c.gm * g));
    const vi = f(f(c.beta2 * v[i]) + f(f(c.gv * g) * g));
    m[i] = mi;
    v[i] = vi;
    weights[i] = f(f(weights[i] * c.keep) - f(f(c.stepSize * mi) / f(f(Math.sqrt(vi)) + c.epsilon)));
  }
}
