// The transformer recipe's optimizer on in-process replicas: the learning-rate schedule, AdamW,
// clipping by the global norm, and gradient accumulation — masked positions stay exactly zero under
// all of it, accumulation equals the same global batch in one pass for any worker count, and a run
// stopped mid-warmup resumes bit for bit.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type OccamConfig, resolveConfig } from '../src/config.ts';
import { RunStopped } from '../src/coordinator/run-loop.ts';
import type { RunEvent } from '../src/observe/events.ts';
import { readMetrics } from '../src/storage/run-dir.ts';
import { decodeSafetensors } from '../src/storage/safetensors.ts';
import { clipFactor, learningRateAt } from '../src/training/adam.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import { selectBackend } from '../src/training/engine.ts';
import { createModel } from '../src/training/models/create.ts';
import { Replica } from '../src/training/replica.ts';
import { trainSteps } from '../src/training/step-loop.ts';
import { localGroup, loopFor, runLocal } from './helpers/local-runs.ts';
import { maskedState, prune, smallGptConfig, tempRunDir, weightsNow } from './helpers/runs.ts';

/** The paper's transformer recipe, scaled to a test: AdamW 0.1, betas 0.9/0.95, clip 1.0, warmup then cosine. */
const RECIPE: Partial<OccamConfig> = {
  weightDecay: 0.1,
  beta2: 0.95,
  gradClip: 1,
  warmupSteps: 6,
  lrDecaySteps: 20,
  minLearningRate: 1e-4,
  learningRate: 3e-3,
  dropout: 0.2,
};

beforeAll(async () => {
  await selectBackend('cpu');
});

describe('the learning-rate schedule and clipping', () => {
  const schedule = { learningRate: 1, warmupSteps: 4, lrDecaySteps: 14, minLearningRate: 0.1 };

  it('warms up linearly, decays on a cosine to the floor, then stays there (nanoGPT get_lr)', () => {
    expect([0, 1, 2, 3].map((s) => learningRateAt(s, schedule))).toEqual([0.2, 0.4, 0.6, 0.8]);
    expect(learningRateAt(4, schedule)).toBe(1);
    expect(learningRateAt(9, schedule)).toBeCloseTo(0.55, 12); // half-way: 0.1 + 0.5·0.9
    expect(learningRateAt(14, schedule)).toBeCloseTo(0.1, 12);
    expect(learningRateAt(1000, schedule)).toBe(0.1);
    const rates = Array.from({ length: 11 }, (_, k) => learningRateAt(4 + k, schedule));
    expect(rates).toEqual([...rates].sort((a, b) => b - a));
    expect(learningRateAt(50, { ...schedule, lrDecaySteps: 0 })).toBe(1); // no decay: constant after warmup
    expect(learningRateAt(0, { ...schedule, warmupSteps: 0, lrDecaySteps: 0 })).toBe(1);
  });

  it('clips by the global norm as torch.nn.utils.clip_grad_norm_ does', () => {
    expect(clipFactor(4, 1)).toBeCloseTo(0.25, 6);
    expect(clipFactor(0.5, 1)).toBe(1);
    expect(clipFactor(1e9, 0)).toBe(1);
  });

  it('refuses schedules that make no sense, naming the setting', () => {
    expect(() => resolveConfig({ warmupSteps: 10, lrDecaySteps: 5 })).toThrow(/'lrDecaySteps' \(5\) must be ≥ 'warmupSteps' \(10\)/);
    expect(() => resolveConfig({ minLearningRate: 0.1 })).toThrow(/'minLearningRate'/);
    expect(() => resolveConfig({ batchSize: 8, workers: 2, accumulateSteps: 8 })).toThrow(/'accumulateSteps'/);
  });
});

