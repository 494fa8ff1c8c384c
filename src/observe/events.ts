// What a run tells the people watching it: one stream of events from the coordinator's run loop,
// read by the terminal view, the Prometheus metrics and the live status page.
import type { RoundMetrics, RunSummary } from '../storage/run-dir.ts';
import type { StepTimes } from '../training/step-loop.ts';

export type RunEvent =
  | { type: 'waiting'; ready: number; needed: number }
  /** A ring formed: its members in rank order and what each computes on (its backend). */
  | { type: 'ring'; generation: number; workers: string[]; hardware: string[] }
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
  | { type: 'restart'; reason: string }
  | { type: 'done'; summary: RunSummary };
