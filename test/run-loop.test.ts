// The run loop on in-process replicas (LocalGroup): round sequencing, resync of a corrupted
// replica, resume from a commit, a member lost mid-segment, and a diverged loss — the logic the
// process tests cover end to end, here in milliseconds.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalGroup, LocalGroupOptions } from '../src/coordinator/local-group.ts';
import type { ReplicaGroup } from '../src/coordinator/replica-group.ts';
import { RunStopped } from '../src/coordinator/run-loop.ts';
import type { RunEvent } from '../src/observe/events.ts';
import { readMetrics, type RoundMetrics } from '../src/storage/run-dir.ts';
import { selectBackend } from '../src/training/engine.ts';
import type { MemberHooks } from '../src/training/member.ts';
import type { Replica } from '../src/training/replica.ts';
import { faultHooks } from '../src/worker/faults.ts';
import { readFailureLog } from '../src/storage/failure-log.ts';
import { type LocalRun, localGroup, loopFor, runLocal as runLocalWith } from './helpers/local-runs.ts';
import { smallConfig, tempRunDir } from './helpers/runs.ts';

const CONFIG = smallConfig({ units: 16, trainLimit: 500, batchSize: 64, evalLimit: 100, rounds: 3 });

beforeAll(async () => {
  await selectBackend('cpu');
});

function group(workers: number, options: LocalGroupOptions & { hooks?: (rank: number) => MemberHooks } = {}, config = CONFIG): LocalGroup {
  return localGroup(config, workers, options);
}

function runLocal(form: (generation: number) => ReplicaGroup, config = CONFIG, runDir?: string): Promise<LocalRun> {
  return runLocalWith(form, config, runDir);
}

function expectSameLosses(a: RoundMetrics[], b: RoundMetrics[], relative: number): void {
  expect(a.length).toBe(b.length);
  a.forEach((m, i) => {
    for (const key of ['trainLoss', 'holdbackLoss', 'testLoss'] as const) {
      expect(Math.abs((m[key] as number) - (b[i][key] as number)) / Math.abs(b[i][key] as number), `${key} of round ${i}`).toBeLessThan(
        relative,
      );
    }
    expect(m.weightsKept, `weights kept in round ${i}`).toBe(b[i].weightsKept);
  });
}

