// Starts N ring-node processes (bench/_ring-node.ts), forms their ring, and collects reports.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RingNodeCommand, RingNodeReport } from '../../bench/_ring-node.ts';

const NODE = fileURLToPath(new URL('../../bench/_ring-node.ts', import.meta.url));

export class RingCluster {
  private constructor(private readonly nodes: ChildProcess[]) {}

  static async start(world: number, env: Record<string, string> = {}): Promise<RingCluster> {
    const nodes = Array.from({ length: world }, (_, rank) =>
      fork(NODE, [], {
        execArgv: ['--import', 'tsx', ...(process.env.RING_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof'] : [])],
        env: { ...process.env, RING_RANK: String(rank), RING_WORLD: String(world), ...env },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    const cluster = new RingCluster(nodes);
    const ports = await Promise.all(nodes.map((node) => cluster.next(node, 'port')));
    const members = ports.map((report, rank) => ({ workerId: `node-${rank}`, host: '127.0.0.1', port: (report as { port: number }).port }));
    await cluster.all({ type: 'form', generation: 1, members }, 'formed');
    return cluster;
  }

  /** Runs all-reduces of the given sizes on every node; returns each node's reports in rank order. */
  async allReduce(sizes: number[], repeats = 1, verify = true, plain = false): Promise<Extract<RingNodeReport, { type: 'result' }>[][]> {
    const results = this.nodes.map((node) => this.collect(node, sizes.length));
    for (const node of this.nodes) node.send({ type: 'allreduce', sizes, repeats, verify, plain } satisfies RingNodeCommand);
    return Promise.all(results);
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(
        (node) =>
          new Promise<void>((resolve) => {
            if (node.exitCode !== null) return resolve();
            node.once('exit', () => resolve());
            node.send({ type: 'exit' } satisfies RingNodeCommand);
            setTimeout(() => node.kill('SIGKILL'), 5000).unref();
          }),
      ),
    );
  }

  private all(command: RingNodeCommand, type: RingNodeReport['type']): Promise<RingNodeReport[]> {
    const replies = this.nodes.map((node) => this.next(node, type));
    for (const node of this.nodes) node.send(command);
    return Promise.all(replies);
  }

  private next(node: ChildProcess, type: RingNodeReport['type']): Promise<RingNodeReport> {
    return new Promise((resolve, reject) => {
      const onMessage = (report: RingNodeReport) => {
        if (report.type === 'error') reject(new Error(report.message));
        else if (report.type === type) resolve(report);
        else return;
        node.off('message', onMessage);
      };
      node.on('message', onMessage);
    });
  }

  private collect(node: ChildProcess, count: number): Promise<Extract<RingNodeReport, { type: 'result' }>[]> {
    return new Promise((resolve, reject) => {
      const results: Extract<RingNodeReport, { type: 'result' }>[] = [];
      const onMessage = (report: RingNodeReport) => {
        if (report.type === 'error') {
          node.off('message', onMessage);
          reject(new Error(report.message));
        } else if (report.type === 'result') {
          results.push(report);
          if (results.length === count) {
            node.off('message', onMessage);
            resolve(results);
          }
        }
      };
      node.on('message', onMessage);
    });
  }
}
