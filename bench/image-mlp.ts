// `npm run bench -- image-mlp`: the paper's claim (a) for a linear network — the MLP 784-units-10
// trained plainly, with Occam, with post-train pruning and with gradual pruning (both to Occam's
// density), on MNIST-10k and Fashion-MNIST; writes docs/results/image-mlp.{json,md}.
// Options: --seeds N|a,b,c (3), --rounds R (20), --units U (1024), --fashion-train-limit L (30000; 0 = all 60,000),
// --fine-tune F (2), --workers W (1), --quick (tiny sizes, prints only: for trying the bench out).
import { existsSync } from 'node:fs';
import type { OccamConfig } from '../src/config.ts';
import { FASHION_MNIST_DIR } from '../src/training/data/idx.ts';
import { baselinesNote, runComparison, seedList, type DatasetSpec } from './_compare.ts';
import { benchArgs } from './_steps.ts';

const args = benchArgs();
const quick = 'quick' in args;
const units = Number(args.units ?? (quick ? 32 : 1024));
const rounds = Number(args.rounds ?? (quick ? 4 : 20));
const fashionTrainLimit = Number(args['fashion-train-limit'] ?? (quick ? 1000 : 30000));
const fineTuneRounds = Number(args['fine-tune'] ?? (quick ? 1 : 2));
const fashionImages =
  fashionTrainLimit > 0
    ? `a seeded random ${fashionTrainLimit.toLocaleString('en')} of the 60,000 training images`
    : 'all 60,000 training images';
const shared: Partial<OccamConfig> = {
  model: 'mlp',
  units,
  rounds,
  batchSize: 128,
  learningRate: 0.001,
  dropout: 0.2,
  p0: 0.4,
  holdback: 0.1,
  workers: Number(args.workers ?? 1),
};

const datasets: DatasetSpec[] = [
  {
    key: 'mnist',
    title: `MNIST-10k (8,000 train incl. 10 % holdback, 2,000 test): MLP 784-${units}-10`,
    settings: { ...shared, dataset: 'mnist' },
  },
];
const skipped: { key: string; reason: string }[] = [];
// The Debian package is optional here: without it the MNIST part still runs.
if (existsSync(`${FASHION_MNIST_DIR}/train-images-idx3-ubyte.gz`) || existsSync(`${FASHION_MNIST_DIR}/train-images-idx3-ubyte`)) {
  datasets.push({
    key: 'fashion-mnist',
    title: `Fashion-MNIST (${fashionImages} incl. 10 % holdback, 10,000 test): MLP 784-${units}-10`,
    settings: { ...shared, dataset: 'fashion-mnist', trainLimit: fashionTrainLimit, ...(quick ? { evalLimit: 1000 } : {}) },
  });
} else {
  skipped.push({
    key: 'fashion-mnist',
    reason: `not installed under ${FASHION_MNIST_DIR}; install it with \`apt-get install dataset-fashion-mnist\``,
  });
}

await runComparison({
  name: 'image-mlp',
  title: 'Claim (a), linear network: MLP on MNIST-10k and Fashion-MNIST',
  command: ['npm run bench -- image-mlp', ...process.argv.slice(2)].join(' '),
  datasets,
  skipped,
  notes: [
    `MLP 784-${units}-10 (ReLU, dropout 0.2), Adam lr 0.001, batch 128, ${rounds} rounds of one epoch, p0 0.4, holdback 10 % of the training images, ${shared.workers} worker process (BLAS on all cores).`,
    `Fashion-MNIST trains on ${fashionImages}${fashionTrainLimit > 0 ? ' (a new draw per seed, shared by all strategies of that seed; the subset fits the run into 30 minutes on 2 cores)' : ''}; the test set is the official 10,000.`,
    `${rounds} rounds: enough that plain GD's holdback loss mostly bottoms out inside the run (with 12 rounds, as in bench/ogd-mnist.ts, most runs were still improving at the end: see the 12-round results).`,
    baselinesNote(rounds, fineTuneRounds),
    'Compute = active weights × training samples (the work of a sparse kernel), summed over rounds; "to best" stops at the best round, "total" covers the whole run.',
  ],
  seeds: seedList(args.seeds, quick ? 2 : 3),
  strategies: ['none', 'occam', 'posttrain', 'gradual'],
  fineTuneRounds,
  write: !quick,
});
process.exit(0);
