// A holder of the cluster token who is not an honest worker: what it cannot do to a live run.
// (The in-process cases — a commit upload that is not the agreed state, a 1-against-1 digest tie,
// a replica that keeps drifting — are in run-loop.test.ts; a ring impostor and a liveness
// impostor in security.test.ts; a member that never links in faults.test.ts.)
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { authorizationHeader } from '../src/wire/auth.ts';
import { decodeEnvelope, encodeEnvelope } from '../src/wire/protocol.ts';
import { LiveCluster } from './helpers/live-cluster.ts';
import { TEST_TOKEN } from './helpers/processes.ts';
import { smallConfig } from './helpers/runs.ts';

describe('insiders', () => {
  const clusters: LiveCluster[] = [];
  afterEach(() => {
    for (const cluster of clusters.splice(0)) cluster.kill();
  });

  it('the first to join answers its welcome with an error: it is dropped, and the honest workers train the run', async () => {
    const cluster = await LiveCluster.start({ config: smallConfig({ workers: 2, rounds: 2 }), beforeWorkers: failTheWelcome });
    clusters.push(cluster);
    expect(await cluster.finished()).toEqual([0, 0, 0]);
    expect(cluster.log('coordinator')).toMatch(/"worker":"mallory".*worker could not prepare the run/);
  });
});

/** Joins as "mallory" (retrying until the coordinator listens) and answers the welcome with an Error. */
async function failTheWelcome(url: string): Promise<void> {
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    const answered = await new Promise<boolean>((resolve) => {
      const socket = new WebSocket(url, { headers: authorizationHeader(TEST_TOKEN) });
      socket.on('error', () => resolve(false));
      socket.on('close', () => resolve(false));
      socket.on('open', () => socket.send(encodeEnvelope('join', { workerId: 'mallory', ringHost: '127.0.0.1', ringPort: 9 })));
      socket.on('message', (data: Buffer) => {
        const envelope = decodeEnvelope(data);
        if (envelope.kind !== 'welcome') return;
        socket.send(encodeEnvelope('error', { code: 'failed', message: 'no such data here' }, envelope.requestId));
        resolve(true);
      });
    });
    if (answered) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`could not join ${url}`);
}
