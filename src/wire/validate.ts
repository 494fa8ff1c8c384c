import { decodeState, stateDigest } from '../storage/state-format.ts';
import type { OccamConfig } from '../config.ts';
import {
  REPLY_KIND,
  type Command,
  type Envelope,
  type EvalSumsMessage,
  type LayerInfo,
  type MessageKind,
  type Messages,
  type Peer,
  type RingCounters,
  type StepTimes,
} from './protocol.ts';

/** A reason to refuse a message, or null when it is valid. */
export type Problem = string | null;

/** Largest ring a coordinator forms, and largest model description a worker may report. */
const MAX_MEMBERS = 4096;
const MAX_LAYERS = 100_000;
/** Short free-text fields (ids, codes, backend names) and long ones (error messages, descriptions). */
const SHORT_TEXT = 256;
const LONG_TEXT = 16_384;
const MAX_CONFIG_JSON = 1 << 20;
/** digestArrays: 16 lowercase hex digits. */
const DIGEST = /^[0-9a-f]{16}$/;
const WORKER_ID = /^[\w.:@-]{1,128}$/;
/** A DNS name or an IPv4/IPv6 address: nothing that could change the meaning of a ws:// URL. */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|[0-9A-Fa-f:.]{2,45})$/;

/** What the coordinator knows when a worker's reply arrives. */
export interface CoordinatorView {
  config: OccamConfig;
  /** The data and model the first ready worker reported; every other worker must report the same. */
  reference: Messages['ready'] | null;
}

/** What a worker knows when a coordinator's command arrives. */
export interface WorkerView {
  workerId: string;
  generation: number;
  step: number;
  /** Prunable layers of its model; null before a welcome built one. */
  prunableLayers: number | null;
}

/** A command as the coordinator sent it, kept to check the reply against. */
export interface SentCommand {
  kind: Command;
  message: Messages[MessageKind];
}

// ─── worker → coordinator ───────────────────────────────────────────────────────────────────

/** A worker's first frame. */
export function joinProblem(join: Messages['join']): Problem {
  if (!WORKER_ID.test(join.workerId)) return 'invalid worker id';
  if (!HOST.test(join.ringHost)) return 'invalid ring host';
  if (!Number.isInteger(join.ringPort) || join.ringPort < 1 || join.ringPort > 65535) return 'invalid ring port';
  return null;
}

/** A heartbeat either way: a finite time, and a busy time that is a duration. */
export function heartbeatProblem(heartbeat: Messages['heartbeat']): Problem {
  return (
    finite(heartbeat.sentMs, 'heartbeat time') ??
    duration(heartbeat.busyMs, 'heartbeat busy time') ??
    ringCountersProblem({ generation: heartbeat.ringGeneration, ...heartbeat })
  );
}

function ringCountersProblem(counters: RingCounters): Problem {
  return (
    count(counters.generation, 'ring generation') ??
    count(counters.sentToNextBytes, 'bytes sent') ??
    count(counters.receivedFromPreviousBytes, 'bytes received')
  );
}

/** A worker's reply to `command` (the envelope's request id matched it). */
export function replyProblem(command: SentCommand, reply: Envelope, view: CoordinatorView): Problem {
  if (reply.kind === 'error') return errorProblem(reply.message as Messages['error']);
  const expected = REPLY_KIND[command.kind];
  if (reply.kind !== expected) return `replied '${reply.kind}' to '${command.kind}', expected '${expected}'`;
  const layers = view.reference?.layers ?? null;
  switch (reply.kind) {
    case 'ready':
      return readyProblem(reply.message as Messages['ready']) ?? readyMismatch(view.reference, reply.message as Messages['ready']);
    case 'ack':
      return null;
    case 'stateReport': {
      const report = reply.message as Messages['stateReport'];
      const loaded = command.kind === 'loadState' ? (command.message as Messages['loadState']).step : null;
      return (
        stateReportProblem(report, layers) ??
        (loaded !== null && report.step !== loaded ? `reported step ${report.step} after loading step ${loaded}` : null)
      );
    }
    case 'stepsDone':
      return stepsDoneProblem(reply.message as Messages['stepsDone'], command.message as Messages['runSteps'], view.config);
    case 'evalResult':
      return evalResultProblem(reply.message as Messages['evalResult'], view.reference);
    case 'thresholds':
      return thresholdsProblem(reply.message as Messages['thresholds'], (command.message as Messages['computeThresholds']).layers);
    case 'stateUpload':
      return stateUploadProblem(reply.message as Messages['stateUpload'], layers);
    default:
      return `'${reply.kind}' is not a reply`;
  }
}

