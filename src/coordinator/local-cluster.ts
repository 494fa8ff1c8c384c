// `occam train`: a coordinator in this process and N worker processes on loopback — the same
// code path as a real cluster, on one machine. Worker logs go to worker-<i>.log in the run
// directory; if every worker dies, the run stops with the end of their logs instead of waiting.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OccamConfig } from '../config.ts';
import type { Logger } from '../common/log.ts';
import { Coordinator, type RunEvent } from './coordinator.ts';
import { withObservability } from '../observe/observability.ts';
import type { RunSummary } from '../storage/run-dir.ts';

export const OCCAM_BIN = fileURLToPath(new URL('../../bin/occam.mjs', import.meta.url));

export interface LocalRunOptions {
  config: OccamConfig;
  runDir: string;
  runId: string;
  log: Logger;
  onEvent?: (event: RunEvent) => void;
  /** Port of the coordinator's HTTP and control endpoint on 127.0.0.1 (default: any free one). */
  port?: number;
  /** Called with the port once the coordinator listens (status page, /metrics). */
  onListening?: (port: number) => void;
  /** Extra environment for worker i (fault injection in tests). */
  workerEnv?: (index: number) => Record<string, string>;
}

export async function trainLocally(options: LocalRunOptions): Promise<RunSummary> {
  const { config, runDir, log } = options;
  mkdirSync(runDir, { recursive: true });
  const token = randomBytes(24).toString('hex');
  // withObservability: /metrics, the live status page at /, and report.html after every round.
  const coordinator = new Coordinator(
    withObservability({
      config,
      runDir,
      runId: options.runId,
      host: '127.0.0.1',
      port: options.port ?? 0,
      token,
      log,
      maxMessageBytes: 1 << 30,
      onEvent: options.onEvent,
    }),
  );
  const port = await coordinator.listen();
  options.onListening?.(port);
  // Each worker's BLAS gets an equal share of the cores, so workers do not fight over them.
  const threads = config.blasThreads || Math.max(1, Math.floor(availableParallelism() / config.workers));
  const workers = Array.from({ length: config.workers }, (_, i) =>
    spawnWorker(i, port, token, runDir, threads, options.workerEnv?.(i) ?? {}),
  );
  let allExited: (error: Error) => void = () => {};
  const workersGone = new Promise<never>((_, reject) => (allExited = reject));
  workersGone.catch(() => {});
  let alive = workers.length;
  for (const [i, worker] of workers.entries()) {
    worker.on('exit', (code, signal) => {
      alive--;
      if (code !== 0) log.warn({ worker: i, code, signal }, 'worker process exited');
      if (alive === 0)
        allExited(
          new Error(
            `all workers exited before the run finished; last lines of ${join(runDir, 'worker-0.log')}:\n${tail(join(runDir, 'worker-0.log'))}`,
          ),
        );
    });
  }
  try {
    return await Promise.race([coordinator.run(), workersGone]);
  } finally {
    await coordinator.close('run finished');
    await Promise.all(workers.map((w) => exited(w, 3000)));
  }
}

function spawnWorker(
  index: number,
  port: number,
  token: string,
  runDir: string,
  threads: number,
  env: Record<string, string>,
): ChildProcess {
  const logFile = openSync(join(runDir, `worker-${index}.log`), 'a');
  const child = spawn(
    process.execPath,
    [
      OCCAM_BIN,
      'worker',
      '--coordinator',
      `ws://127.0.0.1:${port}`,
      '--worker-id',
      `local-${index}`,
      '--ring-host',
      '127.0.0.1',
      '--exit-with-parent',
    ],
    {
      // OCCAM_LOCAL_RANK: on a machine with several GPUs, worker i takes the i-th (webgpu).
      env: { ...process.env, OCCAM_TOKEN: token, OCCAM_BLAS_THREADS: String(threads), OCCAM_LOCAL_RANK: String(index), ...env },
      stdio: ['ignore', logFile, logFile, 'ipc'],
    },
  );
  closeSync(logFile);
  return child;
}

/** Waits for a child to exit, killing it after `ms`. */
function exited(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function tail(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
