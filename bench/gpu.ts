// `npm run bench -- gpu`: the check for a machine with a real GPU, a few minutes on one. Which
// adapter the webgpu backend got; gradient parity with cpu; samples/s of a whole training step
// (forward, backward, compaction, read, upload, masked Adam) for the MLP 784-1024-10, the CNN
// (u = 32) and a GPT of 6 layers × 384 wide (6 heads), block 256, batch 64; fp32 matrix-product
// TFLOP/s at n = 2048, 4096, 8192; and the same in PyTorch on the GPU when Python's torch sees
// CUDA (bench/torch_gpu.py), for the ratio. Synthetic data: nothing is read or downloaded.
// Options: --quick (small sizes, for a software adapter such as lavapipe), --seconds S (default 5),
// --json FILE (the figures as JSON too).
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { type OccamConfig, resolveConfig } from '../src/config.ts';
import { describeAdapter } from '../src/training/webgpu.ts';
import { selectBackend } from '../src/training/engine.ts';
import { createModel } from '../src/training/models/create.ts';
import { Replica } from '../src/training/replica.ts';
import { gradientParity } from './_parity.ts';
import { benchArgs, stepRate } from './_steps.ts';
import { syntheticSource } from './_synthetic.ts';

const args = benchArgs();
const QUICK = args.quick === 'true';
const SECONDS = Number(args.seconds ?? (QUICK ? 2 : 5));
const MODELS: { name: string; settings: Partial<OccamConfig> }[] = (
  QUICK
    ? [
        { model: 'mlp', units: 256, batchSize: 128 },
        { model: 'cnn', units: 8, batchSize: 32 },
        { model: 'gpt', dataset: 'moby-dick', layers: 2, heads: 2, width: 64, blockSize: 32, batchSize: 8 },
      ]
    : [
        { model: 'mlp', units: 1024, batchSize: 128 },
        { model: 'cnn', units: 32, batchSize: 128 },
        { model: 'gpt', dataset: 'moby-dick', layers: 6, heads: 6, width: 384, blockSize: 256, batchSize: 64 },
      ]
).map((s) => ({ name: label(s as Partial<OccamConfig>), settings: s as Partial<OccamConfig> }));
const MATMUL_SIZES = QUICK ? [256, 512] : [2048, 4096, 8192];

const choice = await selectBackend('webgpu');
const adapter = choice.adapter ? describeAdapter(choice.adapter) : 'unknown';
process.stderr.write(`adapter: ${adapter}\n`);
const parity = await gradientParity();

const steps: Record<string, number> = {};
for (const { name, settings } of MODELS) {
  const config = resolveConfig({ ...settings, backend: 'webgpu', dropout: 0.2 });
  const data = syntheticSource(config);
  const replica = new Replica(createModel(config, data), data, config);
  steps[name] = (await stepRate(replica, config.batchSize, SECONDS, 2, 3)).samplesPerSecond;
  replica.dispose();
  process.stderr.write(`  ${name}: ${steps[name].toFixed(0)} samples/s\n`);
}
const matmul: Record<number, number> = {};
for (const n of MATMUL_SIZES) {
  matmul[n] = await matmulTflops(n);
  process.stderr.write(`  matmul n=${n}: ${matmul[n].toPrecision(3)} TFLOP/s\n`);
}
const torch = torchOnGpu();

console.log(`\n# GPU check: ${adapter}${QUICK ? ' (--quick sizes)' : ''}\n`);
console.log('| gradient parity with cpu | loss, relative | worst gradient, relative to its tensor |');
console.log('| --- | ---: | ---: |');
for (const [model, p] of Object.entries(parity))
  console.log(`| ${model} | ${p.lossRelative.toExponential(1)} | ${p.worstGradientRelative.toExponential(1)} |`);
console.log('\n| training step (samples/s) | Occam webgpu | PyTorch CUDA | Occam / PyTorch |');
console.log('| --- | ---: | ---: | ---: |');
MODELS.forEach(({ name }, i) => {
  const theirs = torch?.steps[i];
  console.log(
    `| ${name} | ${steps[name].toFixed(0)} | ${theirs ? theirs.toFixed(0) : '—'} | ${theirs ? (steps[name] / theirs).toFixed(2) : '—'} |`,
  );
});
console.log('\n| fp32 matrix product | Occam webgpu TFLOP/s | PyTorch CUDA TFLOP/s | ratio |');
console.log('| --- | ---: | ---: | ---: |');
for (const n of MATMUL_SIZES) {
  const theirs = torch?.matmul[String(n)];
  console.log(
    `| n = ${n} | ${matmul[n].toPrecision(3)} | ${theirs ? theirs.toPrecision(3) : '—'} | ${theirs ? (matmul[n] / theirs).toFixed(2) : '—'} |`,
  );
}
if (!torch) console.log('\nPyTorch: no CUDA device seen by python3 (torch missing or no GPU)');
const json = args.json;
if (json) writeFileSync(json, `${JSON.stringify({ adapter, quick: QUICK, parity, steps, matmul, torch }, null, 2)}\n`);
process.exit(0);

function label(s: Partial<OccamConfig>): string {
  if (s.model === 'mlp') return `MLP 784-${s.units}-10, batch ${s.batchSize}`;
  if (s.model === 'cnn') return `CNN u=${s.units}, batch ${s.batchSize}`;
  return `GPT ${s.layers}×${s.width}, block ${s.blockSize}, batch ${s.batchSize}`;
}

/** fp32 n×n matrix products per second × 2n³, each timed to the end of its read. */
async function matmulTflops(n: number): Promise<number> {
  const a = tf.randomUniform([n, n]);
  const b = tf.randomUniform([n, n]);
  const once = async () => {
    const c = tf.matMul(a, b);
    await tf.sum(c).data();
    c.dispose();
  };
  await once();
  let count = 0;
  const start = performance.now();
  while (count < 3 || performance.now() - start < SECONDS * 1000) {
    await once();
    count++;
  }
  tf.dispose([a, b]);
  return (count * 2 * n ** 3) / ((performance.now() - start) / 1000) / 1e12;
}

/** PyTorch's figures for the same steps and products on the GPU, or null without CUDA. */
function torchOnGpu(): { device: string; steps: number[]; matmul: Record<string, number> } | null {
  const script = fileURLToPath(new URL('./torch_gpu.py', import.meta.url));
  if (!existsSync(script)) return null;
  for (const python of ['python3', '/usr/bin/python3']) {
    const run = spawnSync(python, [script, QUICK ? 'quick' : 'full', String(SECONDS)], { encoding: 'utf8' });
    if (run.status === 0) return JSON.parse(run.stdout.trim().split('\n').pop() as string);
  }
  return null;
}
