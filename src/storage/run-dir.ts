// The run directory a user reads and plots: config.json, metrics.jsonl (one line per round),
// events.jsonl (the failure history: failure-log.ts), checkpoints/, model/ (the best round's
// model: model-dir.ts), tensorboard/, summary.json.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXTENSIBLE_KEYS, type OccamConfig, resolveConfig, runHash } from '../config.ts';
import { writeAtomically } from './atomic-file.ts';
import { readJsonLines } from './json-lines.ts';
import { FailureLog, failureCounts, readFailureLog, type FailureCounts, type FailureRecord } from './failure-log.ts';
import { RunDirError } from './errors.ts';
import { type ModelSizes, readModelSizes, writeModel } from './model-dir.ts';
import { EventFileWriter, type ScalarPoint } from './tensorboard.ts';

/** One line of metrics.jsonl: everything measured in one round. */
export interface RoundMetrics {
  /** Counted from 1, as everywhere a user reads rounds (terminal, report, logs, files). */
  round: number;
  /** Global step at the end of the round. */
  step: number;
  trainLoss: number | null;
  holdbackLoss: number | null;
  holdbackAccuracy: number | null;
  testLoss: number | null;
  testAccuracy: number | null;
  /** Fraction of prunable weights kept while training this round. */
  weightsKept: number;
  activeParams: number;
  /** Fraction of surviving weights pruned after this round. */
  p: number;
  samples: number;
  /** Active weights × samples, summed over the rounds so far. */
  compute: number;
  roundMs: number;
  elapsedMs: number;
  /** Mean per step over workers: forward/backward, all-reduce transfer, waiting for peers, Adam. */
  stepMs: { compute: number; allreduce: number; wait: number; update: number };
  bytesPerStep: number;
  /** Token models: tokens trained per second by the cluster in this round's steps (null otherwise). */
  tokensPerSecond: number | null;
  /** Model FLOPs utilisation of those steps against the workers' measured matrix-product rates (null when unmeasured). */
  mfu: number | null;
  workers: number;
  resyncs: number;
  restarts: number;
}

export interface BestRound {
  round: number;
  holdbackLoss: number;
  testLoss: number | null;
  testAccuracy: number | null;
  weightsKept: number;
  activeParams: number;
  compute: number;
}

export interface RunSummary {
  runId: string;
  runDir: string;
  strategy: OccamConfig['strategy'];
  rounds: number;
  best: BestRound | null;
  final: RoundMetrics | null;
  totalCompute: number;
  wallMs: number;
  resyncs: number;
  /** Ring re-formations over the whole run (every coordinator's): failures.restarts. */
  restarts: number;
  /** The failure history's counts (events.jsonl). */
  failures: FailureCounts;
  /** Bytes of the best model: dense float32 weights against model/model.sparse.safetensors (null before any export). */
  modelSizes: ModelSizes | null;
  /** Why the run ended before its last round (early stopping); null when it ran them all. */
  stopReason: string | null;
  /** Why the run failed; null for a run that finished. */
  failure: string | null;
}

export class RunDir {
  private readonly tensorboard: EventFileWriter;
  /** Tokens per training sample, where a sample is a window of text (the gpt): for tokens/s. */

  private readonly failureLog: FailureLog;

  constructor(readonly path: string) {
    this.tensorboard = new EventFileWriter(join(path, 'tensorboard'));
    this.failureLog = new FailureLog(path);
  }

  /** Appends one event to the failure history, as it happens. */
  recordFailure(record: FailureRecord): void {
    this.failureLog.append(record);
  }

  /** The failure history's counts so far. */
  failureCounts(): FailureCounts {
    return failureCounts(readFailureLog(this.path));
  }

  get checkpoints(): string {
    return join(this.path, 'checkpoints');
  }

  get metricsPath(): string {
    return join(this.path, 'metrics.jsonl');
  }

