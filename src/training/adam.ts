// Adam on host arrays, applied only at the positions a mask keeps: pruned weights and their
// moments are never touched and so stay exactly zero. Keras's form and defaults (the paper's).

export interface AdamSettings {
  learningRate: number;
  beta1: number;
  beta2: number;
  epsilon: number;
}

export const ADAM_DEFAULTS: Omit<AdamSettings, 'learningRate'> = { beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };

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
      weights[i] -= (stepSize * mi) / (Math.sqrt(vi) + epsilon);
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
    weights[i] -= (stepSize * mi) / (Math.sqrt(vi) + epsilon);
  }
}
