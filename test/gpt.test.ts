// The GPT: which parameters carry masks, causal attention, masked training on a replica, a
// 2-worker run against a 1-worker run, and sampling from the exported model.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig, type OccamConfig } from '../src/config.ts';
import { TextDataSource } from '../src/training/data/text.ts';
import { selectBackend } from '../src/training/engine.ts';
import { createGpt } from '../src/training/models/gpt.ts';
import { initialWeights, type Model } from '../src/training/models/model.ts';
import { Replica } from '../src/training/replica.ts';
import { Rng } from '../src/training/rng.ts';
import { decodeSafetensors, type NamedTensor } from '../src/storage/safetensors.ts';
import { generate, loadTrainedGpt, pickToken } from '../src/training/sample.ts';
import { OCCAM_BIN } from '../src/coordinator/local-cluster.ts';
import { maskedState, prune, smallGptConfig, train, weightsNow } from './helpers/runs.ts';

// N workers against 1 worker with the same global batch: the ring sums the shards' gradients in
// another order than one process sums the whole batch, so the runs agree to float32 rounding.
const LOSS_RELATIVE = 1e-5;
const WEIGHT_ABSOLUTE = 1e-5;

const TINY = { vocabSize: 11, blockSize: 8, layers: 2, heads: 2, width: 16 };

beforeAll(async () => {
  await selectBackend('cpu');
});

/** Logits of `model` for sequences `x` (count × T), with weights as given. */
function logits(model: Model, weights: Float32Array[], x: Int32Array, count: number): Float32Array {
  return tf.tidy(() => {
    const tensors = model.params.map((p, i) => tf.tensor(weights[i], p.shape, 'float32'));
    const batch = { x, y: new Int32Array(x.length), count, ids: new Uint32Array(count) };
    return model.forward(tensors, batch, null).dataSync() as Float32Array;
  });
}

describe('gpt model', () => {
  it('masks exactly the attention and MLP projections, and initialises like nanoGPT', () => {
    const model = createGpt(TINY);
    const prunable = model.params.filter((p) => p.prunable).map((p) => p.name);
    const projections = ['attn.query', 'attn.key', 'attn.value', 'attn.output', 'mlp.fc', 'mlp.proj'];
    expect(prunable).toEqual([0, 1].flatMap((l) => projections.map((p) => `h.${l}.${p}.kernel`)));
    const byName = new Map(model.params.map((p) => [p.name, p]));
    expect(byName.get('h.0.mlp.fc.kernel')?.shape).toEqual([16, 64]);
    expect(byName.get('lm_head.kernel')?.prunable).toBe(false);
    expect(byName.get('h.1.attn.output.kernel')?.init).toEqual({ kind: 'normal', std: 0.02 / Math.sqrt(4) });
    expect(byName.get('wte')?.init).toEqual({ kind: 'normal', std: 0.02 });
    expect(byName.get('ln_f.gain')?.init).toEqual({ kind: 'ones' });
    expect(byName.get('h.0.attn.query.bias')?.init).toEqual({ kind: 'zeros' });
  });

  it('is causal: changing the token at position t never changes the logits before t', () => {
    const model = createGpt(TINY);
    // Larger weights than the 0.02 init, so attention is far from uniform and every path matters.
    const weights = initialWeights(model.params, 3).map((w, i) => (model.params[i].init.kind === 'normal' ? w.map((v) => v * 25) : w));
    const rng = new Rng(5);
    const count = 3;
    const x = Int32Array.from({ length: count * 8 }, () => rng.below(11));
    const base = logits(model, weights, x, count);
    for (let t = 0; t < 8; t++) {
      const changed = Int32Array.from(x);
      for (let s = 0; s < count; s++) changed[s * 8 + t] = (x[s * 8 + t] + 1 + s) % 11;
      const after = logits(model, weights, changed, count);
      for (let s = 0; s < count; s++) {
        for (let position = 0; position < 8; position++) {
          const row = (s * 8 + position) * 11;
          const same = base.subarray(row, row + 11).every((v, k) => v === after[row + k]);
          // Exactly equal before t (a masked score is exactly zero after the softmax); different from t on.
          expect(same, `sequence ${s}, change at ${t}, position ${position}`).toBe(position < t);
        }
      }
    }
  });

  it('gives a prefix the logits the full sequence has at those positions (how sampling runs)', () => {
    const model = createGpt(TINY);
    const weights = initialWeights(model.params, 4);
    const x = Int32Array.from({ length: 8 }, (_, i) => (i * 7) % 11);
    const full = logits(model, weights, x, 1);
    const prefix = logits(model, weights, x.subarray(0, 5), 1);
    prefix.forEach((v, i) => expect(Math.abs(v - full[i])).toBeLessThan(1e-6));
  });
});

