// Generated from proto/occam.proto by scripts/gen-protocol.ts: do not edit. `npm run gen:protocol` rewrites it.

export interface Join {
  workerId: string;
  ringHost: string;
  ringPort: number;
}

export interface Welcome {
  runId: string;
  configJson: string;
  configHash: string;
  livenessKey: string;
}

export interface Ready {
  data: DataInfo;
  layers: LayerInfo[];
  backend: string;
  matmulFlops: number;
}

export interface DataInfo {
  description: string;
  trainCount: number;
  holdbackCount: number;
  testCount: number;
  stepsPerEpoch: number;
}

export interface LayerInfo {
  name: string;
  shape: number[];
  prunable: boolean;
}

export interface Peer {
  workerId: string;
  host: string;
  port: number;
}

export interface FormRing {
  generation: number;
  rank: number;
  members: Peer[];
  ringKey: string;
}

export interface LoadState {
  generation: number;
  step: number;
  initialize: boolean;
  state: Uint8Array;
}

export interface StateReport {
  stateDigest: string;
  activePerLayer: number[];
  activeParams: number;
  step: number;
}

export interface RunSteps {
  generation: number;
  fromStep: number;
  toStep: number;
}

export interface StepTimes {
  steps: number;
  computeMs: number;
  allreduceMs: number;
  updateMs: number;
  waitMs: number;
}

export interface StepsDone {
  lossSum: number;
  samples: number;
  times: StepTimes;
  bytesSent: number;
  stateDigest: string;
}

export interface StepProgress {
  step: number;
  loss: number;
  times: StepTimes;
  bytesSent: number;
}

export interface Evaluate {
  generation: number;
}

export interface EvalSums {
  lossSum: number;
  correct: number;
  count: number;
}

export interface EvalResult {
  holdback: EvalSums;
  test: EvalSums;
}

export interface ComputeThresholds {
  generation: number;
  p: number;
  layers: number[];
}

export interface Thresholds {
  layers: number[];
  values: number[];
}

export interface Prune {
  generation: number;
  thresholds: number[];
}

export interface UploadState {
  generation: number;
}

export interface StateUpload {
  state: Uint8Array;
  stateDigest: string;
  step: number;
}

export interface Heartbeat {
  sentMs: number;
  busyMs: number;
  ringGeneration: number;
  sentToNextBytes: number;
  receivedFromPreviousBytes: number;
}

export interface RingStall {
  generation: number;
  waitedMs: number;
  sentToNextBytes: number;
  receivedFromPreviousBytes: number;
}

export interface LivenessHello {
  workerId: string;
  key: string;
}

export interface Ack {
}

export interface Error {
  code: string;
  message: string;
}

export interface Shutdown {
  reason: string;
}

export interface Leave {
  reason: string;
}

export interface RingHello {
  generation: number;
  rank: number;
  workerId: string;
  key: string;
}

export interface RingAccepted {
}

/** Every message an Envelope carries, by the name of its field. */
export interface Messages {
  join: Join;
  welcome: Welcome;
  ready: Ready;
  formRing: FormRing;
  ack: Ack;
  loadState: LoadState;
  stateReport: StateReport;
  runSteps: RunSteps;
  stepsDone: StepsDone;
  stepProgress: StepProgress;
  evaluate: Evaluate;
  evalResult: EvalResult;
  computeThresholds: ComputeThresholds;
  thresholds: Thresholds;
  prune: Prune;
  uploadState: UploadState;
  stateUpload: StateUpload;
  heartbeat: Heartbeat;
  error: Error;
  shutdown: Shutdown;
  leave: Leave;
  livenessHello: LivenessHello;
  ringStall: RingStall;
}

/** The reply each command expects (the Worker service of the proto). */
export const REPLY_KIND = {
  welcome: 'ready',
  formRing: 'ack',
  loadState: 'stateReport',
  runSteps: 'stepsDone',
  evaluate: 'evalResult',
  computeThresholds: 'thresholds',
  prune: 'stateReport',
  uploadState: 'stateUpload',
} as const;
