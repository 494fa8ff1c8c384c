// `npm run bench -- image-cnn`: the paper's claim (a) for a convolutional network — its CNN (conv u,
// pool, conv 2u, pool, conv 2u, dense 2u, dense 10) on a Fashion-MNIST training subset, trained
// plainly, with Occam, post-train pruned and gradually pruned; writes docs/results/image-cnn.{json,md}.
// Options: --seeds N|a,b,c (3), --rounds R (20), --units U (16), --train-limit L (6000),
// --eval-limit E (5000), --fine-tune F (2), --workers W (1), --quick (tiny sizes, prints only).
import { existsSync } from 'node:fs';
import type { OccamConfig } from '../src/config.ts';
import { FASHION_MNIST_DIR } from '../src/training/data/idx.ts';
import { baselinesNote, runComparison, seedList } from './_compare.ts';
import { benchArgs } from './_steps.ts';

const args = benchArgs();
const quick = 'quick' in args;
const units = Number(args.units ?? (quick ? 4 : 16));
const rounds = Number(args.rounds ?? (quick ? 4 : 20));
const trainLimit = Number(args['train-limit'] ?? (quick ? 1000 : 6000));
const evalLimit = Number(args['eval-limit'] ?? (quick ? 500 : 5000));
const fineTuneRounds = Number(args['fine-tune'] ?? (quick ? 1 : 2));
const settings: Partial<OccamConfig> = {
  dataset: 'fashion-mnist',
  trainLimit,
  evalLimit,
  model: 'cnn',
  units,
  rounds,
  batchSize: 128,
  learningRate: 0.001,
  p0: 0.4,
  holdback: 0.1,
  workers: Number(args.workers ?? 1),
};

const installed =
  existsSync(`${FASHION_MNIST_DIR}/train-images-idx3-ubyte.gz`) || existsSync(`${FASHION_MNIST_DIR}/train-images-idx3-ubyte`);
if (!installed) {
  console.error(
    `image-cnn needs Fashion-MNIST, which is not installed under ${FASHION_MNIST_DIR}; install it with \`apt-get install dataset-fashion-mnist\`. Skipping.`,
  );
  process.exit(0);
}

const evaluated = evalLimit > 0 ? `the first ${evalLimit.toLocaleString('en')} of the 10,000 test images` : 'all 10,000 test images';
await runComparison({
  name: 'image-cnn',
  title: "Claim (a), convolutional network: the paper's CNN on Fashion-MNIST",
  command: ['npm run bench -- image-cnn', ...process.argv.slice(2)].join(' '),
  datasets: [
    {
      key: 'fashion-mnist',
      title: `Fashion-MNIST (a seeded random ${trainLimit.toLocaleString('en')} of the training images incl. 10 % holdback; ${evaluated}): CNN u = ${units}`,
      settings,
    },
  ],
  skipped: [],
  notes: [
    `The paper's CNN with base width u = ${units} (conv3×3 ${units} → max-pool → conv3×3 ${2 * units} → max-pool → conv3×3 ${2 * units} → dense ${2 * units} → dense 10, ReLU)${units === 32 ? ': the 32-64-64 widths of the TensorFlow CIFAR-10 tutorial CNN this model follows' : ' (u = 32 would be the full 32-64-64 widths)'}. The training subset (a seeded random ${trainLimit.toLocaleString('en')} of the 60,000 images: a new draw per seed, shared by all strategies of that seed) and the evaluation subset (${evaluated}) are cut down so 3 seeds × 4 strategies fit 30 minutes on 2 cores.`,
    `Adam lr 0.001, batch 128, ${rounds} rounds of one epoch, p0 0.4, holdback 10 % of the training subset, ${settings.workers} worker process (BLAS on all cores). A narrower u buys the rounds: with u = 32, 8,000 images and 10 rounds (16.8 min) most runs were still improving in their last round (see the u = 32 results).`,
    baselinesNote(rounds, fineTuneRounds),
    'Compute = active weights × training samples summed over rounds (for a CNN this counts weights, not multiply-adds: a convolution kernel weight is used at every output position, so it is a proxy for model work, not FLOPs).',
  ],
  seeds: seedList(args.seeds, quick ? 2 : 3),
  strategies: ['none', 'occam', 'posttrain', 'gradual'],
  fineTuneRounds,
  write: !quick,
});
process.exit(0);
