// The pruning schedules. Occam's adaptive rule (docs/ALGORITHM.md) and the baselines `none`,
// `posttrain` and `gradual` all answer one question after each round — what fraction of each
// layer's surviving weights to prune — so one training loop serves them all.
import { boundVariant, gradualEndRound, type OccamConfig } from '../config.ts';

/**
 * Occam's next pruning fraction from the holdback losses c_0..c_i of the rounds so far.
 * Rounds 0 and 1 keep p. From the third round on zeta = (c_i − c_{i−1}) / (c_{i−1} − c_{i−2}) and
 * p ← clip(zeta · p, 0.1 · p0, upper) with upper = p0 (standard) or min(1.5 · p, p0) (transformer).
 * A zero denominator gives zeta = ±Infinity, which clips to a bound; zeta NaN (0/0, or a NaN
 * loss) carries no information and keeps p. The result is never NaN.
 */
export function occamPruneFraction(p: number, p0: number, losses: number[], variant: 'standard' | 'transformer'): number {
  const lower = 0.1 * p0;
  const upper = variant === 'transformer' ? Math.min(1.5 * p, p0) : p0;
  const clip = (value: number) => Math.min(upper, Math.max(lower, value));
  const i = losses.length - 1;
  if (i < 2) return clip(p);
  const zeta = (losses[i] - losses[i - 1]) / (losses[i - 1] - losses[i - 2]);
  if (Number.isNaN(zeta)) return clip(p);
  if (zeta === Infinity) return upper;
  if (zeta === -Infinity) return lower;
  return clip(zeta * p);
}

/** The Zhu & Gupta (TF-MOT PolynomialDecay) sparsity after `round`, cubic from initial to final. */
export function polynomialSparsity(round: number, begin: number, end: number, initial: number, final: number): number {
  if (round < begin) return 0;
  const progress = end > begin ? Math.min(1, (round - begin) / (end - begin)) : 1;
  return final + (initial - final) * (1 - progress) ** 3;
}

/** What the coordinator carries between rounds for the schedule; it is part of a checkpoint. */
export interface ScheduleState {
  /** Occam's current pruning fraction. */
  p: number;
  /** Holdback loss of every round so far (the training loss when holdback is 0). */
  losses: number[];
}

export function initialSchedule(config: OccamConfig): ScheduleState {
  return { p: config.p0, losses: [] };
}

/** Rounds the run has: posttrain adds its fine-tune rounds (at least one, to evaluate the pruned model). */
export function totalRounds(config: OccamConfig): number {
  return config.strategy === 'posttrain' ? config.rounds + Math.max(1, config.fineTuneRounds) : config.rounds;
}

/** Training steps in `round` (posttrain without fine-tuning only evaluates its pruned model). */
export function roundStepCount(config: OccamConfig, round: number, stepsPerEpoch: number): number {
  const steps = config.roundSteps > 0 ? config.roundSteps : stepsPerEpoch;
  return config.strategy === 'posttrain' && config.fineTuneRounds === 0 && round >= config.rounds ? 0 : steps;
}

/** First global step of `round`. */
export function roundStartStep(config: OccamConfig, round: number, stepsPerEpoch: number): number {
  let step = 0;
  for (let r = 0; r < round; r++) step += roundStepCount(config, r, stepsPerEpoch);
  return step;
}

/**
 * Records round `round`'s loss and returns the fraction of surviving weights to prune after it
 * (and the schedule state to carry on). `density` is the current fraction of prunable weights kept.
 */
export function afterRound(
  config: OccamConfig,
  state: ScheduleState,
  round: number,
  loss: number,
  density: number,
): { state: ScheduleState; pruneFraction: number } {
  const losses = [...state.losses, loss];
  const last = round >= totalRounds(config) - 1;
  const toDensity = (target: number) => (density > target ? 1 - target / density : 0);
  switch (config.strategy) {
    case 'occam': {
      const p = occamPruneFraction(state.p, config.p0, losses, boundVariant(config));
      return { state: { p, losses }, pruneFraction: last ? 0 : p };
    }
    case 'none':
      return { state: { p: 0, losses }, pruneFraction: 0 };
    case 'posttrain':
      return { state: { p: 0, losses }, pruneFraction: round === config.rounds - 1 ? toDensity(config.targetDensity) : 0 };
    case 'gradual': {
      const end = gradualEndRound(config);
      const sparsity = polynomialSparsity(round, config.beginRound, end, config.initialSparsity, 1 - config.targetDensity);
      return { state: { p: 0, losses }, pruneFraction: round <= end ? toDensity(1 - sparsity) : 0 };
    }
  }
}

/** Whether `round` may be the best round: baselines that prune to a target only count once they reach it. */
export function eligibleForBest(config: OccamConfig, round: number): boolean {
  if (config.strategy === 'posttrain') return round >= config.rounds;
  if (config.strategy === 'gradual') return round > gradualEndRound(config);
  return true;
}
