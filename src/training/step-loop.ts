// The one training step loop, used by workers, the in-process group, the engine bench and the
// tests: for each global step, this rank's compacted gradient and its loss sum travel together
// (the loss in one extra slot), in buckets, last layer first; every replica applies the same sums.
import { SOLO, type Collective } from '../common/collective.ts';
import type { StepTimes } from '../wire/messages.generated.ts';
import type { Replica, StepUpdate } from './replica.ts';

/** Where the steps' time went, summed over the steps: the same record a worker reports on the wire. */
export type { StepTimes };

export interface StepsResult {
  /** Global loss sum and sample count over the steps (identical on every rank). */
  lossSum: number;
  samples: number;
  times: StepTimes;
  bytesSent: number;
}

export interface StepLoopOptions {
  fromStep: number;
  toStep: number;
  rank?: number;
  world?: number;
  /** SOLO (no peers) when absent. */
  collective?: Collective;
  /** Throws when the loop must stop (its ring was superseded): checked before each step and before each update. */
  check?(): void;
  /** While this rank computes the gradient of `step`, counted as compute (fault injection: a slow rank). */
  duringCompute?(step: number): void;
  /** While this rank's gradient is in the all-reduce of `step`: after its first bucket is applied, when it has several (fault injection). */
  duringAllReduce?(step: number): void;
  /** After each step, with the global mean loss of that step; may throw to abandon the loop. */
  afterStep?(step: number, loss: number, sofar: StepsResult): void;
}

export function noTimes(): StepTimes {
  return { steps: 0, computeMs: 0, allreduceMs: 0, updateMs: 0, waitMs: 0 };
}

/** Trains global steps [fromStep, toStep) on `replica`; every rank of the collective runs the same steps. */
export async function trainSteps(replica: Replica, options: StepLoopOptions): Promise<StepsResult> {
  const { fromStep, toStep, rank = 0, world = 1, collective = SOLO } = options;
  const result: StepsResult = { lossSum: 0, samples: 0, times: noTimes(), bytesSent: 0 };
  // One buffer for every step of the segment (a step is done with it before the next begins):
  // a fresh one per step would cost a zeroed allocation of the whole gradient each time. It lies in
  // shared memory, where a ring in its own thread sums it without a copy in or out.
  let buffer: Float32Array = new Float32Array(0);
  for (let step = fromStep; step < toStep; step++) {
    options.check?.();
    const t0 = performance.now();
    options.duringCompute?.(step);
    const length = replica.gradientLength;
    if (buffer.length !== length + 1) buffer = new Float32Array(new SharedArrayBuffer(4 * (length + 1)));
    const globalCount = replica.globalCount(step);
    const { times } = result;
    // Each bucket is queued on the collective as soon as its values are final: during the backward
    // pass (replica.shardGradient's release), or after it. Each is applied, in bucket order, as soon
    // as it is summed, while later ones travel or are still being read from a device. Their
    // placements make the sums the bits of one all-reduce.
    const buckets = replica.gradientBuckets();
    let sent = 0;
    let update: StepUpdate | null = null;
    let applied: Promise<void> = Promise.resolve();
    const send = (k: number) => {
      const bucket = buckets[k];
      const sum = collective.allReduce(buffer.subarray(bucket.start, bucket.end), { offset: bucket.start, totalLength: length + 1 });
      sum.catch(() => {}); // the first failure is the one awaited below
      sent++;
      applied = applied.then(async () => {
        const stats = await sum;
        options.check?.(); // nothing is applied from an all-reduce whose ring was replaced
        const t2 = performance.now();
        update ??= replica.beginUpdate(globalCount, buffer);
        replica.applyUpdate(update, buffer, bucket.params);
        times.updateMs += performance.now() - t2;
        if (k === 0 && buckets.length > 1) options.duringAllReduce?.(step); // part of the step applied, the rest in flight
        times.allreduceMs += stats.transferMs;
        times.waitMs += stats.waitMs;
        result.bytesSent += stats.bytesSent;
      });
      applied.catch(() => {});
    };
    const release = buckets.length > 1 ? { buckets, onBucket: send } : undefined;
    const shard = await replica.shardGradient(step, rank, world, buffer, release);
    if (sent === 0) buffer[length] = shard.lossSum; // else bucket 0 left with it
    for (let k = sent; k < buckets.length; k++) send(k);
    const t1 = performance.now();
    if (buckets.length === 1) options.duringAllReduce?.(step);
    await applied;
    times.steps++;
    times.computeMs += t1 - t0;
    result.lossSum += buffer[length];
    result.samples += shard.globalCount;
    options.afterStep?.(step, buffer[length] / shard.globalCount, result);
    // A step's compute is synchronous; a sole worker's all-reduce is too. Yield to the event loop
    // between steps, so heartbeats (and a newer command) are answered during a long segment.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return result;
}
