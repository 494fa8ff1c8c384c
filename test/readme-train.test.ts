// The README's "Train" section, run as a new user would: `npx occam train` and every line of the
// variations block, as written, in a fresh folder, one after the other (later lines use the runs
// of earlier ones). A `CI:` comment on a line gives the budget the test runs it with; each line's
// check is what the README says it gives.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { OCCAM_BIN } from '../src/coordinator/local-cluster.ts';
import { readMetrics, type RunSummary } from '../src/storage/run-dir.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The `npx occam …` lines of the Train section's code blocks, each with the CI budget its comment gives. */
function trainCommands(): { line: string; args: string; ciFlags: string }[] {
  const section = README.slice(README.indexOf('## Train'), README.indexOf('\n## ', README.indexOf('## Train') + 1));
  return section
    .split('\n')
    .filter((line) => line.startsWith('npx occam '))
    .map((line) => {
      const [command, comment = ''] = line.split(/\s+#\s+/);
      return { line, args: command.replace(/^npx occam /, '').trim(), ciFlags: /CI: (--[^,)]*)/.exec(comment)?.[1].trim() ?? '' };
    });
}

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
  /** The run directory this command created, if it created one. */
  runDir: string | null;
}

describe("the README's Train section, run as written", () => {
  const cwd = mkdtempSync(join(tmpdir(), 'occam-readme-'));
  const runsDir = join(cwd, 'runs');
  const results = new Map<string, Ran>();
  const commands = trainCommands();
  /** Placeholders the README uses for runs made by earlier lines. */
  const placeholders: Record<string, string> = {};

  beforeAll(() => {
    mkdirSync(join(cwd, 'docs', 'examples'), { recursive: true });
    copyFileSync(join(ROOT, 'docs', 'examples', 'wine.csv'), join(cwd, 'docs', 'examples', 'wine.csv'));
  });

  it('has the commands the checks below know', () => {
    expect(commands.map((c) => c.args.split(' ').slice(0, 2).join(' '))).toEqual([
      'train',
      'train --workers',
      'train --dataset',
      'train --dataset',
      'train --model',
      'sample runs/<gpt',
      'train --resume',
      'report runs/*',
      'evaluate runs/<run>',
      'export runs/<run>',
    ]);
  });

  it.each(commands.map((c, i) => [i + 1, c.line] as const))('%i: %s', { timeout: 600_000 }, (index, line) => {
    const { args, ciFlags } = commands[index - 1];
    const before = existsSync(runsDir) ? readdirSync(runsDir) : [];
    let command = `node ${OCCAM_BIN} ${args} ${ciFlags}`;
    for (const [name, value] of Object.entries(placeholders)) command = command.replaceAll(name, value);
    const ran = spawnSync('bash', ['-c', command], { cwd, encoding: 'utf8', timeout: 600_000 });
    const made = (existsSync(runsDir) ? readdirSync(runsDir) : []).filter((name) => !before.includes(name));
    const result: Ran = { ...ran, runDir: made.length === 1 ? join(runsDir, made[0]) : null };
    results.set(line, result);
    expect(ran.status, `${command}\n${ran.stderr}`).toBe(0);
    expect(ran.stderr, 'no stack trace').not.toMatch(/\n\s+at /);
    check(index, result);
  });

  function summaryOf(runDir: string | null): RunSummary {
    expect(runDir, 'the command made one run directory').not.toBeNull();
    return JSON.parse(readFileSync(join(runDir as string, 'summary.json'), 'utf8')) as RunSummary;
  }

  /** What the README says each line gives. */
  function check(index: number, ran: Ran): void {
    switch (index) {
      case 1: {
        // The default: MNIST, MLP-1024, 2 workers, 12 rounds; the summary names the best round and the run directory.
        const runDir = (/run directory: (.+)\n/.exec(ran.stdout)?.[1] ?? '').trim();
        expect(runDir).toBe(ran.runDir);
        placeholders['<run>'] = runDir.slice(cwd.length + 1).replace(/^runs\//, '');
        const metrics = readMetrics(runDir);
        expect(metrics).toHaveLength(12);
        expect(metrics.every((m) => m.workers === 2)).toBe(true);
        expect(metrics[11].weightsKept).toBeLessThan(0.5);
        expect(ran.stdout).toMatch(/best round/);
        const summary = summaryOf(runDir);
        expect(summary.best?.testAccuracy).toBeGreaterThan(0.95);
        // The pruned model is small on disk: at the default run's density the sparse file is at most a quarter of the dense weights.
        expect((summary.modelSizes?.sparseBytes ?? 1) / (summary.modelSizes?.denseBytes ?? 1)).toBeLessThanOrEqual(0.25);
        for (const file of [
          'config.json',
          'metrics.jsonl',
          'report.html',
          'summary.json',
          'coordinator.log',
          'worker-0.log',
          'worker-1.log',
        ]) {
          expect(existsSync(join(runDir, file)), file).toBe(true);
        }
        for (const file of ['model.safetensors', 'model.sparse.safetensors', 'occam-model.json', 'input.json']) {
          expect(existsSync(join(runDir, 'model', file)), file).toBe(true);
        }
        expect(readdirSync(join(runDir, 'checkpoints')).length).toBeGreaterThan(0);
        expect(readdirSync(join(runDir, 'tensorboard')).some((name) => name.startsWith('events.out.tfevents.'))).toBe(true);
        return;
      }
      case 2: {
        const metrics = readMetrics(ran.runDir as string);
        expect(metrics.every((m) => m.workers === 4 && m.weightsKept === 1)).toBe(true);
        return;
      }
      case 3:
        expect(summaryOf(ran.runDir).best?.testAccuracy).toBeGreaterThan(0.5);
        return;
      case 4:
        expect(summaryOf(ran.runDir).best?.testAccuracy).toBeGreaterThanOrEqual(0.9);
        return;
      case 5: {
        const summary = summaryOf(ran.runDir);
        placeholders['<gpt run>'] = (ran.runDir as string).slice(runsDir.length + 1);
        // Better than a uniform guess over the vocabulary (ln of about 80 characters ≈ 4.4 nats).
        expect(summary.best?.holdbackLoss).toBeLessThan(4);
        return;
      }
      case 6:
        expect(ran.stdout.startsWith('Call me Ishmael.')).toBe(true);
        expect(ran.stdout.length).toBeGreaterThan(100);
        return;
      case 7:
        expect(ran.stdout).toMatch(/has finished all 12 rounds; nothing to do/);
        return;
      case 8: {
        const report = readFileSync(join(cwd, 'compare.html'), 'utf8');
        for (const name of readdirSync(runsDir)) expect(report, name).toContain(name);
        return;
      }
      case 9: {
        const best = summaryOf(join(runsDir, placeholders['<run>'])).best;
        expect(ran.stdout).toContain(`loss ${best?.testLoss?.toFixed(4)}  accuracy ${(100 * (best?.testAccuracy ?? 0)).toFixed(2)}%`);
        return;
      }
      case 10:
        expect(ran.stdout.trim()).toBe(join(runsDir, placeholders['<run>'], 'export', 'onnx', 'model.onnx'));
        expect(existsSync(ran.stdout.trim())).toBe(true);
        return;
    }
  }
});
