import { describe, expect, it } from 'vitest';
import { RingCluster } from './helpers/ring-cluster.ts';

// Sizes: empty, one value, odd, not divisible by any N in 2..5, a few pipelined chunks, and ≥ 4 M floats.
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
