// Evaluation sums: one rank's share of a split, and the shares summed in rank order. A replica
// and `occam evaluate` both use these, so a model evaluated offline with the run's worker count
// gives the figures the run recorded, to the last bit.
import type * as tf from '@tensorflow/tfjs-core';
import { shardRange } from '../common/shard.ts';
import { evalBatchSamples, type OccamConfig } from '../config.ts';
import type { DataSource, EvalSplit } from './data/source.ts';
import { evaluateBatch, type Model } from './models/model.ts';

/** Partial sums a worker reports for an evaluation split or a round's training loss. */
export interface EvalSums {
  lossSum: number;
  correct: number;
  count: number;
}

export type EvalSettings = Pick<OccamConfig, 'evalBatchSize' | 'evalLimit' | 'model' | 'blockSize'>;

/**
 * Loss sum, correct predictions and count over rank's share of an evaluation split.
 * Yields to the event loop between batches so heartbeats keep flowing during long evaluations.
 */
export async function evaluateShare(
  model: Model,
  weights: tf.Tensor[],
  data: DataSource,
  split: EvalSplit,
  share: { rank: number; world: number },
  settings: EvalSettings,
): Promise<EvalSums> {
  const total = split === 'holdback' ? data.holdbackCount : data.testCount;
  const limit = settings.evalLimit > 0 ? Math.min(total, settings.evalLimit) : total;
  const [start, end] = shardRange(limit, share.rank, share.world);
  const sums: EvalSums = { lossSum: 0, correct: 0, count: end - start };
  const batchSize = evalBatchSamples(settings);
  for (let at = start; at < end; at += batchSize) {
    const batch = data.evalExamples(split, at, Math.min(end, at + batchSize));
    const result = await evaluateBatch(model, weights, batch);
    sums.lossSum += result.lossSum;
    sums.correct += result.correct;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return sums;
}

/** The shares of every rank, summed in rank order (as the coordinator sums its workers' reports). */
export function sumShares(parts: EvalSums[]): EvalSums {
  return parts.reduce((acc, s) => ({ lossSum: acc.lossSum + s.lossSum, correct: acc.correct + s.correct, count: acc.count + s.count }), {
    lossSum: 0,
    correct: 0,
    count: 0,
  });
}

export function meanLoss(s: EvalSums): number | null {
  return s.count > 0 ? s.lossSum / s.count : null;
}

export function accuracy(s: EvalSums): number | null {
  return s.count > 0 ? s.correct / s.count : null;
}

/** A whole split evaluated as `world` workers would: each rank's share in turn, summed in rank order. */
export async function evaluateSplit(
  model: Model,
  weights: tf.Tensor[],
  data: DataSource,
  split: EvalSplit,
  world: number,
  settings: EvalSettings,
): Promise<EvalSums> {
  const shares: EvalSums[] = [];
  for (let rank = 0; rank < world; rank++) shares.push(await evaluateShare(model, weights, data, split, { rank, world }, settings));
  return sumShares(shares);
}
