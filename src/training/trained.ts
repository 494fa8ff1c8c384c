// A trained model back in memory: the run's model/ folder (storage/model-dir.ts) turned into the
// network and its weights as tensors, ready to evaluate, predict, sample or export. Training
// writes what this needs when it starts (input.json, vocab.json), beside the weights.
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { resolveConfig, type OccamConfig } from '../config.ts';
import { type InputLayout, MODEL_FILES, type ModelManifest, readModel, writeInputLayout } from '../storage/model-dir.ts';
import type { NamedTensor } from '../storage/safetensors.ts';
import { loadDataSource } from './data/load.ts';
import type { DataSource } from './data/source.ts';
import { TokenDataSource } from './data/text.ts';
import { createModel } from './models/create.ts';
import type { Model } from './models/model.ts';

export interface TrainedModel {
  model: Model;
  /** One tensor per model parameter, zero where pruned. */
  weights: tf.Tensor[];
  config: OccamConfig;
  input: InputLayout;
  manifest: ModelManifest;
  /** The weights as stored, by parameter name (for exports). */
  tensors: Map<string, NamedTensor>;
}

/** Writes what a trained model needs besides its weights: input.json and, for text, vocab.json. */
export function saveModelInputs(runDir: string, data: DataSource): void {
  const dir = join(runDir, 'model');
  writeInputLayout(dir, data.layout);
  if (data instanceof TokenDataSource) writeFileSync(join(dir, MODEL_FILES.vocabulary), `${JSON.stringify(data.tokenizer.describe())}\n`);
}

/** The best model of a run; one clear error when the run has none or its files do not fit the model. */
export function loadTrainedModel(runDir: string): TrainedModel {
  const dir = join(runDir, 'model');
  const stored = readModel(dir);
  const config = resolveConfig(stored.manifest.config);
  // A run that did not record its input (written by an older Occam): the data tells it.
  const input = stored.input ?? loadDataSource(config).layout;
  const model = createModel(config, {
    description: `the model of ${runDir}`,
    inputShape: input.shape,
    inputType: input.type,
    classes: input.classes,
  });
  const weights = model.params.map((param) => {
    const tensor = stored.tensors.get(param.name);
    const file = join(dir, MODEL_FILES.dense);
    if (!tensor || !(tensor.data instanceof Float32Array)) throw new Error(`${file} has no float32 tensor '${param.name}'`);
    if (tensor.shape.join(',') !== param.shape.join(','))
      throw new Error(`${file}: '${param.name}' has shape [${tensor.shape}], the model needs [${param.shape}]`);
    return tf.tensor(tensor.data, param.shape, 'float32');
  });
  return { model, weights, config, input, manifest: stored.manifest, tensors: stored.tensors };
}
