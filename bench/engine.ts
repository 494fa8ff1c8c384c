// `npm run bench -- engine`: samples/s of a full training step — forward, backward, reading the
// gradient, compacting it to the mask, masked Adam — for the MLP (784-1024-10) and the CNN
// (u = 32) at batch 128 and a GPT (2 layers × 128, 4 heads, block 64; no dropout) at batch 32 on
// every backend that runs here, with PyTorch's figure for the same model and batch when Debian's
// python3-torch is installed, where a blas step's time goes (by kind of kernel), and the masked Adam update alone at
// 100 % and 10 % density against a plain copy of the same arrays.
// blas and PyTorch take turns, --rounds R times, and the table gives each one's median: on a shared
// machine a burst of load then hits both sides of a ratio, not one.
// Options: --seconds S per measurement (default 4), --rounds R (default 3), --threads T for BLAS and PyTorch (0 = default).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { resolveConfig, type OccamConfig } from '../src/config.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import { BACKENDS, selectBackend, type BackendName } from '../src/training/engine.ts';
import { createModel } from '../src/training/models/create.ts';
import { Replica } from '../src/training/replica.ts';
import { stepBreakdown } from './_breakdown.ts';
import { maskedUpdateRates } from './_masked-update.ts';
import { benchArgs, stepRate } from './_steps.ts';
import { pythonWithTorch } from '../test/helpers/python.ts';

const args = benchArgs();
const SECONDS = Number(args.seconds ?? 4);
const THREADS = Number(args.threads ?? 0);
const ROUNDS = Math.max(1, Number(args.rounds ?? 3));
const GPT: Partial<OccamConfig> = { model: 'gpt', dataset: 'moby-dick', layers: 2, heads: 4, width: 128, blockSize: 64, dropout: 0 };
const MODELS: { name: string; batch: number; settings: Partial<OccamConfig> }[] = [
  { name: 'MLP 784-1024-10', batch: 128, settings: { model: 'mlp', units: 1024 } },
  { name: 'CNN u=32', batch: 128, settings: { model: 'cnn', units: 32 } },
  { name: 'GPT 2×128, block 64 (windows/s)', batch: 32, settings: GPT },
];

function torchSamplesPerSecond(config: OccamConfig, vocabSize: number): number | string {
  const python = pythonWithTorch();
  if (!python) return 'not installed (apt-get install python3-torch)';
  const script = fileURLToPath(new URL('./torch_step.py', import.meta.url));
  const size = config.model === 'gpt' ? [config.width, config.layers, config.heads, config.blockSize, vocabSize] : [config.units];
  const run = spawnSync(python, [script, config.model, String(config.batchSize), String(SECONDS), String(THREADS), ...size.map(String)], {
    encoding: 'utf8',
  });
  return run.status === 0 ? Number(run.stdout.trim()) : `failed: ${run.stderr.trim().split('\n').pop()}`;
}

