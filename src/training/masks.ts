// Magnitude pruning with cumulative binary masks. A layer's threshold is the p-quantile of |w|
// over its surviving weights; the new mask keeps |w| ≥ threshold (ties kept), so pruning only
// ever removes weights. A pruned position has weight, Adam moments and gradient exactly zero.

/**
 * The p-quantile of |w| over the positions the mask still keeps: the value below which the
 * floor(p · n) smallest magnitudes lie. Keeping |w| ≥ it prunes at most that many (fewer on ties).
 * An empty layer gets 0 (nothing to prune); p = 1 gets +Infinity (prune everything).
 */
export function pruneThreshold(weights: Float32Array, mask: Uint8Array, p: number): number {
  let active = 0;
  for (let i = 0; i < mask.length; i++) active += mask[i];
  if (active === 0) return 0;
  const magnitudes = new Float32Array(active);
  for (let i = 0, k = 0; i < mask.length; i++) if (mask[i]) magnitudes[k++] = Math.abs(weights[i]);
  const k = Math.floor(Math.min(1, Math.max(0, p)) * active);
  if (k >= active) return Infinity;
  return quickSelect(magnitudes, k);
}

/**
 * Applies a threshold to one layer: positions with |w| < threshold leave the mask, and their
 * weight and optimizer moments become zero. Returns how many weights it pruned.
 */
export function applyThreshold(threshold: number, mask: Uint8Array, zeroed: Float32Array[], weights: Float32Array): number {
  let pruned = 0;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i] && !(Math.abs(weights[i]) >= threshold)) {
      mask[i] = 0;
      for (const array of zeroed) array[i] = 0;
      pruned++;
    }
  }
  return pruned;
}

/** Number of kept positions. */
export function countActive(mask: Uint8Array): number {
  let active = 0;
  for (let i = 0; i < mask.length; i++) active += mask[i];
  return active;
}

/** Indices of the kept positions, in order: the layout of a compacted gradient. */
export function activeIndices(mask: Uint8Array): Uint32Array {
  const indices = new Uint32Array(countActive(mask));
  for (let i = 0, k = 0; i < mask.length; i++) if (mask[i]) indices[k++] = i;
  return indices;
}

/** The k-th smallest value (0-based); reorders `values`. Average O(n). */
function quickSelect(values: Float32Array, k: number): number {
  let lo = 0;
  let hi = values.length - 1;
  while (lo < hi) {
    const pivot = values[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
      if (i <= j) {
        const t = values[i];
        values[i] = values[j];
        values[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return values[k];
  }
  return values[k];
}
