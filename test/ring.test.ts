import { describe, expect, it } from 'vitest';
import { addToBf16, decodeBf16, encodeBf16 } from '../src/wire/bf16.ts';
import { RingCluster } from './helpers/ring-cluster.ts';
import pino from 'pino';
import { RingLinks } from '../src/worker/ring-links.ts';
import { RING_HEADER_BYTES, RingAllReduce } from '../src/wire/ring.ts';

// Sizes: empty, one value, odd, not divisible by any N in 2..5, and ≥ 4 M floats (several pipelined frames per rank).
const SIZES = [0, 1, 7, 1009, 200_003, 4_194_319];

describe('ring all-reduce between real processes over real WebSockets', () => {
  for (let world = 1; world <= 5; world++) {
    it(`N = ${world}: equals the direct sum and every replica is bit-identical`, async () => {
      const cluster = await RingCluster.start(world);
      try {
        const reports = await cluster.allReduce(SIZES);
        for (const [i, size] of SIZES.entries()) {
          const digests = new Set(reports.map((r) => r[i].digest));
          expect(digests.size, `size ${size}: replicas differ`).toBe(1);
          for (const report of reports) {
            expect(report[i].size).toBe(size);
            // float32 sums of N values in [-1, 1]: a few ulps of N
            expect(report[i].maxError, `size ${size}`).toBeLessThanOrEqual(world * 1e-6);
          }
        }
      } finally {
        await cluster.stop();
      }
    });
  }

  it('a buffer in ordinary memory (copied to the ring thread and back) sums to the bits of one in shared memory', async () => {
    const cluster = await RingCluster.start(3);
    try {
      const sizes = [7, 200_003];
      const shared = await cluster.allReduce(sizes);
      const plain = await cluster.allReduce(sizes, 1, true, true);
      for (const [rank, reports] of plain.entries()) {
        expect(reports.map((r) => r.digest)).toEqual(shared[rank].map((r) => r.digest));
        for (const report of reports) expect(report.maxError).toBeLessThanOrEqual(3e-6);
      }
    } finally {
      await cluster.stop();
    }
  });

  it('moves 2(n-1)/n of the buffer per worker', async () => {
    const cluster = await RingCluster.start(4);
    try {
      const [reports] = [await cluster.allReduce([1_000_000], 1, false)];
      for (const [result] of reports) {
        const payload = result.bytesSent;
        const ideal = (2 * 3 * 4_000_000) / 4;
        expect(payload).toBeGreaterThanOrEqual(ideal);
        expect(payload).toBeLessThan(ideal * 1.01); // frame headers only
      }
    } finally {
      await cluster.stop();
    }
  });
});

describe('the ring and its link: memory each side may reuse', () => {
  const CHUNK = 5;

  /**
   * `world` rings in one process over a link that, like a socket, reads a frame's parts later,
   * delivers it from one receive buffer per rank that it scribbles over (NaN) as soon as the ring
   * has it, and holds every frame's `written` until the test releases it.
   */
  function ringsOverReusedMemory(world: number, wireFormat: 'f32' | 'bf16') {
    const held: (() => void)[] = [];
    const inboxes = Array.from({ length: world }, () => Buffer.alloc(RING_HEADER_BYTES + 4 * CHUNK));
    const rings: RingAllReduce[] = [];
    for (let rank = 0; rank < world; rank++) {
      const next = (rank + 1) % world;
      const send = (parts: Buffer[], written: () => void) =>
        setImmediate(() => {
          const inbox = inboxes[next];
          const length = Buffer.concat(parts).copy(inbox);
          rings[next].receiveParts(inbox.subarray(0, RING_HEADER_BYTES), inbox.subarray(RING_HEADER_BYTES, length));
          inbox.fill(0xff);
          held.push(written);
        });
      rings.push(new RingAllReduce(rank, world, send, { chunkFloats: CHUNK, timeoutMs: 5000, wireFormat }));
    }
    return { rings, held };
  }

  for (const wireFormat of ['f32', 'bf16'] as const)
    it(`${wireFormat}: frames travel from the ring's own memory, and an op ends only once its frames are written`, async () => {
      const world = 3;
      const { rings, held } = ringsOverReusedMemory(world, wireFormat);
      const buffers = rings.map((_, rank) => Float32Array.from({ length: 37 }, (_, i) => (rank + 1) * (i % 5) - 3));
      const expected = buffers[0].map((_, i) => buffers.reduce((sum, b) => sum + b[i], 0));
      let finished = 0;
      const ops = rings.map((ring, rank) => ring.allReduce(buffers[rank]).then(() => finished++));
      for (let turn = 0; turn < 200; turn++) await new Promise(setImmediate);
      expect(held.length, 'every frame reached its rank').toBe(2 * (world - 1) * Math.ceil(37 / CHUNK)); // each chunk, 2(n − 1) hops
      expect(finished, 'no op ends while its frames are unwritten').toBe(0);
      for (const written of held.splice(0)) written();
      await Promise.all(ops);
      // Small integers: every partial sum is exact, in bf16 too.
      for (const buffer of buffers) expect([...buffer]).toEqual([...expected]);
    });
});