describe('AdamW, clipping and the schedule on a pruned GPT replica', () => {
  it('keep every masked weight, and both its moments, exactly zero; decay shrinks matrices only', async () => {
    const config = smallGptConfig({ ...RECIPE, gradClip: 0.05 }); // a low clip, so every step clips
    const data = loadDataSource(config);
    const replica = new Replica(createModel(config, data), data, config);
    await trainSteps(replica, { fromStep: 0, toStep: 3 });
    await prune(replica, 0.5);
    const before = await weightsNow(replica);
    const norms: number[] = [];
    await trainSteps(replica, { fromStep: 3, toStep: 12, afterStep: () => norms.push(replica.gradientNorm) });
    expect(Math.min(...norms)).toBeGreaterThan(0.05); // clipping was in force
    for (const { layer, pruned, nonZeroPruned, moved } of await maskedState(replica, before)) {
      expect(nonZeroPruned, layer).toBe(0);
      expect(pruned, layer).toBeGreaterThan(0);
      expect(moved, layer).toBeGreaterThan(0);
    }
  });

  it('decays weight matrices but not biases, norms or embeddings', async () => {
    // With a zero gradient only the decay moves a weight: w ← w·(1 − lr·λ).
    const config = smallGptConfig({ weightDecay: 0.5, learningRate: 0.1 });
    const data = loadDataSource(config);
    const replica = new Replica(createModel(config, data), data, config);
    const before = await weightsNow(replica);
    replica.applyGradient(new Float32Array(replica.gradientLength), 1);
    const after = await weightsNow(replica);
    replica.params.forEach((p, i) => {
      const expected = p.name.endsWith('.kernel') ? before[i].map((v) => v * 0.95) : before[i];
      after[i].forEach((v, k) => expect(Math.abs(v - expected[k]), `${p.name}[${k}]`).toBeLessThan(1e-7));
    });
  });
});

describe('gradient accumulation', () => {
  const config = (workers: number, accumulateSteps: number) =>
    smallGptConfig({ ...RECIPE, workers, accumulateSteps, batchSize: 16, roundSteps: 6, rounds: 3, evalLimit: 16 });

  it('2 workers × 2 micro-batches train what 1 worker does in one pass over the same global batch', async () => {
    const whole = await runLocal(() => localGroup(config(1, 1), 1), config(1, 1));
    const accumulated = await runLocal(() => localGroup(config(2, 2), 2), config(2, 2));
    expect(accumulated.metrics).toHaveLength(3);
    accumulated.metrics.forEach((m, i) => {
      for (const key of ['trainLoss', 'holdbackLoss', 'testLoss'] as const) {
        const [a, b] = [m[key] as number, whole.metrics[i][key] as number];
        expect(Math.abs(a - b) / b, `${key} of round ${i + 1}`).toBeLessThan(1e-5);
      }
      expect(m.weightsKept).toBe(whole.metrics[i].weightsKept);
    });
    // The exported model (the best round's weights and masks) of both runs.
    const exported = (runDir: string) => decodeSafetensors(readFileSync(join(runDir, 'model', 'model.safetensors'))).tensors;
    const [a, b] = [exported(whole.runDir), exported(accumulated.runDir)];
    expect(b.map((t) => t.name)).toEqual(a.map((t) => t.name));
    a.forEach((tensor, i) => {
      let worst = 0;
      for (let k = 0; k < tensor.data.length; k++) worst = Math.max(worst, Math.abs(tensor.data[k] - b[i].data[k]));
      expect(worst, tensor.name).toBeLessThan(tensor.name.endsWith('.mask') ? 1 : 1e-5);
    });
  });
});

describe('resume', () => {
  it('a run stopped mid-warmup continues the schedule bit for bit', async () => {
    const settings = smallGptConfig({ ...RECIPE, warmupSteps: 20, lrDecaySteps: 40, roundSteps: 4, rounds: 4, evalLimit: 16 });
    const whole = await runLocal(() => localGroup(settings, 2), settings);
    const runDir = tempRunDir('warmup');
    const events: RunEvent[] = [];
    const first = loopFor(runDir, settings, events);
    first.open();
    events.push = (event: RunEvent) => {
      if (event.type === 'round' && event.metrics.round === 2) first.stopRequested = true; // step 8 of 20 warmup steps
      return Array.prototype.push.call(events, event);
    };
    await expect(first.run(localGroup(settings, 2))).rejects.toBeInstanceOf(RunStopped);
    expect(readMetrics(runDir)).toHaveLength(2);
    const resumed = await runLocal(() => localGroup(settings, 2), settings, runDir);
    expect(resumed.digest).toBe(whole.digest);
    expect(resumed.metrics.map((m) => m.holdbackLoss)).toEqual(whole.metrics.map((m) => m.holdbackLoss));
  });
});
