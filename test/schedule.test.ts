import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config.ts';
import {
  afterRound,
  eligibleForBest,
  initialSchedule,
  occamPruneFraction,
  polynomialSparsity,
  roundStartStep,
  roundStepCount,
  totalRounds,
} from '../src/training/schedule.ts';

const p0 = 0.4;

describe('occam pruning fraction (zeta / clip rule)', () => {
  it('keeps p for the first two rounds', () => {
    expect(occamPruneFraction(p0, p0, [1.0], 'standard')).toBe(p0);
    expect(occamPruneFraction(p0, p0, [1.0, 0.5], 'standard')).toBe(p0);
  });

  it('scales p by the ratio of successive improvements', () => {
    // zeta = (0.7 - 0.8) / (0.8 - 1.0) = 0.5
    expect(occamPruneFraction(0.4, p0, [1.0, 0.8, 0.7], 'standard')).toBeCloseTo(0.2, 12);
    expect(occamPruneFraction(0.2, p0, [1.0, 0.8, 0.7], 'standard')).toBeCloseTo(0.1, 12);
  });

  it('clips to [0.1 p0, p0]', () => {
    // zeta = 2 → 0.8, above p0
    expect(occamPruneFraction(0.4, p0, [1.0, 0.9, 0.7], 'standard')).toBe(p0);
    // zeta = 0.01 → below 0.1 p0
    expect(occamPruneFraction(0.4, p0, [1.0, 0.9, 0.899], 'standard')).toBeCloseTo(0.1 * p0, 12);
  });

  it('clips a negative zeta (the loss turned) to the lower bound', () => {
    expect(occamPruneFraction(0.3, p0, [1.0, 0.9, 0.95], 'standard')).toBeCloseTo(0.04, 12);
    expect(occamPruneFraction(0.3, p0, [1.0, 1.1, 1.0], 'standard')).toBeCloseTo(0.04, 12);
  });

  it('maps a zero denominator to a bound by the sign of the numerator, and 0/0 to no change', () => {
    expect(occamPruneFraction(0.3, p0, [1.0, 1.0, 0.9], 'standard')).toBeCloseTo(0.04, 12); // −∞
    expect(occamPruneFraction(0.3, p0, [1.0, 1.0, 1.1], 'standard')).toBe(p0); // +∞
    expect(occamPruneFraction(0.3, p0, [1.0, 1.0, 1.0], 'standard')).toBe(0.3); // NaN: keep p
  });

  it('never returns NaN, even for NaN or infinite losses', () => {
    for (const losses of [
      [1, NaN, 0.5],
      [NaN, NaN, NaN],
      [1, Infinity, 0.5],
      [Infinity, Infinity, 1],
      [1, 0.5, -Infinity],
    ]) {
      for (const variant of ['standard', 'transformer'] as const) {
        const p = occamPruneFraction(0.3, p0, losses, variant);
        expect(Number.isFinite(p)).toBe(true);
        expect(p).toBeGreaterThanOrEqual(0.1 * p0);
        expect(p).toBeLessThanOrEqual(p0);
      }
    }
  });

  it('transformer variant: the upper bound is min(1.5 p, p0)', () => {
    // zeta = 10 would give 1.0; the bound is 1.5 × 0.1 = 0.15
    expect(occamPruneFraction(0.1, p0, [1.0, 0.99, 0.89], 'transformer')).toBeCloseTo(0.15, 12);
    expect(occamPruneFraction(0.1, p0, [1.0, 0.99, 0.89], 'standard')).toBe(p0);
    // near p0 the bound is p0
    expect(occamPruneFraction(0.35, p0, [1.0, 0.99, 0.89], 'transformer')).toBe(p0);
    // +∞ zeta clips to the transformer bound too
    expect(occamPruneFraction(0.1, p0, [1.0, 1.0, 1.1], 'transformer')).toBeCloseTo(0.15, 12);
  });
});

describe('strategies share one afterRound()', () => {
  it('occam carries p and the loss history, and does not prune after the last round', () => {
    const config = resolveConfig({ rounds: 4 });
    let state = initialSchedule(config);
    const fractions: number[] = [];
    for (const [round, loss] of [1.0, 0.8, 0.7, 0.65].entries()) {
      const result = afterRound(config, state, round, loss, 1);
      fractions.push(result.pruneFraction);
      state = result.state;
    }
    expect(fractions[0]).toBe(0.4);
    expect(fractions[1]).toBe(0.4);
    expect(fractions[2]).toBeCloseTo(0.2, 12);
    expect(fractions[3]).toBe(0);
    expect(state.losses).toEqual([1.0, 0.8, 0.7, 0.65]);
  });

  it('none never prunes', () => {
    const config = resolveConfig({ strategy: 'none', rounds: 3 });
    for (let round = 0; round < 3; round++) expect(afterRound(config, initialSchedule(config), round, 1, 1).pruneFraction).toBe(0);
  });

  it('posttrain prunes once, after the last dense round, to the target density', () => {
    const config = resolveConfig({ strategy: 'posttrain', rounds: 3, targetDensity: 0.25 });
    expect(totalRounds(config)).toBe(4); // one evaluation round of the pruned model
    expect(roundStepCount(config, 3, 10)).toBe(0);
    expect(afterRound(config, initialSchedule(config), 1, 1, 1).pruneFraction).toBe(0);
    expect(afterRound(config, initialSchedule(config), 2, 1, 1).pruneFraction).toBeCloseTo(0.75, 12);
    expect(eligibleForBest(config, 2)).toBe(false);
    expect(eligibleForBest(config, 3)).toBe(true);
    const tuned = resolveConfig({ strategy: 'posttrain', rounds: 3, fineTuneRounds: 2 });
    expect(totalRounds(tuned)).toBe(5);
    expect(roundStepCount(tuned, 4, 10)).toBe(10);
  });

  it('gradual follows the cubic polynomial decay to the target sparsity', () => {
    expect(polynomialSparsity(0, 0, 4, 0, 0.9)).toBe(0);
    expect(polynomialSparsity(4, 0, 4, 0, 0.9)).toBeCloseTo(0.9, 12);
    expect(polynomialSparsity(2, 0, 4, 0, 0.9)).toBeCloseTo(0.9 - 0.9 * 0.125, 12);
    const config = resolveConfig({ strategy: 'gradual', rounds: 6, targetDensity: 0.1, beginRound: 0, endRound: 3 });
    let density = 1;
    for (let round = 0; round < 6; round++) {
      const { pruneFraction } = afterRound(config, initialSchedule(config), round, 1, density);
      density *= 1 - pruneFraction;
      if (round <= 3) expect(1 - density).toBeCloseTo(polynomialSparsity(round, 0, 3, 0, 0.9), 12);
    }
    expect(density).toBeCloseTo(0.1, 12);
    expect(eligibleForBest(config, 3)).toBe(false);
    expect(eligibleForBest(config, 4)).toBe(true);
  });

  it('rounds map to global steps', () => {
    const config = resolveConfig({ rounds: 3 });
    expect(roundStartStep(config, 2, 57)).toBe(114);
    const fixed = resolveConfig({ rounds: 3, roundSteps: 20 });
    expect(roundStartStep(fixed, 2, 57)).toBe(40);
  });
});
