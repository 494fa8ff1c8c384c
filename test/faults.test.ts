import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import type { RoundMetrics } from '../src/storage/run-dir.ts';
import { compareStates, latestState, smallConfig, tempRunDir, train } from './helpers/runs.ts';
import { exitOf, freePort, lineCount, spawnOccam, waitFor } from './helpers/processes.ts';
import { readMetrics } from '../src/storage/run-dir.ts';

// 4 rounds of 15 steps (1350 training samples, global batch 96).
const ROUNDS = 4;
// Timeouts long enough that a stall of a loaded 2-core CI machine is not taken for a lost worker.
const config = (overrides = {}) => smallConfig({ rounds: ROUNDS, workers: 3, peerTimeoutMs: 6000, heartbeatMs: 500, ...overrides });

/** Every round once, in order: no committed round lost or repeated. */
function expectCompleteHistory(metrics: RoundMetrics[], rounds = ROUNDS): void {
  expect(metrics.map((m) => m.round)).toEqual(Array.from({ length: rounds }, (_, i) => i + 1));
  for (const m of metrics) expect(m.resyncs, `round ${m.round}: replicas disagreed`).toBe(0);
  expect(metrics[rounds - 1].step).toBe(rounds * 15);
}

describe('losing workers', () => {
  const cases: [string, string, number, object][] = [
    ['kill -9 in the middle of an all-reduce', 'kill@allreduce step=20', 1, {}],
    ['kill -9 during threshold agreement', 'kill@thresholds round=1', 2, {}],
    ['kill -9 while it uploads a checkpoint', 'kill@upload step=10', 0, { checkpointEverySteps: 5 }],
    ['SIGSTOP: a worker that stops answering', 'stop@allreduce step=20', 2, {}],
  ];
  for (const [name, fault, victim, overrides] of cases) {
    it(`${name}: the ring re-forms and the run finishes with identical survivors`, async () => {
      const { summary, metrics, runDir } = await train(config(overrides), {
        workerEnv: (i): Record<string, string> => (i === victim ? { OCCAM_FAULTS: fault } : {}),
      });
      expect(summary.restarts).toBeGreaterThanOrEqual(1);
      expectCompleteHistory(metrics);
      expect(metrics[ROUNDS - 1].workers).toBe(2);
      const { progress } = latestState(runDir);
      expect(progress.history).toHaveLength(ROUNDS);
    });
  }
});

describe('coordinator restart and elastic membership (separate processes)', () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
  });

  async function cluster(runDir: string, cfg: object, workers: number) {
    const port = await freePort();
    const configPath = join(runDir, '..', 'config.json');
    writeFileSync(configPath, JSON.stringify(cfg));
    const startCoordinator = () => {
      const child = spawnOccam(
        ['coordinator', '--run-dir', runDir, '--config', configPath, '--host', '127.0.0.1', '--port', String(port)],
        join(runDir, '..', 'coordinator.log'),
      );
      children.push(child);
      return child;
    };
    const startWorker = (i: number) => {
      const child = spawnOccam(
        ['worker', '--coordinator', `ws://127.0.0.1:${port}`, '--worker-id', `w${i}`, '--ring-host', '127.0.0.1'],
        join(runDir, '..', `worker-${i}.log`),
      );
      children.push(child);
      return child;
    };
    const coordinator = startCoordinator();
    const started = Array.from({ length: workers }, (_, i) => startWorker(i));
    return { coordinator, workers: started, startCoordinator, startWorker };
  }

  it('kill -9 of the coordinator: workers reconnect to the restarted one, which resumes from its last commit', async () => {
    const cfg = config({ workers: 2 });
    const reference = await train(cfg);
    const runDir = tempRunDir('run');
    const metricsPath = join(runDir, 'metrics.jsonl');
    const { coordinator, startCoordinator } = await cluster(runDir, cfg, 2);
    await waitFor(() => lineCount(metricsPath) >= 2, 60000, 'two rounds');
    coordinator.kill('SIGKILL');
    await exitOf(coordinator);
    const restarted = startCoordinator();
    expect(await exitOf(restarted)).toBe(0);
    const metrics = readMetrics(runDir);
    expectCompleteHistory(metrics);
    // Same workers, same seeds: the resumed run ends bit-identical to the uninterrupted one.
    const diff = compareStates(latestState(reference.runDir).tensors, latestState(runDir).tensors);
    expect(diff.maxWeightDiff).toBe(0);
    expect(diff.maskDiffs).toBe(0);
    expect(metrics.map((m) => m.testLoss)).toEqual(reference.metrics.map((m) => m.testLoss));
  });

  it('a worker joining mid-run is admitted at the next boundary and receives the current state', async () => {
    // Wide enough that a round outlasts a worker's start-up on a busy 2-core machine.
    const rounds = 8;
    const cfg = config({ workers: 2, checkpointEverySteps: 5, units: 512, rounds });
    const runDir = tempRunDir('run');
    const metricsPath = join(runDir, 'metrics.jsonl');
    const { coordinator, startWorker } = await cluster(runDir, cfg, 2);
    await waitFor(() => lineCount(metricsPath) >= 1, 60000, 'the first round');
    startWorker(2);
    expect(await exitOf(coordinator)).toBe(0);
    const metrics = readMetrics(runDir);
    expectCompleteHistory(metrics, rounds);
    expect(metrics[0].workers).toBe(2);
    expect(metrics[rounds - 1].workers).toBe(3);
  });
});
