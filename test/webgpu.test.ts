// The `webgpu` backend (Dawn under TF.js) on Mesa's software Vulkan, lavapipe: gradients equal
// `cpu`'s for the MLP, the CNN and the GPT; Adam's kernels give the scalar reference's values; a 2-worker run keeps its replicas identical and follows
// the same run on `cpu`; a webgpu worker killed mid-run is recovered like any other.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RoundMetrics } from '../src/storage/run-dir.ts';
import { lavapipeEnv, NO_LAVAPIPE } from './helpers/gpu.ts';
import { smallConfig, train } from './helpers/runs.ts';

const env = lavapipeEnv();
if (!env) console.warn(`webgpu tests skipped: ${NO_LAVAPIPE}`);

/** Per-round losses within `relative` of the reference run's; the same masks (weights kept). */
function expectFollows(metrics: RoundMetrics[], reference: RoundMetrics[], relative: number): void {
  expect(metrics.length).toBe(reference.length);
  metrics.forEach((m, i) => {
    for (const key of ['trainLoss', 'holdbackLoss', 'testLoss'] as const) {
      const [a, b] = [m[key] as number, reference[i][key] as number];
      expect(Math.abs(a - b) / Math.abs(b), `${key} of round ${i}`).toBeLessThan(relative);
    }
    expect(m.weightsKept, `weights kept in round ${i}`).toBeCloseTo(reference[i].weightsKept, 3);
    expect(m.resyncs, `round ${i}: every replica agreed`).toBe(0);
  });
}

/** The JSON line a script of test/helpers prints last, run with the Vulkan driver in its environment. */
function helperReport(script: string) {
  const output = execFileSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'helpers', script)], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return JSON.parse(output.trim().split('\n').pop() as string);
}

describe.skipIf(!env)('webgpu on lavapipe', () => {
  it('gives the losses and gradients of cpu for the MLP, the CNN and the GPT', () => {
    const report = helperReport('gpu-parity.ts');
    expect(report.adapter.software).toBe(true);
    for (const model of ['mlp', 'cnn', 'gpt']) {
      // Stated tolerance: loss within 1e-5 relative, every gradient within 1e-4 of its tensor's largest value.
      expect(report[model].lossRelative, `${model} loss`).toBeLessThan(1e-5);
      expect(report[model].worstGradientRelative, `${model} gradients`).toBeLessThan(1e-4);
    }
  });

  it("runs Adam(W) in its own kernels: the scalar float32 reference's bits over five steps, pruned positions still zero", () => {
    const report = helperReport('webgpu-adam.ts');
    expect(report.backend).toBe('webgpu');
    // Lavapipe rounds each operation as float32 does; a GPU that fuses multiply-adds may differ in the last bits.
    expect(report.worst).toBeLessThanOrEqual(1e-6);
    expect(report.prunedNonZero).toBe(0);
  });

  it('trains 2 workers whose replicas agree every round and whose losses follow the cpu run', async () => {
    const config = smallConfig({ rounds: 2, units: 64, workers: 2 });
    const gpu = await train({ ...config, backend: 'webgpu' }, { workerEnv: () => env as Record<string, string> });
    const cpu = await train(config);
    expect(gpu.summary.resyncs).toBe(0);
    expectFollows(gpu.metrics, cpu.metrics, 1e-4);
    const log = readFileSync(join(gpu.runDir, 'worker-0.log'), 'utf8');
    expect(log).toMatch(/"msg":"backend webgpu on llvmpipe/);
  });

  it('recovers from a webgpu worker killed with kill -9 in the middle of an all-reduce', async () => {
    const config = smallConfig({ rounds: 3, workers: 3, backend: 'webgpu', peerTimeoutMs: 8000, heartbeatMs: 500 });
    const { summary, metrics } = await train(config, {
      workerEnv: (i) => ({ ...(env as Record<string, string>), ...(i === 1 ? { OCCAM_FAULTS: 'kill@allreduce step=20' } : {}) }),
    });
    expect(summary.restarts).toBeGreaterThanOrEqual(1);
    expect(metrics.map((m) => m.round)).toEqual([1, 2, 3]);
    expect(metrics.every((m) => m.resyncs === 0)).toBe(true);
    expect(metrics[2].workers).toBe(2);
  });
});