describe('masked gpt training on a replica', () => {
  it('pruned projection weights, their gradients and Adam moments stay exactly zero through real steps', async () => {
    const config = resolveConfig({ model: 'gpt', dataset: 'moby-dick', layers: 1, heads: 2, width: 16, blockSize: 16, batchSize: 8 });
    const text = 'Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about.\n'.repeat(4);
    const data = new TextDataSource('test', 'test', text, { ...config, trainLimit: 0 });
    const replica = new Replica(createGpt({ vocabSize: data.classes, blockSize: 16, layers: 1, heads: 2, width: 16 }), data, config);
    const step = async (s: number) => {
      const { gradient, lossSum, globalCount } = await replica.shardGradient(s, 0, 1);
      replica.applyGradient(gradient, globalCount);
      return { gradient, lossSum };
    };
    for (let s = 0; s < 3; s++) await step(s);
    await prune(replica, 0.5);
    const before = await weightsNow(replica);
    const losses: number[] = [];
    for (let s = 3; s < 8; s++) {
      const { gradient, lossSum } = await step(s);
      losses.push(lossSum);
      // The all-reduced gradient holds only kept positions: a pruned weight has no gradient slot.
      const { prunableKept } = replica.activeCounts();
      const unprunable = replica.activeCounts().activeParams - prunableKept;
      expect(gradient.length).toBe(prunableKept + unprunable);
    }
    for (const { layer, size, pruned, nonZeroPruned, moved } of await maskedState(replica, before)) {
      expect(nonZeroPruned, layer).toBe(0);
      expect(pruned, layer).toBeGreaterThanOrEqual(Math.floor(0.5 * size));
      expect(moved, layer).toBeGreaterThan(0);
    }
    expect(Math.min(...losses.slice(-2))).toBeLessThan(losses[0]);
  });
});

describe('gpt on a local cluster', () => {
  const config = (workers: number): OccamConfig => smallGptConfig({ roundSteps: 8, rounds: 3, evalLimit: 64, evalBatchSize: 32, workers });

  it('2 workers train the model 1 worker trains, round by round; sampling from it is seeded', async () => {
    const single = await train(config(1));
    const pair = await train(config(2));
    expect(pair.metrics).toHaveLength(3);
    for (const [round, m] of pair.metrics.entries()) {
      const s = single.metrics[round];
      for (const key of ['trainLoss', 'holdbackLoss', 'testLoss'] as const) {
        expect(Math.abs((m[key] as number) - (s[key] as number)) / (s[key] as number), `${key} round ${round}`).toBeLessThan(LOSS_RELATIVE);
      }
      expect(m.weightsKept).toBe(s.weightsKept);
      expect(m.resyncs).toBe(0);
    }
    // Occam pruned after rounds 0 and 1 (p0 = 0.4 of the survivors each time; ties at a threshold are kept).
    expect(pair.metrics.map((m) => m.weightsKept)).toEqual([1, expect.closeTo(0.6, 2), expect.closeTo(0.36, 2)]);
    const exported = (runDir: string) =>
      new Map(decodeSafetensors(readFileSync(join(runDir, 'model', 'model.safetensors'))).tensors.map((t) => [t.name, t]));
    const a = exported(single.runDir);
    const b = exported(pair.runDir);
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [name, t] of a) {
      const other = b.get(name) as NamedTensor;
      if (name.endsWith('.mask')) expect(Array.from(other.data), name).toEqual(Array.from(t.data));
      else for (let k = 0; k < t.data.length; k++) expect(Math.abs(other.data[k] - t.data[k]), name).toBeLessThan(WEIGHT_ABSOLUTE);
    }

    // trainLocally writes no vocab.json (the CLI does): the sampler rebuilds it from the corpus.
    const gpt = loadTrainedGpt(pair.runDir);
    expect(gpt.round).toBe(pair.summary.best?.round);
    const options = { length: 40, temperature: 0.8, topK: 10, seed: 9, prompt: 'Call me ' };
    const text = await generate(gpt, options);
    expect([...text]).toHaveLength(40);
    expect(await generate(gpt, options)).toBe(text);
    expect(await generate(gpt, { ...options, seed: 10 })).not.toBe(text);
    await expect(generate(gpt, { ...options, prompt: '🐋' })).rejects.toThrow(/not in the vocabulary/);

    // The command prints the prompt and the same continuation.
    const cli = spawnSync(
      process.execPath,
      [
        OCCAM_BIN,
        'sample',
        pair.runDir,
        '--length',
        '40',
        '--temperature',
        '0.8',
        '--top-k',
        '10',
        '--seed',
        '9',
        '--prompt',
        'Call me ',
        '--backend',
        'cpu',
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toBe(`Call me ${text}\n`);
  });
});

describe('token sampling', () => {
  it('temperature 0 and top-k 1 pick the most likely token; otherwise draws follow softmax(logits / T)', () => {
    const rng = new Rng(1);
    const logits = [0.5, 1, 2.5, -1];
    expect(pickToken(logits, 0, 0, rng)).toBe(2);
    for (let i = 0; i < 20; i++) expect(pickToken(logits, 1.5, 1, rng)).toBe(2);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[pickToken([0, Math.log(3), -50, -50], 1, 2, rng)]++;
    expect(counts[2] + counts[3]).toBe(0);
    expect(counts[1] / 4000).toBeCloseTo(0.75, 1);
  });
});
