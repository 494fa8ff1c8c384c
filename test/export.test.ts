// The model leaves Occam: runs trained in-process (MLP, CNN, GPT, with pruning) are exported and
// each export is run by the tool it is meant for — onnxruntime-node, TF.js's loadLayersModel,
// PyTorch (Debian's python3-torch, where installed) — and must give Occam's logits.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import type { OccamConfig } from '../src/config.ts';
import { exportRun } from '../src/export/export.ts';
import { MODEL_FILES } from '../src/storage/model-dir.ts';
import { decodeSafetensors, encodeSafetensors } from '../src/storage/safetensors.ts';
import { decodeSparseModel, encodeSparseModel, SPARSE_FORMAT } from '../src/storage/sparse-model.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import type { Examples } from '../src/training/data/source.ts';
import { selectBackend } from '../src/training/engine.ts';
import { loadTrainedModel } from '../src/training/trained.ts';
import { localGroup, runLocal } from './helpers/local-runs.ts';
import { pythonWithTorch } from './helpers/python.ts';
import { smallConfig, smallGptConfig } from './helpers/runs.ts';

const RUNS: Record<'mlp' | 'cnn' | 'gpt' | 'gpt-lean', OccamConfig> = {
  mlp: smallConfig({ units: 24, trainLimit: 600, batchSize: 64, evalLimit: 64, rounds: 3 }),
  cnn: smallConfig({ model: 'cnn', units: 4, trainLimit: 300, batchSize: 50, evalLimit: 32, rounds: 2 }),
  gpt: smallGptConfig({ roundSteps: 4, rounds: 2, evalLimit: 8 }),
  // nanoGPT's options: no biases, the LM head tied to the token embedding.
  'gpt-lean': smallGptConfig({ roundSteps: 4, rounds: 2, evalLimit: 8, bias: false, tieEmbeddings: true }),
};
type Kind = keyof typeof RUNS;

interface Exported {
  runDir: string;
  batch: Examples;
  /** Occam's own logits of `batch`, flattened. */
  logits: Float32Array;
}

const runs = new Map<Kind, Exported>();

beforeAll(async () => {
  await selectBackend('cpu');
  for (const [kind, config] of Object.entries(RUNS) as [Kind, OccamConfig][]) {
    const run = await runLocal(() => localGroup(config, 1), config);
    const batch = loadDataSource(config).evalExamples('test', 0, 8);
    const trained = loadTrainedModel(run.runDir);
    const output = trained.model.forward(trained.weights, batch, null);
    runs.set(kind, { runDir: run.runDir, batch, logits: (await output.data()) as Float32Array });
    output.dispose();
  }
}, 120_000);

function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

describe('the sparse model file', () => {
  it('holds the pruned model exactly and is a fraction of the dense weights', () => {
    const { runDir } = runs.get('mlp') as Exported;
    const dense = decodeSafetensors(readFileSync(join(runDir, 'model', MODEL_FILES.dense))).tensors;
    const sparseBytes = readFileSync(join(runDir, 'model', MODEL_FILES.sparse));
    const sparse = new Map(decodeSparseModel(sparseBytes).tensors.map((t) => [t.name, t]));
    expect([...sparse.keys()].sort()).toEqual(dense.map((t) => t.name).sort());
    for (const t of dense) {
      expect(sparse.get(t.name)?.shape, t.name).toEqual(t.shape);
      expect(Buffer.from((sparse.get(t.name) as { data: Uint8Array }).data.buffer).equals(Buffer.from(t.data.buffer)), t.name).toBe(true);
    }
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'));
    expect(summary.modelSizes.sparseBytes).toBe(sparseBytes.length);
    const kept = summary.final.weightsKept as number;
    expect(kept).toBeLessThan(0.9);
    // Values (4 bytes per kept weight) plus a bitmask (1/8 byte per weight), and the dense biases.
    expect(summary.modelSizes.sparseBytes / summary.modelSizes.denseBytes).toBeLessThan(kept + 1 / 32 + 0.05);
  });

  it('refuses a damaged file with one error naming the problem', () => {
    const tensors = [
      { name: 'w', shape: [2, 8], data: Float32Array.from({ length: 16 }, (_, i) => (i % 3 === 0 ? i + 1 : 0)) },
      { name: 'w.mask', shape: [2, 8], data: Uint8Array.from({ length: 16 }, (_, i) => (i % 3 === 0 ? 1 : 0)) },
    ];
    const good = encodeSparseModel(tensors);
    expect(decodeSparseModel(good).tensors.map((t) => Array.from(t.data))).toEqual(tensors.map((t) => Array.from(t.data)));
    expect(() => decodeSparseModel(good.subarray(0, good.length - 3))).toThrow(/safetensors: /);
    expect(() => decodeSparseModel(encodeSafetensors(tensors))).toThrow(/not an Occam sparse model/);
    const short = encodeSafetensors([{ name: 'w.values', shape: [6], data: new Float32Array(6) }], {
      format: SPARSE_FORMAT,
      shapes: '{"w":[2,8]}',
    });
    expect(() => decodeSparseModel(short)).toThrow(/'w' has neither indices nor a bitmask of 2 bytes/);
    const indices = encodeSafetensors(
      [
        { name: 'w.values', shape: [1], data: new Float32Array(1) },
        { name: 'w.indices', shape: [1], data: Int32Array.of(99) },
      ],
      { format: SPARSE_FORMAT, shapes: '{"w":[2,8]}' },
    );
    expect(() => decodeSparseModel(indices)).toThrow(/'w' has an index 99 outside its 16 weights/);
  });
});

