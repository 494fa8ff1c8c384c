// Data made on the spot for the speed and parity checks: random images or random text of the
// shapes the real data sets have. A step's speed does not depend on the values, and a machine
// lent for a check reads nothing from disk and downloads nothing.
import type { OccamConfig } from '../src/config.ts';
import { ArrayDataSource, type DataSource, type LabelledArrays } from '../src/training/data/source.ts';
import { TextDataSource } from '../src/training/data/text.ts';
import { Rng } from '../src/training/rng.ts';

/** 28×28×1 images in 10 classes (mlp, cnn), or text over 65 characters (gpt). */
export function syntheticSource(config: OccamConfig, samples = 1024): DataSource {
  const rng = new Rng(config.seed);
  if (config.model === 'gpt') {
    const alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?\n-\'"()';
    const length = Math.max(20 * config.blockSize, samples * 4);
    const text = Array.from({ length }, () => alphabet[Math.floor(rng.uniform() * 65)]).join('');
    return new TextDataSource('synthetic text', 'synthetic', text, { ...config, trainLimit: 0 });
  }
  const images = (count: number): LabelledArrays => ({
    x: Float32Array.from({ length: count * 784 }, () => rng.uniform()),
    y: Int32Array.from({ length: count }, () => Math.floor(rng.uniform() * 10)),
    count,
    inputShape: [28, 28, 1],
    classes: 10,
  });
  return new ArrayDataSource('synthetic images', images(samples), images(256), config.holdback, config.seed);
}
