// Builds the model a config names, sized to the data it will train on.
import type { OccamConfig } from '../../config.ts';
import type { DataSource } from '../data/source.ts';
import { createCnn } from './cnn.ts';
import { createGpt } from './gpt.ts';
import { createMlp } from './mlp.ts';
import type { Model } from './model.ts';

/** What sizes a model: the data it trains on, or a trained model's recorded input layout. */
export type ModelInput = Pick<DataSource, 'description' | 'inputShape' | 'inputType' | 'classes'>;

export function createModel(config: OccamConfig, data: ModelInput): Model {
  const inputs = data.inputShape.reduce((a, b) => a * b, 1);
  switch (config.model) {
    case 'mlp':
      return createMlp({ inputs, units: config.units, classes: data.classes, dropout: config.dropout });
    case 'cnn':
      if (data.inputShape.length !== 3)
        throw new Error(`cnn needs image data (height, width, channels); ${data.description} has shape [${data.inputShape}]`);
      return createCnn({ inputShape: data.inputShape, units: config.units, classes: data.classes });
    case 'gpt':
      if (data.inputType !== 'int32' || data.inputShape[0] !== config.blockSize)
        throw new Error(`gpt needs token windows of blockSize ${config.blockSize}; ${data.description} has shape [${data.inputShape}]`);
      return createGpt({
        vocabSize: data.classes,
        blockSize: config.blockSize,
        layers: config.layers,
        heads: config.heads,
        width: config.width,
        dropout: config.dropout,
        bias: config.bias,
        tieEmbeddings: config.tieEmbeddings,
      });
  }
}
