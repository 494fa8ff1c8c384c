// What the benchmarks share and nothing else: their `--name value` options, and the rate of whole
// training steps (the workers' step loop). Kept apart from _experiment.ts, which starts clusters,
// so the GPU kit's bundle stays small.
import type { Replica } from '../src/training/replica.ts';
import { trainSteps } from '../src/training/step-loop.ts';

/** `--name value` pairs of the command line (a bare `--flag` is 'true'). */
export function benchArgs(): Record<string, string> {
  const args = process.argv.slice(2);
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const key = args[i].replace(/^--/, '');
    const next = args[i + 1];
    if (next === undefined || next.startsWith('--')) out[key] = 'true';
    else out[key] = args[++i];
  }
  return out;
}

export interface StepRate {
  samplesPerSecond: number;
  /** Per step: forward, backward and reading the gradient; the update. */
  gradientMs: number;
  updateMs: number;
}

const STEPS_PER_CALL = 4;

/** Whole steps for about `seconds` (at least `minSteps`, after `warmup` uncounted ones that compile and allocate). */
export async function stepRate(replica: Replica, batch: number, seconds: number, warmup: number, minSteps: number): Promise<StepRate> {
  await trainSteps(replica, { fromStep: 0, toStep: warmup });
  let steps = 0;
  let gradientMs = 0;
  let updateMs = 0;
  const start = performance.now();
  // A few steps per call, as a worker's segment runs them (the loop reuses its buffers within one).
  while (steps < minSteps || performance.now() - start < seconds * 1000) {
    const { times } = await trainSteps(replica, { fromStep: warmup + steps, toStep: warmup + steps + STEPS_PER_CALL });
    gradientMs += times.computeMs;
    updateMs += times.updateMs;
    steps += STEPS_PER_CALL;
  }
  const elapsed = (performance.now() - start) / 1000;
  return { samplesPerSecond: (steps * batch) / elapsed, gradientMs: gradientMs / steps, updateMs: updateMs / steps };
}
