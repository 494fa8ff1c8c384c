import { readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointNames } from '../src/storage/checkpoint.ts';
import { readMetrics, type RoundMetrics } from '../src/storage/run-dir.ts';
import { exitOf, lineCount, spawnOccam, waitFor } from './helpers/processes.ts';
import { compareStates, latestState, smallConfig, tempRunDir, train } from './helpers/runs.ts';

const ROUNDS = 5;
const cfg = smallConfig({ rounds: ROUNDS, workers: 2, checkpointEverySteps: 5 });

/** The fields that must match exactly (all but wall-clock times and restart counts). */
const result = (m: RoundMetrics) => [
  m.round,
  m.step,
  m.trainLoss,
  m.holdbackLoss,
  m.testLoss,
  m.testAccuracy,
  m.weightsKept,
  m.p,
  m.compute,
];

async function killAfterRounds(runDir: string, rounds: number): Promise<void> {
  const configPath = join(runDir, '..', 'config.json');
  writeFileSync(configPath, JSON.stringify(cfg));
  const run = spawnOccam(['train', '--config', configPath, '--run-dir', runDir, '--quiet'], join(runDir, '..', 'train-1.log'));
  await waitFor(() => lineCount(join(runDir, 'metrics.jsonl')) >= rounds, 90000, `${rounds} rounds`);
  run.kill('SIGKILL');
  await exitOf(run);
}

async function resume(runDir: string): Promise<string> {
  const log = join(runDir, '..', 'train-2.log');
  const run = spawnOccam(['train', '--resume', runDir, '--quiet', '--pretty-logs'], log);
  expect(await exitOf(run), readFileSync(log, 'utf8')).toBe(0);
  return readFileSync(join(runDir, 'coordinator.log'), 'utf8');
}

describe('resume', () => {
  it('a run killed after round k and resumed matches the uninterrupted run bit for bit', async () => {
    const reference = await train(cfg);
    const runDir = tempRunDir('run');
    await killAfterRounds(runDir, 2);
    await resume(runDir);
    const metrics = readMetrics(runDir);
    expect(metrics.map(result)).toEqual(reference.metrics.map(result));
    const diff = compareStates(latestState(reference.runDir).tensors, latestState(runDir).tensors);
    expect(diff.maxWeightDiff).toBe(0);
    expect(diff.maskDiffs).toBe(0);
  });

  it('a corrupt latest checkpoint is skipped for the previous one, with a clear log line', async () => {
    const reference = await train(cfg);
    const runDir = tempRunDir('run');
    await killAfterRounds(runDir, 2);
    const names = checkpointNames(join(runDir, 'checkpoints'));
    const newest = join(runDir, 'checkpoints', names[names.length - 1]);
    truncateSync(join(newest, 'state.safetensors'), 100);
    const log = await resume(runDir);
    expect(log).toMatch(/checkpoint is corrupt; skipping it for the previous one/);
    expect(log).toMatch(/truncated/);
    expect(readdirSync(join(runDir, 'checkpoints')).some((n) => n.startsWith(`corrupt-${names[names.length - 1]}`))).toBe(true);
    expect(readMetrics(runDir).map(result)).toEqual(reference.metrics.map(result));
  });
});