describe('the run loop on in-process replicas', () => {
  let single: LocalRun;
  let pair: LocalRun;

  beforeAll(async () => {
    single = await runLocal(() => group(1));
    pair = await runLocal(() => group(2));
  });

  it('runs every round once, in order, pruning as the schedule says, and 3 replicas match 1', async () => {
    expect(single.summary.rounds).toBe(3);
    expect(single.metrics.map((m) => m.round)).toEqual([1, 2, 3]);
    const steps = single.metrics.map((m) => m.step);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(single.metrics[2].weightsKept).toBeLessThan(1);
    const rounds = single.events.filter((e) => e.type === 'round').map((e) => (e as { metrics: RoundMetrics }).metrics.round);
    expect(rounds).toEqual([1, 2, 3]);
    const three = await runLocal(() => group(3, { chunkFloats: 512 }));
    expectSameLosses(pair.metrics, single.metrics, 1e-5);
    expectSameLosses(three.metrics, single.metrics, 1e-5);
    expect(three.summary.resyncs).toBe(0);
    expect(three.metrics.every((m) => m.workers === 3)).toBe(true);
  });

  it('resynchronises a replica whose mask was corrupted from the majority, and ends where an undisturbed run does', async () => {
    const clean = await runLocal(() => group(3));
    const corrupted = await runLocal(() =>
      group(3, { hooks: (rank) => faultHooks(rank === 1 ? 'corrupt-mask@prune round=0' : undefined) }),
    );
    expect(corrupted.summary.resyncs).toBe(1);
    expect(corrupted.events.filter((e) => e.type === 'resync').map((e) => (e as { workerId: string }).workerId)).toEqual(['local-1']);
    expect(corrupted.digest).toBe(clean.digest);
  });

  it('with no majority (1 against 1) settles for neither: both reload the last commit, and the run ends where an undisturbed one does', async () => {
    // One set of hooks for every ring, as a worker process keeps its own: the fault fires once.
    const hooks = [faultHooks(undefined), faultHooks('corrupt-mask@prune round=0')];
    const corrupted = await runLocal(() => group(2, { hooks: (rank) => hooks[rank] }));
    expect(corrupted.summary.resyncs).toBe(0);
    expect(corrupted.summary.restarts).toBe(1);
    expect(corrupted.digest).toBe(pair.digest);
  });

  it('resumes from a commit bit for bit', async () => {
    const runDir = tempRunDir('resumed');
    const events: RunEvent[] = [];
    const first = loopFor(runDir, CONFIG, events);
    first.open();
    events.push = (event: RunEvent) => {
      if (event.type === 'round' && event.metrics.round === 1) first.stopRequested = true;
      return Array.prototype.push.call(events, event);
    };
    await expect(first.run(group(2))).rejects.toBeInstanceOf(RunStopped);
    expect(readMetrics(runDir)).toHaveLength(1);
    const resumed = await runLocal(() => group(2), CONFIG, runDir);
    expect(resumed.metrics).toHaveLength(3);
    expect(resumed.digest).toBe(pair.digest);
    resumed.metrics.forEach((m, i) => {
      const { roundMs, elapsedMs, stepMs, ...figures } = m;
      const { roundMs: _r, elapsedMs: _e, stepMs: _s, ...expected } = pair.metrics[i];
      expect(figures, `round ${i}`).toEqual(expected);
    });
  });

  it('re-forms without a member lost mid-segment and finishes every round on the survivor', async () => {
    let first: LocalGroup | null = null;
    const run = await runLocal((generation) => {
      if (generation > 0) return (first as LocalGroup).regroup([0]);
      first = group(2, {
        hooks: (rank) => (rank === 1 ? { allreduce: ({ step }) => step === 12 && first?.lose(1, 'killed mid-all-reduce') } : {}),
      });
      return first;
    });
    expect(run.summary.restarts).toBe(1);
    expect(run.events.filter((e) => e.type === 'resync')).toHaveLength(0);
    expect(run.metrics.map((m) => m.round)).toEqual([1, 2, 3]);
    expect(run.metrics[run.metrics.length - 1].workers).toBe(1);
    expectSameLosses(run.metrics, single.metrics, 1e-5);
  });

  it('refuses a commit whose upload is not the state every replica reported, and goes on without the uploader', async () => {
    let first: LocalGroup | null = null;
    const run = await runLocal((generation) => {
      if (generation > 0) return (first as LocalGroup).regroup([1, 2]);
      first = group(3, { hooks: (rank) => faultHooks(rank === 0 ? 'corrupt-mask@upload step=0' : undefined) });
      return first;
    });
    expect(run.summary.restarts).toBe(1);
    expect(run.metrics.map((m) => m.round)).toEqual([1, 2, 3]);
    expect(run.metrics[run.metrics.length - 1].workers).toBe(2);
    const restart = readFailureLog(run.runDir).find((e) => e.type === 'restart');
    expect(restart).toMatchObject({
      reason: expect.stringMatching(/rank 0 uploaded a state .* other than the one every replica reported/),
    });
  });

  it('excludes a replica that has to be resynchronised again and again, naming it', async () => {
    // Rank 1 drifts on every step (a faulty GPU, or a member sending wrong values): 3 resyncs and it is out.
    const drift = { allreduce: (_: unknown, replica: Replica) => void replica.adamSteps++ };
    let first: LocalGroup | null = null;
    const run = await runLocal((generation) => {
      if (generation > 0) return (first as LocalGroup).regroup([0, 2]);
      first = group(3, { hooks: (rank) => (rank === 1 ? drift : {}) });
      return first;
    });
    const events = readFailureLog(run.runDir);
    expect(events.filter((e) => e.type === 'resync').map((e) => (e as { worker: string }).worker)).toEqual([
      'local-1',
      'local-1',
      'local-1',
    ]);
    expect(events.find((e) => e.type === 'restart')).toMatchObject({
      reason: 'worker local-1 excluded: its replica had to be resynchronised 3 times',
    });
    expect(run.metrics.map((m) => m.round)).toEqual([1, 2, 3]);
    expect(run.metrics[run.metrics.length - 1].workers).toBe(2);
  });

  it('gives up when the same failure recurs from one commit', async () => {
    const failing = () => {
      const g: LocalGroup = group(2, { hooks: (rank) => (rank === 1 ? { allreduce: () => g.lose(1, 'crashes on this state') } : {}) });
      return g;
    };
    await expect(runLocal(failing)).rejects.toThrow(
      /cannot get past step 0: 9 failures since the last commit, the last: worker local-1 lost: crashes on this state/,
    );
  });

  it('stops, saying why, when replicas on different hardware keep disagreeing', async () => {
    // Rank 1 stands for another GPU model: its state ends every segment different from the others'.
    const drift = { allreduce: (_: unknown, replica: Replica) => void replica.adamSteps++ };
    const hardware = (rank: number) => (rank === 1 ? 'webgpu on GPU B' : 'webgpu on GPU A');
    const mixed = () => group(3, { hardware, hooks: (rank) => (rank === 1 ? drift : {}) });
    await expect(runLocal(mixed)).rejects.toThrow(
      /replicas on different hardware diverge after training: local-1 \(webgpu on GPU B\) against local-0 \(webgpu on GPU A\).*Run every worker on the same GPU model/,
    );
  });

  it('stops early after `patience` rounds without a lower holdback loss, and says why', async () => {
    // At this (high) learning rate the holdback loss of this run bottoms out in round 5.
    const config = { ...CONFIG, learningRate: 0.05, rounds: 8, patience: 2 };
    const run = await runLocal(() => group(1, {}, config), config);
    const best = run.summary.best as NonNullable<typeof run.summary.best>;
    expect(run.summary.rounds).toBeLessThan(8);
    expect(run.summary.rounds - best.round).toBe(2);
    expect(run.metrics.slice(best.round).every((m) => (m.holdbackLoss as number) >= best.holdbackLoss)).toBe(true);
    expect(run.summary.stopReason).toBe(`stopped early: no lower holdback loss in the 2 rounds after round ${best.round} (patience 2)`);
  });

  it('stops a diverged run with a message that names the round and the remedy', async () => {
    const config = { ...CONFIG, learningRate: 1e30 };
    const runDir = tempRunDir('diverged');
    await expect(runLocal(() => group(2, {}, config), config, runDir)).rejects.toThrow(
      /training diverged: the training loss of round 1 is (NaN|Infinity); lower learningRate/,
    );
    expect(JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8')).learningRate).toBe(1e30);
  });
});