describe('ring links', () => {
  it('bound every wait by the run’s peerTimeoutMs given at formation, not a fixed 15 s', async () => {
    const links = new RingLinks({
      bindHost: '127.0.0.1',
      port: 0,
      token: 'test-token',
      log: pino({ level: 'silent' }),
      chunkFloats: 1024,
      timeoutMs: 15000,
    });
    const port = await links.listen();
    // Rank 0 of two; rank 1 (the next) never connects, and the previous one's port refuses.
    const members = [
      { workerId: 'w0', host: '127.0.0.1', port },
      { workerId: 'w1', host: '127.0.0.1', port: 1 },
    ];
    const started = Date.now();
    await expect(links.form({ generation: 1, rank: 0, members, ringKey: 'k' }, 'f32', 600)).rejects.toThrow(/within 600 ms/);
    expect(Date.now() - started).toBeLessThan(5000);
    await links.close();
  });
});

describe('the bf16 wire format: float32 sums, bf16 values in flight', () => {
  it('rounds to the nearest bf16 (ties to even), keeps infinities and NaN, and decodes exactly', () => {
    const values = Float32Array.of(1, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, 3.0e38, -Infinity, NaN, 0, -0);
    const encoded = new Uint16Array(values.length);
    encodeBf16(values, encoded);
    const decoded = new Float32Array(values.length);
    decodeBf16(encoded, decoded);
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1); 1 + 3·2^-8 to 1 + 2^-6.
    expect([...decoded.subarray(0, 5)]).toEqual([1, -2.5, 1, 1 + 2 ** -6, 1]);
    expect(Math.abs(decoded[5] - 3.0e38) / 3.0e38).toBeLessThanOrEqual(2 ** -9);
    expect(decoded[6]).toBe(-Infinity);
    expect(decoded[7]).toBeNaN();
    expect(Object.is(decoded[8], 0) && Object.is(decoded[9], -0)).toBe(true);
    // Re-encoding a decoded value gives the same bits: a value that reached bf16 travels unchanged.
    const again = new Uint16Array(values.length);
    encodeBf16(decoded, again);
    expect([...again]).toEqual([...encoded]);
  });

  it('adds float32 values to bf16 ones in one pass, exactly as decode, add in float32, encode', () => {
    const addend = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 10 ** ((i % 7) - 3));
    const values = new Uint16Array(1000);
    encodeBf16(
      Float32Array.from(addend, (x) => Math.cos(x) * 3),
      values,
    );
    const sums = new Float32Array(1000);
    decodeBf16(values, sums);
    for (let i = 0; i < 1000; i++) sums[i] += addend[i];
    const expected = new Uint16Array(1000);
    encodeBf16(sums, expected);
    addToBf16(values, addend, new Float32Array(1024));
    expect([...values]).toEqual([...expected]);
  });

  for (const world of [2, 3, 5]) {
    it(`N = ${world}: replicas are bit-identical, within bf16 rounding of the direct sum, and move half the bytes`, async () => {
      const sizes = [0, 1, 7, 1009, 200_003];
      const cluster = await RingCluster.start(world, { RING_WIRE_FORMAT: 'bf16' });
      try {
        const reports = await cluster.allReduce(sizes);
        for (const [i, size] of sizes.entries()) {
          expect(new Set(reports.map((r) => r[i].digest)).size, `size ${size}: replicas differ`).toBe(1);
          // Each of the n − 1 hops and the final sum round a partial sum of at most n values in
          // [-1, 1] to 8 mantissa bits: an error of at most n · 2^-9 each.
          for (const report of reports) expect(report[i].maxError, `size ${size}`).toBeLessThanOrEqual(world * world * 2 ** -9);
        }
        const biggest = sizes.length - 1;
        expect(Math.max(...reports.map((r) => r[biggest].maxError))).toBeGreaterThan(0); // bf16 really travelled
        for (const report of reports) {
          const ideal = (2 * (world - 1) * 2 * sizes[biggest]) / world;
          expect(report[biggest].bytesSent).toBeGreaterThanOrEqual(ideal);
          expect(report[biggest].bytesSent).toBeLessThan(ideal * 1.01);
        }
      } finally {
        await cluster.stop();
      }
    });
  }
});
