// The plan a run prints before it starts (and `occam train --dry-run` prints alone): how the
// global batch splits over the workers, how many steps a round has, what is evaluated — so a
// round of one step, or an evaluation that blocks a worker for a minute, is seen before it runs.
import { evalBatchSamples, GPT_ROUND_STEPS, type OccamConfig } from '../config.ts';
import { shardRange } from '../common/shard.ts';
import { totalRounds } from '../training/schedule.ts';

/** What the plan needs to know of the data. */
export interface PlannedData {
  description: string;
  trainCount: number;
  holdbackCount: number;
  testCount: number;
  stepsPerEpoch(batchSize: number): number;
}

export interface Plan {
  rounds: number;
  stepsPerRound: number;
  globalBatch: number;
  perWorkerBatch: number[];
  holdbackSamples: number;
  testSamples: number;
  evalBatch: number;
  /** Things worth changing before the run starts. */
  notes: string[];
}

export function planRun(config: OccamConfig, data: PlannedData): Plan {
  const stepsPerRound =
    config.roundSteps > 0 ? config.roundSteps : config.model === 'gpt' ? GPT_ROUND_STEPS : data.stepsPerEpoch(config.batchSize);
  const limit = (count: number) => (config.evalLimit > 0 ? Math.min(count, config.evalLimit) : count);
  const perWorkerBatch = Array.from({ length: config.workers }, (_, rank) => {
    const [start, end] = shardRange(config.batchSize, rank, config.workers);
    return end - start;
  });
  const notes: string[] = [];
  if (stepsPerRound < 5)
    notes.push(
      `a round is only ${stepsPerRound} step${stepsPerRound === 1 ? '' : 's'} of ${config.batchSize} samples: a smaller --batch-size or a larger --round-steps trains more between prunings`,
    );
  if (perWorkerBatch.some((n) => n === 0))
    notes.push(`--batch-size ${config.batchSize} leaves some of the ${config.workers} workers no samples`);
  return {
    rounds: totalRounds(config),
    stepsPerRound,
    globalBatch: config.batchSize,
    perWorkerBatch,
    holdbackSamples: limit(data.holdbackCount),
    testSamples: limit(data.testCount),
    evalBatch: evalBatchSamples(config),
    notes,
  };
}

/** The plan as the lines the terminal prints. */
export function formatPlan(config: OccamConfig, data: PlannedData, plan: Plan): string {
  const split = new Set(plan.perWorkerBatch).size === 1 ? `${config.workers} × ${plan.perWorkerBatch[0]}` : plan.perWorkerBatch.join(' + ');
  const sample = config.model === 'gpt' ? `windows of ${config.blockSize} tokens` : 'samples';
  const micro = config.accumulateSteps > 1 ? `, each in ${config.accumulateSteps} micro-batches (one all-reduce a step)` : '';
  const lines = [
    `plan: ${config.model} on ${data.description} (${data.trainCount} training ${sample}), strategy ${config.strategy}, backend ${config.backend}`,
    `      ${plan.rounds} rounds × ${plan.stepsPerRound} step${plan.stepsPerRound === 1 ? '' : 's'}; global batch ${plan.globalBatch} = ${split} per worker${micro}`,
    `      evaluation after each round: ${plan.holdbackSamples} holdback + ${plan.testSamples} test ${sample}, in batches of ${plan.evalBatch}`,
  ];
  for (const note of plan.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}
