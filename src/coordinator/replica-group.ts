// The seam between the training algorithm and the cluster: one ring generation seen as a
// collective. The run loop (run-loop.ts) is written against this interface alone; RemoteGroup
// drives worker processes over their control links, LocalGroup drives in-process replicas.
import type { EvalSums } from '../training/evaluate.ts';
import type { StateReport } from '../training/member.ts';
import type { StepsResult } from '../training/step-loop.ts';

/** What every member reported about its data and model (they must all agree). */
export interface GroupFacts {
  data: { description: string; trainCount: number; holdbackCount: number; testCount: number; stepsPerEpoch: number };
  layers: { name: string; shape: number[]; prunable: boolean }[];
  backend: string;
}

export type { StateReport };
export type StepsDone = StepsResult & { stateDigest: string };
export interface EvalResult {
  holdback: EvalSums;
  test: EvalSums;
}
export interface StateUpload {
  state: Uint8Array;
  stateDigest: string;
  step: number;
}
/** A member's report while it trains (about once a second), for progress displays. */
export interface StepProgress {
  step: number;
  loss: number;
  times: StepsResult['times'];
  bytesSent: number;
}

/**
 * One ring generation. Every method addresses all members (by rank) unless it takes a rank, and
 * rejects with MembershipChanged when a member is lost or excluded: the ring must then re-form.
 */
export interface ReplicaGroup {
  /** Worker ids in rank order. */
  readonly memberIds: readonly string[];
  /** What each member computes on (backend, and GPU on webgpu), in rank order. */
  readonly hardware: readonly string[];
  /** Each member's measured matrix-product rate, FLOP/s (0 = not measured): the peak of MFU. */
  readonly peakFlops: readonly number[];
  readonly facts: GroupFacts;
  /** Every member takes a committed state at `step`, or (state null) initialises from the seed. */
  load(step: number, state: Uint8Array | null): Promise<StateReport[]>;
  /** Trains global steps [fromStep, toStep) on every member. */
  train(fromStep: number, toStep: number, onProgress?: (rank: number, progress: StepProgress) => void): Promise<StepsDone[]>;
  evaluate(): Promise<EvalResult[]>;
  /** Each rank computes the thresholds of the prunable layers `layersOf(rank)` for fraction p. */
  thresholds(p: number, layersOf: (rank: number) => number[]): Promise<{ layers: number[]; values: number[] }[]>;
  prune(thresholds: number[]): Promise<StateReport[]>;
  upload(rank: number): Promise<StateUpload>;
  /** Replaces one member's state with `state` (from a member that agrees with the majority). */
  resync(rank: number, step: number, state: Uint8Array): Promise<StateReport>;
  /** Drops a member that cannot go on; the next call (or this one's caller) sees MembershipChanged. */
  exclude(rank: number, reason: string): void;
  /** At a segment boundary, where every replica holds the committed state: why the ring must re-form now, if it must. */
  boundary(step: number): string | null;
}

/** The ring lost a member or must admit new ones: re-form and reload the committed state. */
export class MembershipChanged extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MembershipChanged';
  }
}
