// `occam predict RUN_DIR FILE`: class probabilities of new inputs from a trained model. The inputs
// are prepared as the run prepared its data (model/input.json): CSV features found by name and
// standardised with the training split's statistics; IDX images scaled to [0, 1].
import * as tf from '@tensorflow/tfjs-core';
import { DataError } from './data/errors.ts';
import { readIdx } from './data/idx.ts';
import { readCsvFeatures } from './data/tabular.ts';
import type { TrainedModel } from './trained.ts';

export interface Predictions {
  /** Class names (or indices as text where the data names none). */
  classes: string[];
  /** One row of probabilities per input. */
  probabilities: Float32Array[];
}

/** The inputs of FILE, as the model takes them: count × prod(shape) floats. */
export function readInputs(trained: TrainedModel, path: string): { x: Float32Array; count: number } {
  const { input } = trained;
  const prep = input.preprocessing;
  if (prep.kind === 'tokens')
    throw new DataError(path, 'a gpt continues text rather than classifying it: use `occam sample RUN_DIR --prompt TEXT`');
  if (prep.kind === 'standardise') {
    const { x, count } = readCsvFeatures(path, prep.features);
    for (let i = 0; i < x.length; i++) x[i] = (x[i] - prep.mean[i % prep.features.length]) / prep.scale[i % prep.features.length];
    return { x, count };
  }
  // Image models: an IDX images file of unsigned bytes (MNIST's own format), scaled to [0, 1].
  const images = readIdx(path);
  const [height, width, channels] = input.shape;
  const [count, rows, cols = 1, ...rest] = images.dims;
  const fileChannels = rest.reduce((a, b) => a * b, 1);
  if (rows !== height || cols !== width || fileChannels !== channels) {
    throw new DataError(path, `holds ${rows}×${cols}×${fileChannels} images; the model takes ${height}×${width}×${channels}`);
  }
  return { x: Float32Array.from(images.bytes, (v) => v / 255), count };
}

/** Softmax of the model's logits for `count` inputs, in batches of `batchSize`. */
export async function predict(trained: TrainedModel, x: Float32Array, count: number, batchSize: number): Promise<Predictions> {
  const { model, weights, input } = trained;
  const width = x.length / Math.max(1, count);
  const probabilities: Float32Array[] = [];
  for (let start = 0; start < count; start += batchSize) {
    const end = Math.min(count, start + batchSize);
    const batch = {
      x: x.subarray(start * width, end * width),
      y: new Int32Array(end - start),
      count: end - start,
      ids: new Uint32Array(end - start),
    };
    const output = tf.tidy(() => tf.softmax(model.forward(weights, batch, null)));
    const values = (await output.data()) as Float32Array;
    output.dispose();
    for (let row = 0; row < batch.count; row++) probabilities.push(values.slice(row * input.classes, (row + 1) * input.classes));
  }
  const classes = input.classNames ?? Array.from({ length: input.classes }, (_, i) => String(i));
  return { classes, probabilities };
}
