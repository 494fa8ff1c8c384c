// Real `occam` processes for tests: spawn with a token in the environment, logs to a file,
// wait for conditions on files, and find free ports.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { OCCAM_BIN } from '../../src/coordinator/local-cluster.ts';

export const TEST_TOKEN = 'test-cluster-token-0123456789';

/** An `occam` process; with `fileLimit` it runs under `ulimit -n fileLimit` (the shell execs it, so the pid is occam's). */
export function spawnOccam(args: string[], logPath: string, env: Record<string, string> = {}, fileLimit?: number): ChildProcess {
  const log = openSync(logPath, 'a');
  const options = { env: { ...process.env, OCCAM_TOKEN: TEST_TOKEN, ...env }, stdio: ['ignore', log, log] as ('ignore' | number)[] };
  if (fileLimit === undefined) return spawn(process.execPath, [OCCAM_BIN, ...args], options);
  return spawn('bash', ['-c', `ulimit -n ${fileLimit} && exec "$0" "$@"`, process.execPath, OCCAM_BIN, ...args], options);
}

export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

export function lineCount(path: string): number {
  return existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l.trim()).length
    : 0;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