const rows: string[] = [];
const blasSplit: string[] = [];
/** Per model: each round's blas and PyTorch rates, then the ratio of their medians. */
const turns: string[] = [];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}
for (const { name, batch, settings } of MODELS) {
  const config = resolveConfig({ ...settings, batchSize: batch, trainLimit: 2000, blasThreads: THREADS });
  const data = loadDataSource(config);
  const model = createModel(config, data);
  const rates = new Map<BackendName, number | string>();
  for (const backend of BACKENDS) {
    try {
      await selectBackend(backend, undefined, { blasThreads: THREADS, requiredKernels: model.requiredKernels });
    } catch (error) {
      rates.set(backend, (error as Error).message.replace(/^backend \w+ cannot run here \(\w+: /, '').replace(/\)$/, ''));
      continue;
    }
    // cpu trains the CNN at seconds per step: one measured step says enough.
    const replica = new Replica(model, data, config);
    const result = await stepRate(replica, batch, SECONDS, 1, 2);
    rates.set(backend, result.samplesPerSecond);
    if (backend === 'blas') {
      const b = await stepBreakdown(replica, batch, 1000, 3);
      const cells = [b.gemm, b.conv, b.fused, b.elementwise, b.reduce, b.otherKernels, b.outside, b.update].map((ms) => ms.toFixed(1));
      blasSplit.push(`| ${name} | ${(result.gradientMs + result.updateMs).toFixed(1)} | ${cells.join(' | ')} |`);
    }
    process.stderr.write(`  ${name} on ${backend}: ${result.samplesPerSecond.toFixed(0)} samples/s\n`);
  }
  let torch = torchSamplesPerSecond(config, data.classes);
  if (typeof rates.get('blas') === 'number' && typeof torch === 'number') {
    const blasRates: number[] = [];
    const torchRates: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // A fresh replica on a freshly selected backend: the other backends ran in between.
      await selectBackend('blas', undefined, { blasThreads: THREADS, requiredKernels: model.requiredKernels });
      blasRates.push((await stepRate(new Replica(model, data, config), batch, SECONDS, 1, 2)).samplesPerSecond);
      const next = round === 0 ? torch : torchSamplesPerSecond(config, data.classes);
      torchRates.push(typeof next === 'number' ? next : Number.NaN);
    }
    rates.set('blas', median(blasRates));
    torch = median(torchRates.filter((r) => !Number.isNaN(r)));
    const pairs = blasRates.map((r, i) => `${r.toFixed(0)} / ${torchRates[i].toFixed(0)}`);
    turns.push(`| ${name} | ${pairs.join(' | ')} | ${(median(blasRates) / torch).toFixed(2)}× |`);
  }
  const cell = (v: number | string | undefined) => (typeof v === 'number' ? v.toFixed(0) : `n/a: ${v ?? '—'}`);
  const ratio = (a: number | string | undefined, b: number | string | undefined) =>
    typeof a === 'number' && typeof b === 'number' ? `${(a / b).toFixed(1)}×` : '—';
  rows.push(
    `| ${name} | ${BACKENDS.map((b) => cell(rates.get(b))).join(' | ')} | ${cell(torch)} | ${ratio(rates.get('blas'), rates.get('wasm'))} | ${ratio(rates.get('blas'), torch)} |`,
  );
}

console.log('\n# training step throughput, batch 128 (GPT 32) (samples/s; forward, backward, gradient compaction, masked Adam)\n');
console.log(`| model | ${BACKENDS.join(' | ')} | PyTorch | blas / wasm | blas / PyTorch |`);
console.log(`| --- | ${BACKENDS.map(() => '---:').join(' | ')} | ---: | ---: | ---: |`);
for (const row of rows) console.log(row);
if (turns.length > 0) {
  console.log(`\n# blas / PyTorch, round by round (samples/s; the table above gives the medians)\n`);
  console.log(`| model | ${Array.from({ length: ROUNDS }, (_, i) => `round ${i + 1}`).join(' | ')} | ratio of medians |`);
  console.log(`| --- | ${Array.from({ length: ROUNDS }, () => '---:').join(' | ')} | ---: |`);
  for (const row of turns) console.log(row);
}
console.log(`\n# where a blas step's time goes (ms per step; the kernels as TF.js's profiler times them, 3 steps)\n`);
console.log(
  '| model | step (unprofiled) | matrix products | convolutions, pooling | fused ops | element-wise | reductions | other kernels | outside kernels (tape, gradient read, compaction) | masked Adam |',
);
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const row of blasSplit) console.log(row);
// The MLP's first layer: 784 × 1024 weights.
const update = maskedUpdateRates(784 * 1024, Math.min(SECONDS, 2));
console.log(`\n# masked Adam alone, one parameter of 784 × 1024 weights (host, one thread, WebAssembly SIMD)\n`);
console.log('| density | ms per update | GB/s read + written | of a plain copy | scalar JavaScript ms (same bits) |');
console.log('| ---: | ---: | ---: | ---: | ---: |');
for (const r of update.rows)
  console.log(
    `| ${(100 * r.density).toFixed(0)} % | ${r.ms.toFixed(2)} | ${r.gbPerSecond.toFixed(1)} | ${r.ofCopy.toFixed(2)}× | ${r.scalarMs.toFixed(2)} |`,
  );
console.log(`\nplain copy of weights and both moments: ${update.copyGbPerSecond.toFixed(1)} GB/s read + written`);
console.log(`\nthreads: ${THREADS === 0 ? 'library defaults' : THREADS}; tf backend at the end: ${tf.getBackend()}`);
process.exit(0);
