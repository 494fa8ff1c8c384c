// What a stranger on the network can do to a live run without the token: hold connections open
// with half a request (slowloris) far beyond the coordinator's file descriptor limit, or announce
// a huge WebSocket frame before any join. Training, commits and the final state must not notice.
import { connect, type Socket } from 'node:net';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LiveCluster } from './helpers/live-cluster.ts';
import { TEST_TOKEN } from './helpers/processes.ts';
import { compareStates, latestState, smallConfig, train } from './helpers/runs.ts';

const CONFIG = smallConfig({ workers: 2, rounds: 6, checkpointEverySteps: 3 });
const FILE_LIMIT = 256;

describe('connection floods without the token', () => {
  let reference: ReturnType<typeof latestState>;
  const clusters: LiveCluster[] = [];
  beforeAll(async () => {
    reference = latestState((await train(CONFIG)).runDir);
  });
  afterEach(() => {
    for (const cluster of clusters.splice(0)) cluster.kill();
  });

  it(`${3 * FILE_LIMIT} half-open requests against a coordinator limited to ${FILE_LIMIT} descriptors: every commit is written and the run ends bit-identical`, async () => {
    const cluster = await LiveCluster.start({ config: CONFIG, coordinatorFileLimit: FILE_LIMIT });
    clusters.push(cluster);
    await cluster.training();
    const flood = new Flood(cluster.port, 3 * FILE_LIMIT);
    const rssBefore = residentBytes(cluster.coordinator.pid as number);
    // One frame header announcing 900 MiB, from a client with the token but no join yet.
    expect(await hugeFrameBeforeJoin(cluster.port)).toBe('closed');
    const rssGrowth = residentBytes(cluster.coordinator.pid as number) - rssBefore;
    expect(await cluster.finished()).toEqual([0, 0, 0]);
    flood.stop();
    expect(flood.opened).toBeGreaterThan(3 * FILE_LIMIT);
    expect(rssGrowth, 'the announced frame was never buffered').toBeLessThan(64 * 2 ** 20);
    const log = cluster.log('coordinator');
    expect(log).toMatch(/too many unproven connections; refusing/);
    expect(log).not.toMatch(/EMFILE/);
    const checkpoints = readdirSync(join(cluster.runDir, 'checkpoints'));
    expect(checkpoints.length).toBeGreaterThan(0);
    const diff = compareStates(reference.tensors, latestState(cluster.runDir).tensors);
    expect(diff.maxWeightDiff).toBe(0);
    expect(diff.maskDiffs).toBe(0);
  });
});

/** Keeps `count` connections open that send half a request and nothing more, reopening any that close. */
class Flood {
  opened = 0;
  private stopped = false;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly port: number,
    count: number,
  ) {
    for (let i = 0; i < count; i++) this.open();
  }

  stop(): void {
    this.stopped = true;
    for (const socket of this.sockets) socket.destroy();
  }

  private open(): void {
    if (this.stopped) return;
    this.opened++;
    const socket = connect(this.port, '127.0.0.1', () => socket.write('GET /status.json HTTP/1.1\r\nHost: x\r\nX-Slow: '));
    this.sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => {
      this.sockets.delete(socket);
      setTimeout(() => this.open(), 20);
    });
  }
}

/** Upgrades with the token, then sends the header of a 900 MiB frame and 8 MiB of it: 'closed' when the coordinator hangs up. */
function hugeFrameBeforeJoin(port: number): Promise<'closed' | 'kept'> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(
        [
          'GET / HTTP/1.1',
          'Host: 127.0.0.1',
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          'Sec-WebSocket-Version: 13',
          `Authorization: Bearer ${TEST_TOKEN}`,
          '',
          '',
        ].join('\r\n'),
      );
    });
    socket.on('error', () => {});
    socket.once('data', (answer: Buffer) => {
      if (!answer.toString().startsWith('HTTP/1.1 101')) return resolve('closed');
      const header = Buffer.alloc(14);
      header[0] = 0x82; // final binary frame
      header[1] = 0x80 | 127; // masked, 64-bit length
      header.writeBigUInt64BE(BigInt(900 * 2 ** 20), 2);
      socket.write(header);
      for (let i = 0; i < 8; i++) socket.write(Buffer.alloc(2 ** 20));
    });
    socket.on('close', () => resolve('closed'));
    setTimeout(() => {
      socket.destroy();
      resolve('kept');
    }, 10000);
  });
}

function residentBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line?.match(/(\d+)/)?.[1] ?? 0) * 1024;
}
