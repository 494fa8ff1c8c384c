// The run directory a user reads and plots: config.json, metrics.jsonl (one line per round),
// checkpoints/, model/ (the best round's weights and masks, safetensors + JSON), summary.json.
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configHash, type OccamConfig } from '../config.ts';
import { decodeSafetensors, encodeSafetensors } from './safetensors.ts';
import { isOptimizerTensor } from './state-format.ts';

/** One line of metrics.jsonl: everything measured in one round. */
export interface RoundMetrics {
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
  restarts: number;
}

export class RunDir {
  constructor(readonly path: string) {}

  get checkpoints(): string {
    return join(this.path, 'checkpoints');
  }

  get metricsPath(): string {
    return join(this.path, 'metrics.jsonl');
  }

  /** Creates the folder and config.json; an existing run must have the same config. */
  init(config: OccamConfig): void {
    mkdirSync(this.path, { recursive: true });
    const path = join(this.path, 'config.json');
    if (existsSync(path)) {
      const existing = readRunConfig(this.path);
      if (configHash(existing) !== configHash(config)) {
        const differing = (Object.keys(config) as (keyof OccamConfig)[]).filter((k) => existing[k] !== config[k]);
        throw new Error(`${path} holds a different configuration (differs in: ${differing.join(', ')}); use a new run directory`);
      }
    }
    writeAtomically(path, `${JSON.stringify(config, null, 2)}\n`);
  }

  appendMetrics(metrics: RoundMetrics): void {
    appendFileSync(this.metricsPath, `${JSON.stringify(metrics)}\n`);
  }

  /** Rewrites metrics.jsonl from a checkpoint's history (after a resume, rounds after it are redone). */
  rewriteMetrics(history: RoundMetrics[]): void {
    writeAtomically(this.metricsPath, history.map((m) => `${JSON.stringify(m)}\n`).join(''));
  }

  /** Writes model/ from replica state bytes: weights and masks only (no optimizer state). */
  exportModel(state: Uint8Array, config: OccamConfig, best: BestRound): void {
    const dir = join(this.path, 'model');
    mkdirSync(dir, { recursive: true });
    const { tensors } = decodeSafetensors(state);
    const model = tensors.filter((t) => !isOptimizerTensor(t.name));
    writeAtomically(join(dir, 'model.safetensors'), encodeSafetensors(model, { format: 'occam-model', round: String(best.round) }));
    const manifest = { format: 'occam-model', config, best, tensors: model.map((t) => ({ name: t.name, shape: t.shape })) };
    writeAtomically(join(dir, 'model.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  }

  writeSummary(summary: RunSummary): void {
    writeAtomically(join(this.path, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  }
}

/** Reads a run's config.json. */
export function readRunConfig(runDir: string): OccamConfig {
  const path = join(runDir, 'config.json');
  if (!existsSync(path)) throw new Error(`${runDir} is not a run directory (no config.json)`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as OccamConfig;
  } catch {
    throw new Error(`${path} is not valid JSON`);
  }
}

/** Reads metrics.jsonl; a truncated last line (a crash mid-write) is skipped. */
export function readMetrics(runDir: string): RoundMetrics[] {
  const path = join(runDir, 'metrics.jsonl');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as RoundMetrics];
      } catch {
        return [];
      }
    });
}

function writeAtomically(path: string, data: string | Uint8Array): void {
  const temporary = `${path}.tmp-${process.pid}`;
  writeFileSync(temporary, data);
  renameSync(temporary, path);
}
