import { describe, expect, it } from 'vitest';
import { activeIndices, applyThreshold, countActive, pruneThreshold } from '../src/training/masks.ts';

const ones = (n: number) => new Uint8Array(n).fill(1);

describe('per-layer quantile thresholds', () => {
  it('prunes the floor(p·n) smallest magnitudes', () => {
    const w = Float32Array.from([0.5, -0.1, 0.3, -0.9, 0.2, 0.7, -0.4, 0.05, 0.6, -0.8]);
    const mask = ones(10);
    const t = pruneThreshold(w, mask, 0.4);
    // sorted magnitudes 0.05 0.1 0.2 0.3 | 0.4 …: the 4 smallest go
    expect(t).toBeCloseTo(0.4, 6);
    const pruned = applyThreshold(t, mask, [w], w);
    expect(pruned).toBe(4);
    expect(Array.from(mask)).toEqual([1, 0, 0, 1, 0, 1, 1, 0, 1, 1]);
    expect(countActive(mask)).toBe(6);
    expect(Array.from(w).filter((x) => x === 0).length).toBe(4);
  });

  it('keeps ties at the threshold', () => {
    const w = Float32Array.from([1, -1, 1, 1, 2, 3]);
    const mask = ones(6);
    const t = pruneThreshold(w, mask, 0.5);
    expect(t).toBe(1);
    expect(applyThreshold(t, mask, [w], w)).toBe(0);
    expect(countActive(mask)).toBe(6);
  });

  it('prunes nothing when all weights are equal', () => {
    const w = new Float32Array(100).fill(-0.25);
    const mask = ones(100);
    expect(applyThreshold(pruneThreshold(w, mask, 0.9), mask, [w], w)).toBe(0);
  });

  it('takes the quantile over the surviving weights only', () => {
    const w = Float32Array.from([0.01, 0.02, 0.03, 0.04, 1, 2, 3, 4]);
    const mask = Uint8Array.from([0, 0, 0, 0, 1, 1, 1, 1]);
    // survivors 1,2,3,4: the 0.5-quantile is 3 (two pruned)
    const t = pruneThreshold(w, mask, 0.5);
    expect(t).toBe(3);
    expect(applyThreshold(t, mask, [w], w)).toBe(2);
    expect(Array.from(mask)).toEqual([0, 0, 0, 0, 0, 0, 1, 1]);
  });

  it('handles an empty layer and p = 1', () => {
    const w = Float32Array.from([1, 2, 3]);
    const none = new Uint8Array(3);
    expect(pruneThreshold(w, none, 0.5)).toBe(0);
    expect(applyThreshold(0, none, [w], w)).toBe(0);
    const all = ones(3);
    expect(pruneThreshold(w, all, 1)).toBe(Infinity);
    expect(applyThreshold(Infinity, all, [w], w)).toBe(3);
    expect(countActive(all)).toBe(0);
  });

  it('is cumulative: a pruned weight never comes back, even if another array regrows it', () => {
    const w = Float32Array.from([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    const m = Float32Array.from([1, 1, 1, 1, 1, 1, 1, 1]);
    const mask = ones(8);
    applyThreshold(pruneThreshold(w, mask, 0.25), mask, [w, m], w);
    expect(Array.from(mask)).toEqual([0, 0, 1, 1, 1, 1, 1, 1]);
    expect(m[0]).toBe(0);
    w[0] = 100; // even a large value at a pruned position does not re-enter
    applyThreshold(pruneThreshold(w, mask, 0.5), mask, [w, m], w);
    expect(mask[0]).toBe(0);
    expect(countActive(mask)).toBe(3);
    expect(Array.from(activeIndices(mask))).toEqual([5, 6, 7]);
  });

  it('handles NaN weights by pruning them', () => {
    const w = Float32Array.from([NaN, 1, 2, 3]);
    const mask = ones(4);
    applyThreshold(0.5, mask, [w], w);
    expect(mask[0]).toBe(0);
    expect(w[0]).toBe(0);
  });
});
