import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import type { RoundMetrics } from '../src/storage/run-dir.ts';
import type { RunEvent } from '../src/observe/events.ts';
import { captureLog, compareStates, latestState, smallConfig, tempRunDir, train } from './helpers/runs.ts';
import { exitOf, freePort, lineCount, spawnOccam, waitFor } from './helpers/processes.ts';
import { readMetrics, readSummary } from '../src/storage/run-dir.ts';
import { readFailureLog } from '../src/storage/failure-log.ts';

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
    ['kill -9 between gradient buckets, one bucket of the step applied', 'kill@allreduce step=20', 1, { bucketBytes: 4 }],
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

describe('a long step is a slow worker, not a lost one', () => {
  // peerTimeoutMs 3 s; the blocked worker's training thread is stuck for twice that in one call.
  const slow = (workers: number) => config({ workers, rounds: 2, peerTimeoutMs: 3000, heartbeatMs: 500 });
  for (const workers of [1, 2]) {
    it(`N = ${workers}: a step that blocks the training thread for 2 × peerTimeoutMs costs no restart`, async () => {
      const lines: string[] = [];
      const { summary, metrics } = await train(slow(workers), {
        workerEnv: (i): Record<string, string> => (i === workers - 1 ? { OCCAM_FAULTS: 'block:6000@allreduce step=5' } : {}),
        log: captureLog(lines),
      });
      expect(summary.restarts).toBe(0);
      expectCompleteHistory(metrics, 2);
      expect(lines.join('\n')).toMatch(/worker slow: one step has kept it busy past peerTimeoutMs/);
      expect(lines.join('\n')).not.toMatch(/declaring it lost/);
    });
  }
});

describe('a straggler', () => {
  it('a worker slowed on purpose at every step is named: a log line, and the event /metrics and the terminal show', async () => {
    const lines: string[] = [];
    const events: RunEvent[] = [];
    await train(config({ workers: 2, rounds: 2, checkpointEverySteps: 5 }), {
      workerEnv: (i): Record<string, string> => (i === 1 ? { OCCAM_FAULTS: 'slow:40@compute' } : {}),
      log: captureLog(lines),
      onEvent: (event) => events.push(event),
    });
    expect(lines.join('\n')).toMatch(/"worker":"local-1".*straggler: this worker is persistently slower than the others/);
    const named = events.filter((e) => e.type === 'straggler' && e.slow);
    expect(named.map((e) => (e as { workerId: string }).workerId)).toEqual(['local-1']);
  });
});

describe('a slow link', () => {
  it('rank 0 with a 0.5 Mbit/s uplink takes longer than peerTimeoutMs over each commit upload, and is not declared lost', async () => {
    // ~330 kB of state: ~5.3 s at 0.5 Mbit/s, against a 4 s peerTimeoutMs; control heartbeats wait behind it.
    // (At 2 s, a loaded 2-core CI machine stalling a process for 2 s read as a loss: the margins are for that.)
    const lines: string[] = [];
    const { summary, metrics } = await train(config({ workers: 2, rounds: 2, peerTimeoutMs: 4000, heartbeatMs: 500 }), {
      workerEnv: (i): Record<string, string> => (i === 0 ? { OCCAM_PACE_KBPS: '500' } : {}),
      log: captureLog(lines),
    });
    expect(summary.restarts).toBe(0);
    expectCompleteHistory(metrics, 2);
    expect(lines.join('\n')).not.toMatch(/declaring it lost/);
  });
});

describe('a ring-only partition (every worker still reaches the coordinator)', () => {
  const cases: [string, number, string, RegExp][] = [
    // local-2 cannot reach local-1's ring port: the ring of three never links.
    ['cut before the ring forms', 2, 'local-1', /ring link local-1 \(127\.0\.0\.1:\d+\) → local-2 \(127\.0\.0\.1:\d+\) failed/],
    // local-0's frames to local-1 vanish mid-run (~7 steps in): local-1 waits, and local-0's byte count shows they were sent.
    [
      'cut mid-run',
      0,
      'local-1 after=1000000',
      /ring link local-0 \(127\.0\.0\.1:\d+\) → local-1 \(127\.0\.0\.1:\d+\) failed \(\d+ bytes sent never arrived/,
    ],
  ];
  for (const [name, victim, cut, named] of cases) {
    it(`${name}: the broken pair is named and the run finishes without one of them`, async () => {
      const lines: string[] = [];
      const { summary, metrics, runDir } = await train(config({ peerTimeoutMs: 3000 }), {
        workerEnv: (i): Record<string, string> => (i === victim ? { OCCAM_CUT_LINK: cut } : {}),
        log: captureLog(lines),
      });
      expect(summary.restarts).toBeGreaterThanOrEqual(1);
      expectCompleteHistory(metrics);
      expect(Math.min(...metrics.map((m) => m.workers))).toBe(2);
      expect(lines.join('\n')).toMatch(named);
      expect(lines.join('\n')).toMatch(/worker excluded from new rings/);
      // As they happened, in the run directory: the exclusion, and the re-formation it cost.
      const events = readFailureLog(runDir);
      expect(events.filter((e) => e.type === 'excluded').length).toBeGreaterThanOrEqual(1);
      expect(summary.failures.exclusions).toBe(events.filter((e) => e.type === 'excluded').length);
      expect(summary.restarts).toBe(events.filter((e) => e.type === 'restart').length);
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
    // The kill -9 left no trace of its own; the history counts it from the second start and the gap before it.
    const summary = readSummary(runDir);
    expect(summary?.failures).toMatchObject({ coordinatorRestarts: 1 });
    expect(summary?.failures.outageMs).toBeGreaterThan(0);
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
