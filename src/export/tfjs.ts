// `occam export --format tfjs`: a TF.js LayersModel (model.json in Keras' topology format plus one
// binary weight shard) that `tf.loadLayersModel` opens in a browser or in Node and runs to Occam's
// logits. Occam's kernel layouts are Keras' own, so weights go over unchanged. MLP and CNN only: the
// GPT's attention is no stock Keras layer (export it as ONNX or for PyTorch).
import type { TrainedModel } from '../training/trained.ts';

export const WEIGHTS_FILE = 'group1-shard1of1.bin';

export interface TfjsFiles {
  modelJson: string;
  weights: Uint8Array;
}

interface KerasLayer {
  class_name: string;
  config: Record<string, unknown>;
}

/** model.json and its weight shard. */
export function tfjsLayersModel(trained: TrainedModel, producer: string): TfjsFiles {
  const { config, input } = trained;
  const inputShape = [null, ...input.shape];
  const layers: KerasLayer[] = [];
  const weightNames: string[] = [];
  const dense = (name: string, units: number, activation: 'relu' | 'linear') => {
    layers.push({ class_name: 'Dense', config: { name, units, activation, use_bias: true, trainable: true, dtype: 'float32' } });
    weightNames.push(`${name}.kernel`, `${name}.bias`);
  };
  const classes = input.classes;
  if (config.model === 'mlp') {
    layers.push({ class_name: 'Flatten', config: { name: 'flatten', batch_input_shape: inputShape, dtype: 'float32' } });
    dense('hidden', config.units, 'relu');
    dense('output', classes, 'linear');
  } else if (config.model === 'cnn') {
    const u = config.units;
    const conv = (name: string, filters: number, first: boolean) => {
      layers.push({
        class_name: 'Conv2D',
        config: {
          name,
          filters,
          kernel_size: [3, 3],
          strides: [1, 1],
          padding: 'valid',
          data_format: 'channels_last',
          activation: 'relu',
          use_bias: true,
          dtype: 'float32',
          ...(first ? { batch_input_shape: inputShape } : {}),
        },
      });
      weightNames.push(`${name}.kernel`, `${name}.bias`);
    };
    const pool = (name: string) =>
      layers.push({
        class_name: 'MaxPooling2D',
        config: { name, pool_size: [2, 2], strides: [2, 2], padding: 'valid', data_format: 'channels_last' },
      });
    conv('conv1', u, true);
    pool('pool1');
    conv('conv2', 2 * u, false);
    pool('pool2');
    conv('conv3', 2 * u, false);
    layers.push({ class_name: 'Flatten', config: { name: 'flatten' } });
    dense('dense', 2 * u, 'relu');
    dense('output', classes, 'linear');
  } else {
    throw new Error(
      `tfjs export covers the mlp and cnn; a ${config.model} has no stock Keras layers (use --format onnx or safetensors-torch)`,
    );
  }

  const tensors = weightNames.map((name) => {
    const tensor = trained.tensors.get(name);
    if (!tensor) throw new Error(`tfjs export: the model has no tensor '${name}'`);
    return tensor;
  });
  const bytes = tensors.reduce((n, t) => n + t.data.byteLength, 0);
  const weights = new Uint8Array(bytes);
  let at = 0;
  for (const t of tensors) {
    weights.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  const model = {
    format: 'layers-model',
    generatedBy: producer,
    convertedBy: null,
    modelTopology: {
      class_name: 'Sequential',
      config: { name: `occam_${config.model}`, layers },
      keras_version: 'tfjs-layers 4.22.0',
      backend: 'tensor_flow.js',
    },
    // Keras names a layer's weights "<layer>/kernel" and "<layer>/bias".
    weightsManifest: [
      { paths: [WEIGHTS_FILE], weights: tensors.map((t) => ({ name: t.name.replace('.', '/'), shape: t.shape, dtype: 'float32' })) },
    ],
  };
  return { modelJson: `${JSON.stringify(model, null, 2)}\n`, weights };
}
