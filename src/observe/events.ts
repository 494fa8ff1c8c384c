// What a run tells the people watching it: one stream of events from the coordinator's run loop,
// read by the terminal view, the Prometheus metrics and the live status page.
import type { RoundMetrics, RunSummary } from '../storage/run-dir.ts';
import type { TokenThroughput } from '../training/flops.ts';
import type { StepTimes } from '../training/step-loop.ts';

export type RunEvent =
  | { type: 'waiting'; ready: number; needed: number }
  /**
   * A ring formed: its members in rank order, what each computes on (its backend) and its measured
   * matrix-product rate, and (token models) what turns a step rate into tokens/s and MFU.
   */
  | { type: 'ring'; generation: number; workers: string[]; hardware: string[]; peakFlops: number[]; throughput: TokenThroughput | null }
  | {
      type: 'progress';
      round: number;
      rounds: number;
      step: number;
      roundStart: number;
      roundEnd: number;
      loss: number;
      weightsKept: number;
      workers: Map<string, StepTimes>;
    }
  | { type: 'round'; metrics: RoundMetrics; rounds: number }
  /** One worker's work so far in its current segment of steps (cumulative; `final`: its reply), for metrics. */
  | { type: 'steps'; workerId: string; step: number; times: StepTimes; bytesSent: number; final: boolean }
  | { type: 'resync'; workerId: string; reason: string }
  /** A member persistently slower than the others (coordinator/stragglers.ts), or no longer (`slow: false`). */
  | { type: 'straggler'; workerId: string; slow: boolean; msPerStep: number; othersMsPerStep: number }
  | { type: 'restart'; reason: string }
  | { type: 'done'; summary: RunSummary };

/** A straggler event as the terminal and the status page say it. */
export function describeStraggler(event: Extract<RunEvent, { type: 'straggler' }>): string {
  if (!event.slow) return `${event.workerId} keeps up with the others again`;
  const ms = (x: number) => `${x.toFixed(x < 10 ? 1 : 0)} ms`;
  return `straggler: ${event.workerId} takes ${ms(event.msPerStep)} per step against ${ms(event.othersMsPerStep)} for the others`;
}
