// The end of one Occam round: evaluate the holdback and test splits (partial sums summed in rank
// order), run the schedule for the next pruning fraction, keep the best model, agree on the
// pruning thresholds and apply them, and return the round's metrics line.
import type { OccamConfig } from '../config.ts';
import type { RoundMetrics } from '../storage/run-dir.ts';
import { accuracy, meanLoss, sumShares } from '../training/evaluate.ts';
import { flopsUtilization, tokenThroughput } from '../training/flops.ts';
import { afterRound, eligibleForBest } from '../training/schedule.ts';
import type { ReplicaGroup } from './replica-group.ts';
import type { RunState } from './run-state.ts';

export interface RoundContext {
  config: OccamConfig;
  group: ReplicaGroup;
  weightsKept(progress: RunState): number;
  /** Writes the model of the ring (rank 0's) as the best one so far: progress.best is set. */
  exportBest(progress: RunState): Promise<void>;
  /** Checks every replica holds the agreed state; resynchronises the others. */
  reconcile(digests: string[], progress: RunState, when: string): Promise<string>;
}

/** Evaluation, the schedule, the best model and pruning; updates `progress` and returns the metrics line. */
export async function endRound(context: RoundContext, progress: RunState): Promise<RoundMetrics> {
  const startedMs = Date.now();
  const { config, group } = context;
  const evals = await group.evaluate();
  const holdback = sumShares(evals.map((r) => r.holdback));
  const test = sumShares(evals.map((r) => r.test));
  const trainLoss = progress.roundSamples > 0 ? progress.roundLossSum / progress.roundSamples : null;
  if (trainLoss !== null && !Number.isFinite(trainLoss)) {
    throw new Error(`training diverged: the training loss of round ${progress.round + 1} is ${trainLoss}; lower learningRate`);
  }
  const holdbackLoss = meanLoss(holdback);
  const loss = holdbackLoss ?? trainLoss ?? NaN;
  const weightsKept = context.weightsKept(progress);
  const { state: schedule, pruneFraction } = afterRound(config, progress.schedule, progress.round, loss, weightsKept);
  progress.compute += progress.activeParams * progress.roundSamples;
  const steps = Math.max(1, progress.roundTimes.steps);
  const { tokensPerSecond, mfu } = roundThroughput(config, group, progress);
  const metrics: RoundMetrics = {
    round: progress.round + 1,
    step: progress.step,
    trainLoss,
    holdbackLoss,
    holdbackAccuracy: accuracy(holdback),
    testLoss: meanLoss(test),
    testAccuracy: accuracy(test),
    weightsKept,
    activeParams: progress.activeParams,
    p: pruneFraction,
    samples: progress.roundSamples,
    compute: progress.compute,
    roundMs: 0,
    elapsedMs: 0,
    stepMs: {
      compute: progress.roundTimes.computeMs / steps,
      allreduce: progress.roundTimes.allreduceMs / steps,
      wait: progress.roundTimes.waitMs / steps,
      update: progress.roundTimes.updateMs / steps,
    },
    bytesPerStep: progress.roundBytes / steps,
    tokensPerSecond,
    mfu,
    workers: group.memberIds.length,
    resyncs: progress.resyncs,
    restarts: progress.restarts,
  };
  const improved = Number.isFinite(loss) && (progress.best === null || loss < progress.best.holdbackLoss);
  if (eligibleForBest(config, progress.round) && improved) {
    progress.best = {
      round: progress.round + 1,
      holdbackLoss: loss,
      testLoss: metrics.testLoss,
      testAccuracy: metrics.testAccuracy,
      weightsKept,
      activeParams: progress.activeParams,
      compute: progress.compute,
    };
    await context.exportBest(progress);
  }
  if (pruneFraction > 0) await prune(context, progress, pruneFraction);
  progress.elapsedMs += Date.now() - startedMs;
  metrics.roundMs = progress.roundMs + (Date.now() - startedMs);
  metrics.elapsedMs = progress.elapsedMs;
  metrics.resyncs = progress.resyncs;
  progress.history.push(metrics);
  progress.schedule = schedule;
  return metrics;
}

/** A token model's tokens/s over the round's training steps (wall time, so waiting counts) and its MFU. */
function roundThroughput(
  config: OccamConfig,
  group: ReplicaGroup,
  progress: RunState,
): { tokensPerSecond: number | null; mfu: number | null } {
  const throughput = tokenThroughput(config, group.facts.layers);
  if (!throughput || progress.roundMs <= 0) return { tokensPerSecond: null, mfu: null };
  const tokensPerSecond = (progress.roundSamples * config.blockSize) / (progress.roundMs / 1000);
  const peak = group.peakFlops.reduce((a, b) => a + b, 0);
  return { tokensPerSecond, mfu: flopsUtilization(tokensPerSecond, throughput.flopsPerToken, peak) };
}

/**
 * Threshold agreement: each prunable layer's threshold is computed once, by rank (layer mod n),
 * then every replica applies all of them and reports its digest; differing replicas are resynced.
 */
async function prune(context: RoundContext, progress: RunState, p: number): Promise<void> {
  const { group } = context;
  const layerCount = group.facts.layers.filter((l) => l.prunable).length;
  const n = group.memberIds.length;
  const mine = (rank: number) => Array.from({ length: layerCount }, (_, k) => k).filter((k) => k % n === rank);
  const replies = await group.thresholds(p, mine);
  const thresholds = new Array<number>(layerCount).fill(NaN);
  for (const reply of replies) reply.layers.forEach((layer, i) => (thresholds[layer] = reply.values[i]));
  if (thresholds.some((t) => Number.isNaN(t))) throw new Error('threshold agreement is missing layers');
  const reports = await group.prune(thresholds);
  const agreed = await context.reconcile(
    reports.map((r) => r.stateDigest),
    progress,
    'after pruning',
  );
  const report = reports[reports.findIndex((r) => r.stateDigest === agreed)];
  progress.activeParams = report.activeParams;
  progress.activePerLayer = report.activePerLayer;
}
