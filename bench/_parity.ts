// Gradient parity of the webgpu backend with cpu: for the MLP, the CNN and the GPT, one batch's
// loss and gradients on both, compared per tensor. Used by `bench gpu` and test/webgpu.test.ts.
import * as tf from '@tensorflow/tfjs-core';
import { type OccamConfig, resolveConfig } from '../src/config.ts';
import { selectBackend } from '../src/training/engine.ts';
import { createModel } from '../src/training/models/create.ts';
import { initialWeights, lossSum } from '../src/training/models/model.ts';
import { syntheticSource } from './_synthetic.ts';

export interface Parity {
  cpuLoss: number;
  gpuLoss: number;
  lossRelative: number;
  /** The worst gradient difference, relative to that tensor's largest value (see below). */
  worstGradientRelative: number;
  tensors: number;
}

export const PARITY_MODELS: Record<string, Partial<OccamConfig>> = {
  mlp: { model: 'mlp', units: 64, batchSize: 32 },
  cnn: { model: 'cnn', units: 4, batchSize: 16 },
  gpt: { model: 'gpt', dataset: 'moby-dick', layers: 2, heads: 2, width: 32, blockSize: 16, batchSize: 8 },
};

/** Parity of every model in PARITY_MODELS; leaves the webgpu backend selected. */
export async function gradientParity(): Promise<Record<string, Parity>> {
  const report: Record<string, Parity> = {};
  for (const [name, overrides] of Object.entries(PARITY_MODELS)) {
    const config = resolveConfig({ backend: 'cpu', ...overrides });
    const cpu = await lossAndGradients('cpu', config);
    const gpu = await lossAndGradients('webgpu', config);
    // Relative to each tensor's largest value, floored at 1e-6 of the model's largest: a gradient
    // that is zero in exact arithmetic (a key bias: softmax ignores a shift) is float noise on both.
    const largest = (g: Float32Array) => g.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    const floor = 1e-6 * Math.max(...cpu.grads.map(largest));
    let worst = 0;
    cpu.grads.forEach((g, i) => {
      const scale = Math.max(floor, largest(g));
      for (let k = 0; k < g.length; k++) worst = Math.max(worst, Math.abs(g[k] - gpu.grads[i][k]) / scale);
    });
    const lossRelative = Math.abs(cpu.loss - gpu.loss) / Math.abs(cpu.loss);
    report[name] = { cpuLoss: cpu.loss, gpuLoss: gpu.loss, lossRelative, worstGradientRelative: worst, tensors: cpu.grads.length };
  }
  return report;
}

async function lossAndGradients(backend: 'cpu' | 'webgpu', config: OccamConfig): Promise<{ loss: number; grads: Float32Array[] }> {
  await selectBackend(backend);
  const data = syntheticSource(config, 256);
  const model = createModel(config, data);
  const batch = data.trainExamples(data.globalBatch(0, config.batchSize));
  const weights = initialWeights(model.params, 7).map((w, i) => tf.tensor(w, model.params[i].shape));
  const { value, grads } = tf.valueAndGrads((...w: tf.Tensor[]) => lossSum(model, w, batch, 11))(weights);
  const loss = (await value.data())[0];
  const read = await Promise.all(grads.map((g) => g.data() as Promise<Float32Array>));
  tf.dispose([value, ...grads, ...weights]);
  return { loss, grads: read };
}
