// A cluster of real `occam coordinator` and `occam worker` processes on loopback, with known
// ports (coordinator, and each worker's ring server) so a test can reach a live run from outside:
// open WebSockets at it, read /status.json, and wait for it to finish.
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import type { OccamConfig } from '../../src/config.ts';
import { exitOf, freePort, spawnOccam } from './processes.ts';
import { tempRunDir } from './runs.ts';

/** Certificate files for --tls-cert/--tls-key/--tls-ca. */
export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

export interface LiveClusterOptions {
  config: OccamConfig;
  /** Each process gets these as --tls-* and speaks wss. */
  tls?: TlsFiles;
  /** The coordinator runs under `ulimit -n` of this. */
  coordinatorFileLimit?: number;
  /** Runs once the coordinator is started and before any worker is (an impostor that must be first). */
  beforeWorkers?: (url: string) => Promise<void>;
}

export interface WorkerProcess {
  id: string;
  ringPort: number;
  child: ChildProcess;
  log: string;
}

/** What /status.json says (the part these tests read). */
export interface LiveStatus {
  phase: string;
  generation: number;
  workers: { id: string; rank: number; inRing: boolean; ready: boolean }[];
}

export class LiveCluster {
  private constructor(
    readonly runDir: string,
    readonly port: number,
    readonly coordinator: ChildProcess,
    readonly coordinatorLog: string,
    readonly workers: WorkerProcess[],
    private readonly tls: TlsFiles | undefined,
  ) {}

  /** Starts the coordinator and `config.workers` workers (ids w0, w1, …; ranks follow the ids). */
  static async start(options: LiveClusterOptions): Promise<LiveCluster> {
    const { config, tls } = options;
    const runDir = tempRunDir('run');
    const root = join(runDir, '..');
    const configPath = join(root, 'config.json');
    writeFileSync(configPath, JSON.stringify(config));
    const port = await freePort();
    const tlsArgs = tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key, '--tls-ca', tls.ca] : [];
    const coordinatorLog = join(root, 'coordinator.log');
    const coordinator = spawnOccam(
      ['coordinator', '--run-dir', runDir, '--config', configPath, '--host', '127.0.0.1', '--port', String(port), ...tlsArgs],
      coordinatorLog,
      {},
      options.coordinatorFileLimit,
    );
    await options.beforeWorkers?.(`${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`);
    const workers: WorkerProcess[] = [];
    for (let i = 0; i < config.workers; i++) {
      const ringPort = await freePort();
      const id = `w${i}`;
      const log = join(root, `worker-${i}.log`);
      const url = `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`;
      const child = spawnOccam(
        ['worker', '--coordinator', url, '--worker-id', id, '--ring-host', '127.0.0.1', '--ring-port', String(ringPort), ...tlsArgs],
        log,
      );
      workers.push({ id, ringPort, child, log });
    }
    return new LiveCluster(runDir, port, coordinator, coordinatorLog, workers, tls);
  }

  get url(): string {
    return `${this.tls ? 'wss' : 'ws'}://127.0.0.1:${this.port}`;
  }

  /** Every process still running (none crashed, none exited early). */
  get alive(): boolean {
    return [this.coordinator, ...this.workers.map((w) => w.child)].every((child) => child.exitCode === null && child.signalCode === null);
  }

  async status(): Promise<LiveStatus> {
    const url = `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}/status.json`;
    const get = this.tls ? httpsGet : httpGet;
    const options = this.tls ? { ca: readFileSync(this.tls.ca) } : {};
    return new Promise((resolve, reject) => {
      get(url, options, (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () => {
          try {
            resolve(JSON.parse(body) as LiveStatus);
          } catch (error) {
            reject(error as Error);
          }
        });
      }).on('error', reject);
    });
  }

  /** Waits until the ring is formed and training. */
  async training(timeoutMs = 60000): Promise<LiveStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.status().catch(() => null);
      if (status?.phase === 'training') return status;
      if (!this.alive) throw new Error(`a process exited before training started:\n${this.log('coordinator').slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`not training after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Waits for every process to exit; returns their exit codes (coordinator first). */
  async finished(): Promise<(number | null)[]> {
    return Promise.all([exitOf(this.coordinator), ...this.workers.map((w) => exitOf(w.child))]);
  }

  log(which: 'coordinator' | number): string {
    return readFileSync(which === 'coordinator' ? this.coordinatorLog : this.workers[which].log, 'utf8');
  }

  kill(): void {
    for (const child of [this.coordinator, ...this.workers.map((w) => w.child)]) if (child.exitCode === null) child.kill('SIGKILL');
  }
}
