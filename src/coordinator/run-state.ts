// Where a run stands, as a checkpoint records it beside the replica state: round and step, the
// schedule, the best round, the metrics so far and the failure counters.
import type { BestRound, RoundMetrics } from '../storage/run-dir.ts';
import type { ScheduleState } from '../training/schedule.ts';
import type { StepTimes } from '../training/step-loop.ts';

/** What a checkpoint carries besides the replica state: where the run is and what it has seen. */
export interface RunState {
  round: number;
  step: number;
  /** Training loss and samples of the current round so far. */
  roundLossSum: number;
  roundSamples: number;
  roundTimes: StepTimes;
  roundBytes: number;
  roundMs: number;
  schedule: ScheduleState;
  best: BestRound | null;
  compute: number;
  activeParams: number;
  activePerLayer: number[];
  history: RoundMetrics[];
  elapsedMs: number;
  resyncs: number;
  restarts: number;
}

export interface Committed {
  progress: RunState;
  state: Uint8Array;
  digest: string;
}
