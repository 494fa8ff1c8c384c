import { describe, expect, it } from 'vitest';
import { compareStates, latestState, smallConfig, train } from './helpers/runs.ts';

// Tolerances for N workers vs 1 worker with the same global batch: the ring sums the shards'
// gradients in a different order than one process sums the whole batch, so results agree to
// float32 rounding: losses to 1e-5 relative, weights to 1e-5 absolute after 3 rounds, masks exactly.
const LOSS_RELATIVE = 1e-5;
const WEIGHT_ABSOLUTE = 1e-5;

describe('a cluster of N workers trains the same model as one worker', () => {
  it('2 and 3 workers match 1 worker round by round, with every replica bit-identical', async () => {
    const single = await train(smallConfig({ workers: 1 }));
    const reference = latestState(single.runDir);
    for (const workers of [2, 3]) {
      const run = await train(smallConfig({ workers }));
      expect(run.metrics).toHaveLength(3);
      for (const [round, m] of run.metrics.entries()) {
        const s = single.metrics[round];
        expect(m.workers).toBe(workers);
        for (const key of ['trainLoss', 'holdbackLoss', 'testLoss'] as const) {
          expect(Math.abs((m[key] as number) - (s[key] as number)) / (s[key] as number), `${key} round ${round}`).toBeLessThan(
            LOSS_RELATIVE,
          );
        }
        expect(m.weightsKept).toBe(s.weightsKept);
        expect(m.p).toBe(s.p);
        // The coordinator compares every replica's state digest (weights, masks, Adam moments)
        // after every segment and every pruning: any difference would be resynchronised and counted.
        expect(m.resyncs, `round ${round}: replicas diverged`).toBe(0);
        expect(m.restarts).toBe(0);
      }
      const state = latestState(run.runDir);
      expect(state.step).toBe(reference.step);
      const diff = compareStates(reference.tensors, state.tensors);
      expect(diff.maskDiffs).toBe(0);
      expect(diff.maxWeightDiff).toBeLessThan(WEIGHT_ABSOLUTE);
    }
  });

  it('with bf16 on the wire, 2 workers stay bit-identical, send half the bytes, and train like float32', async () => {
    const f32 = await train(smallConfig({ workers: 2 }));
    const bf16 = await train(smallConfig({ workers: 2, wireFormat: 'bf16' }));
    expect(bf16.metrics).toHaveLength(3);
    for (const [round, m] of bf16.metrics.entries()) {
      const s = f32.metrics[round];
      expect(m.resyncs, `round ${round}: replicas diverged`).toBe(0);
      expect(m.bytesPerStep / s.bytesPerStep, `round ${round}: bytes per step`).toBeCloseTo(0.5, 2);
      // bf16 gradients (8-bit mantissas) through Adam: the same training, not the same floats.
      expect(Math.abs(m.holdbackLoss! - s.holdbackLoss!) / s.holdbackLoss!, `round ${round}`).toBeLessThan(0.02);
    }
  });

  it('a sole worker answers heartbeats through a segment several times longer than peerTimeoutMs', async () => {
    // One worker all-reduces with no one: nothing in its step loop waits on a socket, so unless
    // the loop yields between steps, heartbeats starve for the whole segment and the run never ends.
    // peerTimeoutMs leaves room for the worker's own start (loading the data blocks it for a moment).
    const config = smallConfig({ workers: 1, rounds: 1, roundSteps: 150, units: 256, peerTimeoutMs: 3000, heartbeatMs: 500 });
    const { summary, metrics } = await train(config);
    expect(metrics).toHaveLength(1);
    expect(metrics[0].roundMs, 'the segment outlasted the timeout several times').toBeGreaterThan(2 * config.peerTimeoutMs);
    expect(summary.restarts).toBe(0);
  });

  it('a replica whose mask is corrupted before the digest check is detected and repaired from the majority', async () => {
    const clean = await train(smallConfig({ workers: 3 }));
    const corrupted = await train(smallConfig({ workers: 3 }), {
      workerEnv: (i): Record<string, string> => (i === 1 ? { OCCAM_FAULTS: 'corrupt-mask@prune round=0' } : {}),
    });
    expect(corrupted.summary.resyncs).toBe(1);
    expect(corrupted.metrics.map((m) => m.resyncs)).toEqual([1, 1, 1]);
    // Repaired from the healthy replica: the run ends exactly where the undisturbed one does.
    const diff = compareStates(latestState(clean.runDir).tensors, latestState(corrupted.runDir).tensors);
    expect(diff.maskDiffs).toBe(0);
    expect(diff.maxWeightDiff).toBe(0);
    expect(corrupted.metrics.map((m) => m.testLoss)).toEqual(clean.metrics.map((m) => m.testLoss));
  });
});
