// `npm run bench -- allreduce`: ring all-reduce bus bandwidth over loopback WebSockets for 1, 16
// and 64 MiB with N = 2 and 4 workers, against the raw TCP throughput between two Node processes
// (the transport's limit) and a star (via-coordinator) all-reduce, all measured in this run; the
// cost of `ws` client frame masking; the bf16 wire format against float32; and the bytes a step
// moves at mask density 100/25/10 %. Each ring is warmed up first (as nccl-tests does): a fresh
// ring ran its first few hundred MiB at a third of its later speed (JIT, socket buffers).
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { resolveConfig } from '../src/config.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import { selectBackend } from '../src/training/engine.ts';
import { createModel } from '../src/training/models/create.ts';
import { Replica } from '../src/training/replica.ts';
import { RingCluster } from '../test/helpers/ring-cluster.ts';
import type { TransportCommand, TransportReport } from './_transport.ts';

const MiB = 1 << 20;
const SIZES_MIB = [1, 16, 64];
const WORLDS = [2, 4];
const REPEATS = 5;
/** Untimed all-reduces of every size before a ring's timed ones. */
const WARMUP_REPEATS = 3;
const TRANSPORT = fileURLToPath(new URL('./_transport.ts', import.meta.url));

function spawnTransport(): ChildProcess {
  return fork(TRANSPORT, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

/** The child's next report of type `until`. */
function next(child: ChildProcess, until: TransportReport['type']): Promise<TransportReport> {
  return new Promise((resolve, reject) => {
    const onMessage = (report: TransportReport) => {
      if (report.type === 'error') reject(new Error(report.message));
      if (report.type !== until) return;
      child.off('message', onMessage);
      resolve(report);
    };
    child.on('message', onMessage);
  });
}

function ask(child: ChildProcess, command: TransportCommand, until: TransportReport['type']): Promise<TransportReport> {
  const reply = next(child, until);
  child.send(command);
  return reply;
}

/** Best of REPEATS: the least disturbed measurement on a shared machine. */
async function best(measure: () => Promise<number>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < REPEATS; i++) times.push(await measure());
  return Math.min(...times);
}

async function tcpMs(bytes: number): Promise<number> {
  const [sink, sender] = [spawnTransport(), spawnTransport()];
  try {
    const { port } = (await ask(sink, { type: 'tcp-sink' }, 'listening')) as { port: number };
    return await best(async () => ((await ask(sender, { type: 'tcp-send', port, bytes }, 'done')) as { ms: number }).ms);
  } finally {
    sink.kill();
    sender.kill();
  }
}

/** Both processes send `bytes` to each other at once: the per-direction limit a 2-ring sees. */
async function tcpDuplexMs(bytes: number): Promise<number> {
  const [a, b] = [spawnTransport(), spawnTransport()];
  try {
    const { port } = (await ask(a, { type: 'tcp-duplex-listen', bytes }, 'listening')) as { port: number };
    return await best(async () => {
      const done = await Promise.all([next(a, 'done'), ask(b, { type: 'tcp-duplex-connect', port, bytes }, 'done')]);
      return Math.max(...done.map((d) => (d as { ms: number }).ms));
    });
  } finally {
    a.kill();
    b.kill();
  }
}

async function wsMs(bytes: number, serverSends: boolean): Promise<number> {
  return best(async () => {
    const [server, client] = [spawnTransport(), spawnTransport()];
    try {
      const { port } = (await ask(server, { type: 'ws-server', bytes, serverSends }, 'listening')) as { port: number };
      return ((await ask(client, { type: 'ws-client', port, bytes, serverSends }, 'done')) as { ms: number }).ms;
    } finally {
      server.kill();
      client.kill();
    }
  });
}

async function starMs(world: number, floats: number): Promise<number> {
  const center = spawnTransport();
  const workers = Array.from({ length: world }, spawnTransport);
  try {
    const { port } = (await ask(center, { type: 'star-center', workers: world, floats }, 'listening')) as { port: number };
    return await best(async () => {
      const done = await Promise.all(workers.map((w) => ask(w, { type: 'star-worker', port, floats }, 'done')));
      return Math.max(...done.map((d) => (d as { ms: number }).ms));
    });
  } finally {
    center.kill();
    for (const w of workers) w.kill();
  }
}

/** A ring started for timing: its connections and code warmed by untimed all-reduces of every size. */
async function warmRing(world: number, env: Record<string, string> = {}): Promise<RingCluster> {
  const cluster = await RingCluster.start(world, env);
  await cluster.allReduce(
    SIZES_MIB.map((mib) => (mib * MiB) / 4),
    WARMUP_REPEATS,
    false,
  );
  return cluster;
}

/** The fastest of REPEATS all-reduces of `floats` (each timed on its slowest rank) and the bytes a rank sent. */
async function bestRing(cluster: RingCluster, floats: number): Promise<{ ms: number; bytesSent: number }> {
  const reports = await cluster.allReduce([floats], REPEATS, false);
  const slowestRankMs = Array.from({ length: REPEATS }, (_, k) => Math.max(...reports.map((r) => r[0].ms[k])));
  return { ms: Math.min(...slowestRankMs), bytesSent: reports[0][0].bytesSent };
}

const gbps = (bytes: number, ms: number) => (bytes / (ms / 1000) / 1e9).toFixed(2);

async function main(): Promise<void> {
  console.log(`# all-reduce over loopback (best of ${REPEATS}; GB/s = 1e9 bytes/s)\n`);
  const tcp = new Map<number, number>();
  const duplex = new Map<number, number>();
  for (const mib of SIZES_MIB) {
    tcp.set(mib, await tcpMs(mib * MiB));
    duplex.set(mib, await tcpDuplexMs(mib * MiB));
  }
  console.log('Raw TCP: one Node process streaming to another; duplex: both streaming to each other at once (per direction),');
  console.log('which is what every ring member does. Bus bandwidth: 2(n-1)/n · bytes / time (NCCL busbw).\n');
  console.log(
    '| size | N | ring ms | ring bus GB/s | raw TCP GB/s | ring / TCP | duplex TCP GB/s | ring / duplex | star ms | star bus GB/s | ring speed-up over star |',
  );
  console.log('| ---: | -: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const world of WORLDS) {
    const cluster = await warmRing(world);
    try {
      for (const mib of SIZES_MIB) {
        const floats = (mib * MiB) / 4;
        const ringMs = (await bestRing(cluster, floats)).ms;
        const busBytes = ((2 * (world - 1)) / world) * mib * MiB;
        const tcpGbps = (mib * MiB) / ((tcp.get(mib) as number) / 1000) / 1e9;
        const ringGbps = busBytes / (ringMs / 1000) / 1e9;
        const star = await starMs(world, floats);
        const duplexGbps = (mib * MiB) / ((duplex.get(mib) as number) / 1000) / 1e9;
        console.log(
          `| ${mib} MiB | ${world} | ${ringMs.toFixed(1)} | ${ringGbps.toFixed(2)} | ${tcpGbps.toFixed(2)} | ${(ringGbps / tcpGbps).toFixed(2)} | ${duplexGbps.toFixed(2)} | ${(ringGbps / duplexGbps).toFixed(2)} | ${star.toFixed(1)} | ${gbps(busBytes, star)} | ${(star / ringMs).toFixed(2)}× |`,
        );
      }
    } finally {
      await cluster.stop();
    }
  }

  console.log('\n# bf16 on the wire (`wireFormat: bf16`: float32 sums, bf16 values in flight)\n');
  console.log('| size | N | f32 ring ms | bf16 ring ms | bf16 speed-up | bytes sent, bf16 / f32 |');
  console.log('| ---: | -: | ---: | ---: | ---: | ---: |');
  for (const world of WORLDS) {
    const f32 = await warmRing(world);
    const bf16 = await warmRing(world, { RING_WIRE_FORMAT: 'bf16' });
    try {
      for (const mib of [16, 64]) {
        const a = await bestRing(f32, (mib * MiB) / 4);
        const b = await bestRing(bf16, (mib * MiB) / 4);
        console.log(
          `| ${mib} MiB | ${world} | ${a.ms.toFixed(1)} | ${b.ms.toFixed(1)} | ${(a.ms / b.ms).toFixed(2)}× | ${(b.bytesSent / a.bytesSent).toFixed(3)} |`,
        );
      }
    } finally {
      await f32.stop();
      await bf16.stop();
    }
  }

  console.log('\n# ws frame masking (64 MiB stream in 1 MiB frames)\n');
  const masked = await wsMs(64 * MiB, false);
  const unmasked = await wsMs(64 * MiB, true);
  console.log('| direction | GB/s |');
  console.log('| --- | ---: |');
  console.log(`| client → server (masked, ws default) | ${gbps(64 * MiB, masked)} |`);
  console.log(`| server → client (unmasked; Occam's ring direction) | ${gbps(64 * MiB, unmasked)} |`);
  console.log(`| raw TCP | ${gbps(64 * MiB, tcp.get(64) as number)} |`);
  console.log(`\nmasking costs ${(masked / unmasked).toFixed(1)}× the time of the unmasked direction`);

  console.log('\n# bytes moved per step by the compacted gradient (MLP 784-1024-10, N = 2 and 4)\n');
  await selectBackend('cpu');
  const config = resolveConfig({ trainLimit: 200 });
  const data = loadDataSource(config);
  const replica = new Replica(createModel(config, data), data, config);
  const { prunableTotal } = replica.activeCounts();
  console.log('| mask density | gradient floats | MiB sent per worker per step, N = 2 | N = 4 (measured on the ring) | vs dense |');
  console.log('| ---: | ---: | ---: | ---: | ---: |');
  let denseBytes = 0;
  for (const density of [1, 0.25, 0.1]) {
    const kept = replica.activeCounts().prunableKept / prunableTotal;
    if (density < kept)
      await replica.applyThresholds(await Promise.all(replica.prunableLayers.map((i) => replica.threshold(i, 1 - density / kept))));
    const floats = replica.gradientLength;
    const sent: number[] = [];
    for (const world of [2, 4]) {
      const cluster = await RingCluster.start(world);
      try {
        sent.push((await cluster.allReduce([floats], 1, false))[0][0].bytesSent);
      } finally {
        await cluster.stop();
      }
    }
    denseBytes ||= sent[1];
    console.log(
      `| ${(100 * density).toFixed(0)} % | ${floats} | ${(sent[0] / MiB).toFixed(3)} | ${(sent[1] / MiB).toFixed(3)} | ${(100 * (sent[1] / denseBytes)).toFixed(1)} % |`,
    );
  }
}

await main();
process.exit(0);
