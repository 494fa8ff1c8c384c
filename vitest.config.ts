import { defineConfig } from 'vitest/config';

// Two tiers: `unit` runs in-process (the run loop on LocalGroup, kernels, data, schemas) in seconds;
// `process` starts real coordinator and worker processes on loopback (the end-to-end tier).
const UNIT = [
  'blas-kernels',
  'blas-training',
  'buckets',
  'checkpoint',
  'data',
  'export',
  'fault-hooks',
  'k8s-manifests',
  'masks',
  'optimizer',
  'protocol',
  'readme',
  'ring-health',
  'replica',
  'run-loop',
  'schedule',
  'simd',
  'stragglers',
  'tensorboard',
  'terminal',
].map((name) => `test/${name}.test.ts`);

export default defineConfig({
  test: {
    // Cluster tests start real processes; give them time on a 2-core machine.
    testTimeout: 180_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'unit', include: UNIT } },
      { extends: true, test: { name: 'process', include: ['test/**/*.test.ts'], exclude: UNIT } },
    ],
  },
});
