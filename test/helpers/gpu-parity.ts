// Run as a child process with the Vulkan driver in its environment (webgpu.test.ts): for the MLP,
// the CNN and the GPT, one batch's loss and gradients on `cpu` and on `webgpu`, compared per tensor.
// Prints one JSON line: the adapter, and per model the loss difference and the worst gradient
// difference relative to that tensor's largest value.
import * as tf from '@tensorflow/tfjs-core';
import { resolveConfig, type OccamConfig } from '../../src/config.ts';
import { loadDataSource } from '../../src/training/data/load.ts';
import { selectBackend } from '../../src/training/engine.ts';
import { createModel } from '../../src/training/models/create.ts';
import { initialWeights, lossSum } from '../../src/training/models/model.ts';

const MODELS: Record<string, Partial<OccamConfig>> = {
  mlp: { model: 'mlp', units: 64, trainLimit: 256, batchSize: 32 },
  cnn: { model: 'cnn', units: 4, trainLimit: 256, batchSize: 16 },
  gpt: { model: 'gpt', dataset: 'moby-dick', layers: 2, heads: 2, width: 32, blockSize: 16, batchSize: 8, trainLimit: 2000 },
};

async function lossAndGradients(backend: 'cpu' | 'webgpu', config: OccamConfig): Promise<{ loss: number; grads: Float32Array[] }> {
  await selectBackend(backend);
  const data = loadDataSource(config);
  const model = createModel(config, data);
  const batch = data.trainExamples(data.globalBatch(0, config.batchSize));
  const weights = initialWeights(model.params, 7).map((w, i) => tf.tensor(w, model.params[i].shape));
  const { value, grads } = tf.valueAndGrads((...w: tf.Tensor[]) => lossSum(model, w, batch, 11))(weights);
  const loss = (await value.data())[0];
  const read = await Promise.all(grads.map((g) => g.data() as Promise<Float32Array>));
  tf.dispose([value, ...grads, ...weights]);
  return { loss, grads: read };
}

const report: Record<string, unknown> = {};
for (const [name, overrides] of Object.entries(MODELS)) {
  const config = resolveConfig({ backend: 'cpu', ...overrides });
  const cpu = await lossAndGradients('cpu', config);
  const gpu = await lossAndGradients('webgpu', config);
  let worst = 0;
  // Relative to each tensor's largest value, floored at 1e-6 of the model's largest: a gradient
  // that is zero in exact arithmetic (a key bias: softmax ignores a shift) is float noise on both.
  const largest = (g: Float32Array) => g.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const floor = 1e-6 * Math.max(...cpu.grads.map(largest));
  cpu.grads.forEach((g, i) => {
    const scale = Math.max(floor, largest(g));
    for (let k = 0; k < g.length; k++) worst = Math.max(worst, Math.abs(g[k] - gpu.grads[i][k]) / scale);
  });
  report[name] = {
    cpuLoss: cpu.loss,
    gpuLoss: gpu.loss,
    lossRelative: Math.abs(cpu.loss - gpu.loss) / Math.abs(cpu.loss),
    worstGradientRelative: worst,
    tensors: cpu.grads.length,
  };
}
const choice = await selectBackend('webgpu');
process.stdout.write(`${JSON.stringify({ adapter: choice.adapter, ...report })}\n`);
