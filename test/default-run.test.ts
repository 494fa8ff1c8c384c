import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OCCAM_BIN } from '../src/coordinator/local-cluster.ts';
import { readMetrics } from '../src/storage/run-dir.ts';

describe('occam train with no options', () => {
  it('trains the default (MNIST, MLP-1024, 2 workers, 12 rounds) to completion and says where the run directory is', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'occam-new-user-'));
    const child = spawn(process.execPath, [OCCAM_BIN, 'train'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code, stderr).toBe(0);
    const match = /run directory: (.+)\n/.exec(stdout);
    expect(match, stdout).not.toBeNull();
    const runDir = (match as RegExpExecArray)[1].trim();
    expect(runDir.startsWith(join(cwd, 'runs'))).toBe(true);
    const metrics = readMetrics(runDir);
    expect(metrics).toHaveLength(12);
    expect(metrics.every((m) => m.workers === 2)).toBe(true);
    expect(metrics[11].weightsKept).toBeLessThan(0.5);
    for (const file of [
      'config.json',
      'summary.json',
      'report.html',
      'model/model.safetensors',
      'model/occam-model.json',
      'model/model.sparse.safetensors',
      'model/input.json',
      'worker-0.log',
      'worker-1.log',
    ]) {
      expect(existsSync(join(runDir, file)), file).toBe(true);
    }
    expect(stdout).toMatch(/best round/);
    // The pruned model is small on disk: at the default run's density the sparse file is at most a quarter of the dense weights.
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'));
    expect(summary.modelSizes.sparseBytes / summary.modelSizes.denseBytes).toBeLessThanOrEqual(0.25);
    expect(stdout).toMatch(/model size/);
    // `occam evaluate` on the exported model gives the summary's test figures exactly.
    const evaluated = spawnSync(process.execPath, [OCCAM_BIN, 'evaluate', runDir, '--json'], { encoding: 'utf8' });
    expect(evaluated.status, evaluated.stderr).toBe(0);
    const figures = JSON.parse(evaluated.stdout);
    expect([figures.test.loss, figures.test.accuracy]).toEqual([summary.best.testLoss, summary.best.testAccuracy]);
    expect(readdirSync(join(runDir, 'tensorboard')).some((name) => name.startsWith('events.out.tfevents.'))).toBe(true);
  });
});