/** A frame from a worker that answers no pending command: only heartbeats, progress, ring stalls, leave notices and errors may. */
export function unsolicitedProblem(envelope: Envelope): Problem {
  switch (envelope.kind) {
    case 'heartbeat':
      return heartbeatProblem(envelope.message as Messages['heartbeat']);
    case 'stepProgress': {
      const progress = envelope.message as Messages['stepProgress'];
      return (
        count(progress.step, 'step') ??
        loss(progress.loss, 'step loss') ??
        timesProblem(progress.times) ??
        count(progress.bytesSent, 'bytes sent')
      );
    }
    case 'error':
      return errorProblem(envelope.message as Messages['error']);
    case 'leave':
      return text((envelope.message as Messages['leave']).reason, LONG_TEXT, 'reason');
    case 'ringStall': {
      const stall = envelope.message as Messages['ringStall'];
      return duration(stall.waitedMs, 'ring wait') ?? ringCountersProblem(stall);
    }
    case 'join':
      return 'a second join on one connection';
    default:
      return `unsolicited '${envelope.kind}'`;
  }
}

/** Two workers that loaded different data or built different models could never agree. */
export function readyMismatch(reference: Messages['ready'] | null, ready: Messages['ready']): Problem {
  if (!reference) return null;
  const shape = (r: Messages['ready']) =>
    JSON.stringify([r.data.trainCount, r.data.holdbackCount, r.data.testCount, r.data.stepsPerEpoch, r.layers]);
  return shape(ready) === shape(reference) ? null : 'loaded different data or built a different model than the other workers';
}

function readyProblem(ready: Messages['ready']): Problem {
  const { data, layers } = ready;
  if (!data) return 'ready without data';
  const dataProblem =
    text(data.description, LONG_TEXT, 'data description') ??
    count(data.trainCount, 'training samples') ??
    count(data.holdbackCount, 'holdback samples') ??
    count(data.testCount, 'test samples') ??
    count(data.stepsPerEpoch, 'steps per epoch');
  if (dataProblem) return dataProblem;
  if (data.trainCount < 1 || data.stepsPerEpoch < 1) return 'no training data';
  if (layers.length < 1 || layers.length > MAX_LAYERS) return `${layers.length} layers`;
  const names = new Set<string>();
  for (const layer of layers) {
    if (!layer || typeof layer.name !== 'string' || layer.name === '' || layer.name.length > SHORT_TEXT || names.has(layer.name))
      return 'invalid or repeated layer name';
    names.add(layer.name);
    if (layer.shape.length < 1 || layer.shape.length > 8 || !layer.shape.every((d) => Number.isInteger(d) && d >= 1))
      return `layer ${layer.name} has an invalid shape`;
    if (!Number.isSafeInteger(size(layer))) return `layer ${layer.name} is too large`;
  }
  if (!layers.some((l) => l.prunable)) return 'the model has no prunable layer';
  if (!(ready.matmulFlops >= 0 && Number.isFinite(ready.matmulFlops))) return 'matrix-product rate is not a finite number ≥ 0';
  return text(ready.backend, SHORT_TEXT, 'backend');
}

function stateReportProblem(report: Messages['stateReport'], layers: LayerInfo[] | null): Problem {
  const basic = digest(report.stateDigest, 'state digest') ?? count(report.activeParams, 'active parameters') ?? count(report.step, 'step');
  if (basic || !layers) return basic;
  const prunable = layers.filter((l) => l.prunable);
  if (report.activePerLayer.length !== prunable.length)
    return `${report.activePerLayer.length} active counts for ${prunable.length} prunable layers`;
  let kept = 0;
  for (const [k, active] of report.activePerLayer.entries()) {
    if (!Number.isSafeInteger(active) || active < 0 || active > size(prunable[k]))
      return `active count ${active} of prunable layer ${k} is out of range`;
    kept += active;
  }
  const unprunable = layers.filter((l) => !l.prunable).reduce((n, l) => n + size(l), 0);
  if (report.activeParams !== kept + unprunable) return `active parameters ${report.activeParams} do not match the per-layer counts`;
  return null;
}

function stepsDoneProblem(done: Messages['stepsDone'], command: Messages['runSteps'], config: OccamConfig): Problem {
  const steps = command.toStep - command.fromStep;
  const basic =
    loss(done.lossSum, 'loss sum') ??
    count(done.samples, 'samples') ??
    timesProblem(done.times) ??
    count(done.bytesSent, 'bytes sent') ??
    digest(done.stateDigest, 'state digest');
  if (basic) return basic;
  if (done.samples > steps * config.batchSize) return `${done.samples} samples in ${steps} steps of at most ${config.batchSize}`;
  if (done.times.steps !== steps) return `reported ${done.times.steps} steps for ${steps}`;
  return null;
}

