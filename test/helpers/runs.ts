// Helpers for tests that train real clusters: a quiet logger, a temp run directory, and readers
// for what a run leaves behind.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Logger } from '../../src/common/log.ts';
import { readLatestCheckpoint } from '../../src/storage/checkpoint.ts';
import { resolveConfig, type OccamConfig } from '../../src/config.ts';
import type { RunState } from '../../src/coordinator/run-state.ts';
import { trainLocally, type LocalRunOptions } from '../../src/coordinator/local-cluster.ts';
import { readMetrics, type RoundMetrics, type RunSummary } from '../../src/storage/run-dir.ts';
import type { Replica } from '../../src/training/replica.ts';
import { decodeSafetensors, type NamedTensor } from '../../src/storage/safetensors.ts';

export const quietLog = pino({ level: 'silent' });

/** A logger that keeps every warning and worse as a JSON line in `lines`. */
export function captureLog(lines: string[]): Logger {
  return pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
}

/** A small, fast MLP run on MNIST. */
export function smallConfig(overrides: Partial<OccamConfig> = {}): OccamConfig {
  return resolveConfig({ units: 32, trainLimit: 1500, rounds: 3, batchSize: 96, evalLimit: 500, backend: 'cpu', ...overrides });
}

/** A tiny char-level GPT on Moby Dick (1 layer, 2 heads, 16 wide, 16-token context), on cpu. */
export function smallGptConfig(overrides: Partial<OccamConfig> = {}): OccamConfig {
  return resolveConfig({
    model: 'gpt',
    dataset: 'moby-dick',
    layers: 1,
    heads: 2,
    width: 16,
    blockSize: 16,
    batchSize: 16,
    backend: 'cpu',
    ...overrides,
  });
}

export function tempRunDir(name: string): string {
  return join(mkdtempSync(join(tmpdir(), 'occam-test-')), name);
}

export async function train(
  config: OccamConfig,
  extra: Partial<LocalRunOptions> = {},
): Promise<{ summary: RunSummary; metrics: RoundMetrics[]; runDir: string }> {
  const runDir = extra.runDir ?? tempRunDir('run');
  const summary = await trainLocally({ config, runDir, runId: 'test', log: quietLog, ...extra });
  return { summary, metrics: readMetrics(runDir), runDir };
}

/** The newest checkpoint's tensors by name, and its progress. */
export function latestState(runDir: string): { tensors: Map<string, NamedTensor>; progress: RunState; step: number } {
  const checkpoint = readLatestCheckpoint<RunState>(join(runDir, 'checkpoints'), () => {});
  if (!checkpoint) throw new Error(`no checkpoint in ${runDir}`);
  const { tensors } = decodeSafetensors(checkpoint.state);
  return { tensors: new Map(tensors.map((t) => [t.name, t])), progress: checkpoint.manifest.progress, step: checkpoint.manifest.step };
}

/** Largest absolute difference between two sets of float tensors, and the count of differing mask entries. */
export function compareStates(
  a: Map<string, NamedTensor>,
  b: Map<string, NamedTensor>,
): { maxWeightDiff: number; maskDiffs: number; maskTotal: number } {
  let maxWeightDiff = 0;
  let maskDiffs = 0;
  let maskTotal = 0;
  for (const [name, ta] of a) {
    const tb = b.get(name);
    if (!tb) throw new Error(`tensor ${name} missing`);
    if (name.startsWith('adam.')) continue;
    for (let i = 0; i < ta.data.length; i++) {
      if (name.endsWith('.mask')) {
        maskTotal++;
        if (ta.data[i] !== tb.data[i]) maskDiffs++;
      } else maxWeightDiff = Math.max(maxWeightDiff, Math.abs(ta.data[i] - tb.data[i]));
    }
  }
  return { maxWeightDiff, maskDiffs, maskTotal };
}

/** Prunes every prunable layer of `replica` by fraction p, as one round's threshold agreement would. */
export async function prune(replica: Replica, p: number): Promise<void> {
  await replica.applyThresholds(await Promise.all(replica.prunableLayers.map((i) => replica.threshold(i, p))));
}

/** A copy of the replica's weights now (its own arrays keep changing as it trains). */
export async function weightsNow(replica: Replica): Promise<Float32Array[]> {
  return (await replica.hostState()).weights.map((w) => Float32Array.from(w));
}

/**
 * Per prunable layer of `replica`: how many positions are pruned, how many of those hold a
 * non-zero weight or Adam moment (must be none), and how many kept weights changed since `before`.
 */
export async function maskedState(
  replica: Replica,
  before: Float32Array[],
): Promise<{ layer: string; size: number; pruned: number; nonZeroPruned: number; moved: number }[]> {
  const state = await replica.hostState();
  return replica.prunableLayers.map((i) => {
    const mask = replica.masks[i] as Uint8Array;
    const { m, v } = state.moments[i];
    const weights = state.weights[i];
    let pruned = 0;
    let nonZeroPruned = 0;
    let moved = 0;
    for (let k = 0; k < mask.length; k++) {
      if (mask[k] === 0) {
        pruned++;
        if (weights[k] !== 0 || m[k] !== 0 || v[k] !== 0) nonZeroPruned++;
      } else if (weights[k] !== before[i][k]) moved++;
    }
    return { layer: replica.params[i].name, size: mask.length, pruned, nonZeroPruned, moved };
  });
}