describe('ONNX export', () => {
  it.each(['mlp', 'cnn', 'gpt', 'gpt-lean'] as Kind[])('onnxruntime runs the %s to Occam logits', async (kind) => {
    const { runDir, batch, logits } = runs.get(kind) as Exported;
    const [path] = exportRun(runDir, 'onnx');
    const session = await ort.InferenceSession.create(path);
    const input = kind.startsWith('gpt')
      ? new ort.Tensor(
          'int64',
          BigInt64Array.from(batch.x, (v) => BigInt(v)),
          [batch.count, batch.x.length / batch.count],
        )
      : new ort.Tensor('float32', Float32Array.from(batch.x), [batch.count, ...(loadTrainedModel(runDir).input.shape as number[])]);
    const result = await session.run({ input });
    const output = result[session.outputNames[0]].data as Float32Array;
    expect(maxDifference(output, logits)).toBeLessThan(1e-5);
    await session.release();
  });
});

describe('TF.js LayersModel export', () => {
  it.each(['mlp', 'cnn'] as Kind[])('loadLayersModel runs the %s to Occam logits', async (kind) => {
    const { runDir, batch, logits } = runs.get(kind) as Exported;
    const [modelJson, weightsPath] = exportRun(runDir, 'tfjs');
    const artifacts = JSON.parse(readFileSync(modelJson, 'utf8'));
    const weightData = new Uint8Array(readFileSync(weightsPath)).buffer;
    // The files as a server would hand them to tf.loadLayersModel('…/model.json').
    const model = await tfl.loadLayersModel({
      load: async () => ({ modelTopology: artifacts.modelTopology, weightSpecs: artifacts.weightsManifest[0].weights, weightData }),
    });
    const shape = loadTrainedModel(runDir).input.shape;
    const output = model.predict(tf.tensor(batch.x, [batch.count, ...shape])) as tf.Tensor;
    expect(maxDifference(await output.data(), logits)).toBeLessThan(1e-5);
    output.dispose();
  });

  it('refuses the gpt with the formats that take it', () => {
    expect(() => exportRun((runs.get('gpt') as Exported).runDir, 'tfjs')).toThrow(/--format onnx or safetensors-torch/);
  });
});

const python = pythonWithTorch();

describe('PyTorch export', () => {
  it.skipIf(python === null).each(['mlp', 'cnn', 'gpt', 'gpt-lean'] as Kind[])(
    'docs/occam_torch.py loads the %s and gives Occam logits (python3-torch)',
    (kind) => {
      const { runDir, batch, logits } = runs.get(kind) as Exported;
      const [weights] = exportRun(runDir, 'safetensors-torch');
      const dir = join(weights, '..');
      const shape = kind.startsWith('gpt')
        ? [batch.count, batch.x.length / batch.count]
        : [batch.count, ...loadTrainedModel(runDir).input.shape];
      writeFileSync(join(dir, 'input.bin'), Buffer.from(Float32Array.from(batch.x).buffer));
      const script = `
import sys, torch
sys.path.insert(0, ${JSON.stringify(dir)})
import occam_torch
model = occam_torch.load(${JSON.stringify(dir)}, prune_masks=True)
x = torch.frombuffer(bytearray(open(${JSON.stringify(join(dir, 'input.bin'))}, 'rb').read()), dtype=torch.float32).reshape(${JSON.stringify(shape)})
if ${kind.startsWith('gpt') ? 'True' : 'False'}: x = x.long()
with torch.no_grad(): sys.stdout.buffer.write(model(x).contiguous().numpy().tobytes())
`;
      const run = spawnSync(python as string, ['-c', script], { maxBuffer: 1 << 26 });
      expect(run.status, run.stderr.toString()).toBe(0);
      const output = new Float32Array(new Uint8Array(run.stdout).buffer);
      expect(maxDifference(output, logits)).toBeLessThan(1e-5);
    },
    60_000,
  );
});