function evalResultProblem(result: Messages['evalResult'], reference: Messages['ready'] | null): Problem {
  return (
    evalSumsProblem(result.holdback, 'holdback', reference?.data.holdbackCount) ??
    evalSumsProblem(result.test, 'test', reference?.data.testCount)
  );
}

function evalSumsProblem(sums: EvalSumsMessage | null, split: string, total: number | undefined): Problem {
  if (!sums) return `no ${split} sums`;
  const basic = loss(sums.lossSum, `${split} loss sum`) ?? count(sums.count, `${split} count`) ?? finite(sums.correct, `${split} correct`);
  if (basic) return basic;
  if (total !== undefined && sums.count > total) return `${split} count ${sums.count} exceeds the ${total} samples`;
  if (sums.correct < 0 || sums.correct > sums.count) return `${split} correct ${sums.correct} is outside [0, ${sums.count}]`;
  return null;
}

function thresholdsProblem(reply: Messages['thresholds'], asked: number[]): Problem {
  if (reply.layers.length !== asked.length || reply.layers.some((layer, i) => layer !== asked[i]))
    return `thresholds for layers [${reply.layers.slice(0, 8)}], asked for [${asked.slice(0, 8)}]`;
  if (reply.values.length !== asked.length) return `${reply.values.length} thresholds for ${asked.length} layers`;
  return thresholdValuesProblem(reply.values);
}

function stateUploadProblem(upload: Messages['stateUpload'], layers: LayerInfo[] | null): Problem {
  const basic = count(upload.step, 'step') ?? digest(upload.stateDigest, 'state digest');
  if (basic || !layers) return basic;
  const checked = checkState(upload.state, layers);
  if (typeof checked !== 'string') return checked.problem;
  return checked === upload.stateDigest ? null : `state digest ${upload.stateDigest} does not match the uploaded bytes (${checked})`;
}

/**
 * Checks that `bytes` holds every tensor of the model (weights, 0/1 masks of the prunable
 * layers, Adam moments, step count) and returns its digest as Replica.stateDigest computes it,
 * or an object with the problem.
 */
export function checkState(bytes: Uint8Array, layers: LayerInfo[]): string | { problem: string } {
  try {
    return stateDigest(decodeState(bytes, layers));
  } catch (error) {
    return { problem: (error as Error).message };
  }
}

// ─── coordinator → worker ───────────────────────────────────────────────────────────────────

/** A command from the coordinator, checked before the worker acts on it. */
export function commandProblem(envelope: Envelope, view: WorkerView): Problem {
  const generation = (message: { generation: number }) =>
    message.generation === view.generation
      ? null
      : `command for ring generation ${message.generation}, this worker is in generation ${view.generation}`;
  const modelled = view.prunableLayers !== null ? null : `'${envelope.kind}' before a welcome`;
  switch (envelope.kind) {
    case 'welcome': {
      const welcome = envelope.message as Messages['welcome'];
      return (
        text(welcome.runId, SHORT_TEXT, 'run id') ??
        text(welcome.configJson, MAX_CONFIG_JSON, 'config') ??
        digest(welcome.configHash, 'config hash')
      );
    }
    case 'formRing':
      return modelled ?? formRingProblem(envelope.message as Messages['formRing'], view);
    case 'loadState': {
      const load = envelope.message as Messages['loadState'];
      if (load.initialize && load.state.length > 0) return 'load state asks to initialise and carries a state';
      return modelled ?? generation(load) ?? count(load.step, 'step');
    }
    case 'runSteps': {
      const run = envelope.message as Messages['runSteps'];
      const range = count(run.fromStep, 'first step') ?? count(run.toStep, 'end step');
      if (range) return range;
      if (run.toStep <= run.fromStep) return `empty or reversed step range [${run.fromStep}, ${run.toStep})`;
      if (run.fromStep !== view.step) return `asked to train from step ${run.fromStep}, this replica is at step ${view.step}`;
      return modelled ?? generation(run);
    }
    case 'evaluate':
    case 'uploadState':
      return modelled ?? generation(envelope.message as { generation: number });
    case 'computeThresholds': {
      const compute = envelope.message as Messages['computeThresholds'];
      if (modelled) return modelled;
      if (!(compute.p > 0 && compute.p < 1)) return `pruning fraction ${compute.p} is outside (0, 1)`;
      const layers = view.prunableLayers as number;
      if (new Set(compute.layers).size !== compute.layers.length || compute.layers.some((k) => k >= layers))
        return `layer indices must be distinct and below ${layers}`;
      return generation(compute);
    }
    case 'prune': {
      const prune = envelope.message as Messages['prune'];
      if (modelled) return modelled;
      if (prune.thresholds.length !== view.prunableLayers)
        return `${prune.thresholds.length} thresholds for ${view.prunableLayers} prunable layers`;
      return thresholdValuesProblem(prune.thresholds) ?? generation(prune);
    }
    case 'shutdown':
      return text((envelope.message as Messages['shutdown']).reason, LONG_TEXT, 'reason');
    case 'heartbeat':
      return heartbeatProblem(envelope.message as Messages['heartbeat']);
    case 'error':
      return errorProblem(envelope.message as Messages['error']);
    default:
      return `the coordinator sent '${envelope.kind}', which only workers send`;
  }
}