  /**
   * Creates the folder and config.json. An existing run must have the same config, except how
   * long it runs (EXTENSIBLE_KEYS: a finished run can be given more rounds).
   */
  init(config: OccamConfig): void {
    mkdirSync(this.path, { recursive: true });
    this.checkSameRun(config);
    writeAtomically(join(this.path, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  }

  /** Throws RunDirError when `config` is not this run's (a resumed run may change only EXTENSIBLE_KEYS). */
  checkSameRun(config: OccamConfig): void {
    const path = join(this.path, 'config.json');
    if (existsSync(path)) {
      const existing = resolveConfig(readRunConfig(this.path));
      const differing = (Object.keys(config) as (keyof OccamConfig)[]).filter((k) => existing[k] !== config[k]);
      if (runHash(existing) !== runHash(config)) {
        const fixed = differing.filter((k) => !(EXTENSIBLE_KEYS as readonly string[]).includes(k));
        throw new RunDirError(`${path} holds a different configuration (differs in: ${fixed.join(', ')}); use a new run directory`);
      }
      if (existing.rounds !== config.rounds && (config.strategy === 'posttrain' || config.strategy === 'gradual'))
        throw new RunDirError(
          `a ${config.strategy} run plans its pruning from rounds, so its rounds cannot change (${existing.rounds} → ${config.rounds})`,
        );
    }
    writeAtomically(path, `${JSON.stringify(config, null, 2)}\n`);
  }

  /** One round's line in metrics.jsonl and its point in the TensorBoard log. */
  appendMetrics(metrics: RoundMetrics): void {
    appendFileSync(this.metricsPath, `${JSON.stringify(metrics)}\n`);
    this.tensorboard.append(roundScalars(metrics, Date.now()));
  }

  /** Rewrites metrics.jsonl and the TensorBoard log from a checkpoint's history (after a resume, rounds after it are redone). */
  rewriteMetrics(history: RoundMetrics[]): void {
    writeAtomically(this.metricsPath, history.map((m) => `${JSON.stringify(m)}\n`).join(''));
    // The history keeps times relative to the run: place them so the last round ends now.
    const lastMs = history[history.length - 1]?.elapsedMs ?? 0;
    this.tensorboard.rewrite(history.map((m) => roundScalars(m, Date.now() - (lastMs - m.elapsedMs))));
  }

  get modelDir(): string {
    return join(this.path, 'model');
  }

  /** Writes model/ from replica state bytes: weights and masks only (no optimizer state). */
  exportModel(state: Uint8Array, config: OccamConfig, best: BestRound): void {
    writeModel(this.modelDir, state, config, best);
  }

  /** The exported model's sizes, for the summary. */
  modelSizes(): ModelSizes | null {
    return readModelSizes(this.modelDir);
  }

  /** summary.json of a run that failed: the rounds it finished and why it stopped. */
  writeFailure(runId: string, config: OccamConfig, reason: string): void {
    const metrics = readMetrics(this.path);
    const final = metrics[metrics.length - 1] ?? null;
    const failures = this.failureCounts();
    this.writeSummary({
      runId,
      runDir: this.path,
      strategy: config.strategy,
      rounds: metrics.length,
      best: null,
      final,
      totalCompute: final?.compute ?? 0,
      wallMs: final?.elapsedMs ?? 0,
      resyncs: final?.resyncs ?? 0,
      restarts: failures.restarts,
      failures,
      modelSizes: this.modelSizes(),
      stopReason: null,
      failure: reason,
    });
  }

  writeSummary(summary: RunSummary): void {
    writeAtomically(join(this.path, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  }
}

/** The TensorBoard scalars of one round, by tag. */
export function roundScalars(m: RoundMetrics, wallTimeMs: number): ScalarPoint {
  const samplesPerSecond = m.roundMs > 0 ? m.samples / (m.roundMs / 1000) : null;
  return {
    step: m.step,
    wallTimeMs,
    scalars: {
      'loss/train': m.trainLoss,
      'loss/holdback': m.holdbackLoss,
      'loss/test': m.testLoss,
      'accuracy/holdback': m.holdbackAccuracy,
      'accuracy/test': m.testAccuracy,
      'pruning/weights_kept': m.weightsKept,
      'pruning/active_params': m.activeParams,
      'pruning/p': m.p,
      'compute/active_weights_x_samples': m.compute,
      'step_ms/compute': m.stepMs.compute,
      'step_ms/allreduce': m.stepMs.allreduce,
      'step_ms/wait': m.stepMs.wait,
      'step_ms/update': m.stepMs.update,
      'network/bytes_per_step': m.bytesPerStep,
      'throughput/samples_per_s': samplesPerSecond,
      'throughput/tokens_per_s': m.tokensPerSecond ?? null, // absent from rounds an older Occam wrote
      'throughput/mfu': m.mfu ?? null,
      'run/round': m.round,
      'run/workers': m.workers,
      'run/resyncs': m.resyncs,
      'run/restarts': m.restarts,
    },
  };
}

/** Reads a run's config.json. */
export function readRunConfig(runDir: string): OccamConfig {
  const path = join(runDir, 'config.json');
  if (!existsSync(path)) throw new RunDirError(`${runDir} is not a run directory (no config.json)`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as OccamConfig;
  } catch {
    throw new RunDirError(`${path} is not valid JSON`);
  }
}

/** Reads summary.json; null when the run has none (not finished) or it does not parse (a report of what there is beats none). */
export function readSummary(runDir: string): RunSummary | null {
  const path = join(runDir, 'summary.json');
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as RunSummary;
  } catch {
    return null;
  }
}

/** Reads metrics.jsonl; a truncated last line (a crash mid-write) is skipped. */
export function readMetrics(runDir: string): RoundMetrics[] {
  return readJsonLines<RoundMetrics>(join(runDir, 'metrics.jsonl'));
}