function formRingProblem(form: Messages['formRing'], view: WorkerView): Problem {
  const { generation, rank, members } = form;
  if (!Number.isSafeInteger(generation) || generation <= view.generation)
    return `ring generation ${generation} is not newer than ${view.generation}`;
  if (members.length < 1 || members.length > MAX_MEMBERS) return `a ring of ${members.length} members`;
  if (rank >= members.length) return `rank ${rank} is outside a ring of ${members.length}`;
  const ids = new Set<string>();
  for (const member of members) {
    const problem = peerProblem(member);
    if (problem) return problem;
    if (ids.has(member.workerId)) return `worker ${member.workerId} appears twice in the ring`;
    ids.add(member.workerId);
  }
  if (members[rank].workerId !== view.workerId) return `rank ${rank} belongs to ${members[rank].workerId}, not this worker`;
  return null;
}

function peerProblem(peer: Peer): Problem {
  return joinProblem({ workerId: peer.workerId, ringHost: peer.host, ringPort: peer.port });
}

/** A WebSocket close reason must fit a control frame (123 bytes of UTF-8): cut at a character boundary. */
export function closeReason(reason: string): string {
  let cut = reason.slice(0, 123);
  while (Buffer.byteLength(cut) > 123) cut = cut.slice(0, -1);
  return cut;
}

// ─── small checks ───────────────────────────────────────────────────────────────────────────

/** Thresholds are quantiles of |w|: finite and non-negative (NaN would prune a whole layer). */
function thresholdValuesProblem(values: number[]): Problem {
  const bad = values.findIndex((t) => !(Number.isFinite(t) && t >= 0));
  return bad < 0 ? null : `threshold ${values[bad]} of layer ${bad} is not a finite number ≥ 0`;
}

function timesProblem(times: StepTimes | null): Problem {
  if (!times) return 'no step times';
  if (!Number.isSafeInteger(times.steps) || times.steps < 0) return `step count ${times.steps}`;
  for (const [name, ms] of [
    ['compute', times.computeMs],
    ['all-reduce', times.allreduceMs],
    ['update', times.updateMs],
    ['wait', times.waitMs],
  ] as const) {
    if (!(Number.isFinite(ms) && ms >= 0)) return `${name} time ${ms} ms`;
  }
  return null;
}

function errorProblem(error: Messages['error']): Problem {
  return text(error.code, SHORT_TEXT, 'error code') ?? text(error.message, LONG_TEXT, 'error message');
}

/** A non-negative integer that a double holds exactly. */
function count(value: number, what: string): Problem {
  return Number.isSafeInteger(value) && value >= 0 ? null : `${what} ${value} is not a count`;
}

function duration(value: number, what: string): Problem {
  return Number.isFinite(value) && value >= 0 ? null : `${what} ${value} is not a duration`;
}

function finite(value: number, what: string): Problem {
  return Number.isFinite(value) ? null : `${what} ${value} is not finite`;
}

/** Cross-entropy sums are ≥ 0; NaN or +Infinity is what an honestly diverged model reports. */
function loss(value: number, what: string): Problem {
  return value >= 0 || Number.isNaN(value) ? null : `${what} ${value} is negative`;
}

function digest(value: string, what: string): Problem {
  return DIGEST.test(value) ? null : `${what} '${value.slice(0, 40)}' is not a digest`;
}

function text(value: string, maxLength: number, what: string): Problem {
  return value.length <= maxLength ? null : `${what} is longer than ${maxLength} characters`;
}

function size(layer: LayerInfo): number {
  return layer.shape.reduce((a, b) => a * b, 1);
}
