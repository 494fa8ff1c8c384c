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
import { causalAttention, crossEntropySum, gelu, layerNorm } from '../src/training/models/fused.ts';
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

const TINY = { vocabSize: 11, blockSize: 8, layers: 2, heads: 2, width: 16, dropout: 0.2, bias: true, tieEmbeddings: false };

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

/**
 * The GPT's logits computed the plain way, for comparison: per sequence and per head, with the
 * fused projection's query, key and value columns sliced out and softmax written out.
 */
function perHeadLogits(options: typeof TINY, model: Model, weights: Float32Array[], x: Int32Array, count: number): Float32Array {
  const { width, heads, layers, vocabSize } = options;
  const steps = x.length / count;
  const headSize = width / heads;
  return tf.tidy(() => {
    const w = (name: string) =>
      tf.tensor(weights[model.params.findIndex((p) => p.name === name)], model.params.find((p) => p.name === name)?.shape);
    const has = (name: string) => model.params.some((p) => p.name === name);
    const linear = (v: tf.Tensor2D, name: string) => {
      const y = tf.matMul(v, w(`${name}.kernel`) as tf.Tensor2D);
      return has(`${name}.bias`) ? tf.add(y, w(`${name}.bias`)) : y;
    };
    const norm = (v: tf.Tensor2D, name: string) => {
      const { mean, variance } = tf.moments(v, -1, true);
      const y = tf.mul(tf.div(tf.sub(v, mean), tf.sqrt(tf.add(variance, 1e-5))), w(`${name}.gain`));
      return (has(`${name}.bias`) ? tf.add(y, w(`${name}.bias`)) : y) as tf.Tensor2D;
    };
    const gelu = (v: tf.Tensor) =>
      tf.mul(tf.mul(v, 0.5), tf.add(tf.tanh(tf.mul(tf.add(v, tf.mul(tf.pow(v, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1));
    const causal = tf.linalg.bandPart(tf.ones([steps, steps]), -1, 0);
    const rows: tf.Tensor[] = [];
    for (let s = 0; s < count; s++) {
      const tokens = tf.tensor1d(x.subarray(s * steps, (s + 1) * steps), 'int32');
      let h = tf.add(tf.gather(w('wte'), tokens), tf.slice(w('wpe'), [0, 0], [steps, width])) as tf.Tensor2D;
      for (let l = 0; l < layers; l++) {
        const qkv = linear(norm(h, `h.${l}.ln_1`), `h.${l}.attn.qkv`);
        const mixed: tf.Tensor[] = [];
        for (let head = 0; head < heads; head++) {
          const part = (which: number) => tf.slice(qkv, [0, which * width + head * headSize], [steps, headSize]);
          const scores = tf.div(tf.matMul(part(0), part(1), false, true), Math.sqrt(headSize));
          const masked = tf.where(tf.equal(causal, 1), scores, tf.fill([steps, steps], -Infinity));
          mixed.push(tf.matMul(tf.softmax(masked), part(2)));
        }
        h = tf.add(h, linear(tf.concat(mixed, 1) as tf.Tensor2D, `h.${l}.attn.output`));
        h = tf.add(h, linear(gelu(linear(norm(h, `h.${l}.ln_2`), `h.${l}.mlp.fc`)) as tf.Tensor2D, `h.${l}.mlp.proj`));
      }
      const final = norm(h, 'ln_f');
      rows.push(
        has('lm_head.kernel')
          ? tf.matMul(final, w('lm_head.kernel') as tf.Tensor2D)
          : tf.matMul(final, w('wte') as tf.Tensor2D, false, true),
      );
    }
    expect(rows[0].shape[1]).toBe(vocabSize);
    return tf.concat(rows, 0).dataSync() as Float32Array;
  });
}

describe('gpt model', () => {
  it('masks exactly the attention and MLP projections, and initialises like nanoGPT', () => {
    const model = createGpt(TINY);
    const prunable = model.params.filter((p) => p.prunable).map((p) => p.name);
    const projections = ['attn.qkv', 'attn.output', 'mlp.fc', 'mlp.proj'];
    expect(prunable).toEqual([0, 1].flatMap((l) => projections.map((p) => `h.${l}.${p}.kernel`)));
    const byName = new Map(model.params.map((p) => [p.name, p]));
    expect(byName.get('h.0.attn.qkv.kernel')?.shape).toEqual([16, 48]);
    expect(byName.get('h.0.mlp.fc.kernel')?.shape).toEqual([16, 64]);
    expect(byName.get('lm_head.kernel')?.prunable).toBe(false);
    expect(byName.get('h.1.attn.output.kernel')?.init).toEqual({ kind: 'normal', std: 0.02 / Math.sqrt(4) });
    expect(byName.get('wte')?.init).toEqual({ kind: 'normal', std: 0.02 });
    expect(byName.get('ln_f.gain')?.init).toEqual({ kind: 'ones' });
    expect(byName.get('h.0.attn.qkv.bias')?.init).toEqual({ kind: 'zeros' });
    // nanoGPT's options: no biases anywhere; the LM head tied to the token embedding.
    const lean = createGpt({ ...TINY, bias: false, tieEmbeddings: true }).params.map((p) => p.name);
    expect(lean.filter((name) => name.endsWith('.bias'))).toEqual([]);
    expect(lean).not.toContain('lm_head.kernel');
    expect(lean.filter((name) => name.endsWith('.kernel'))).toEqual(prunable);
  });

  it('attends with all heads at once exactly as one head at a time does', () => {
    for (const options of [TINY, { ...TINY, heads: 4, bias: false, tieEmbeddings: true }]) {
      const model = createGpt(options);
      const weights = initialWeights(model.params, 8).map((w, i) => (model.params[i].init.kind === 'normal' ? w.map((v) => v * 25) : w));
      const x = Int32Array.from({ length: 3 * 8 }, (_, i) => (i * 5 + 3) % 11);
      const batched = logits(model, weights, x, 3);
      const reference = perHeadLogits(options, model, weights, x, 3);
      batched.forEach((v, i) => expect(Math.abs(v - reference[i]), `logit ${i}, ${options.heads} heads`).toBeLessThan(1e-4));
    }
  });

  it('is causal: changing the token at position t never changes the logits before t', () => {
    const model = createGpt({ ...TINY, heads: 4, bias: false, tieEmbeddings: true });
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

describe('fused GELU, LayerNorm, causal attention and cross-entropy (host loops on cpu and blas)', () => {
  it('give the values and gradients of the same formulas built op by op (SIMD and scalar LayerNorm)', () => {
    const rng = new Rng(12);
    // Width 12 takes the SIMD LayerNorm (rows in fours), 10 the scalar loops.
    for (const width of [10, 12]) {
      const values = Float32Array.from({ length: 6 * width }, () => 4 * rng.normal());
      const x = tf.tensor2d(values, [6, width]);
      const gain = tf.tensor1d(Float32Array.from({ length: width }, () => 1 + rng.normal() * 0.3));
      const bias = tf.tensor1d(Float32Array.from({ length: width }, () => rng.normal()));
      const upstream = tf.tensor2d(
        Float32Array.from({ length: 6 * width }, () => rng.normal()),
        [6, width],
      );
      const plainNorm = (v: tf.Tensor2D, g: tf.Tensor1D) => {
        const { mean, variance } = tf.moments(v, -1, true);
        return tf.add(tf.mul(tf.div(tf.sub(v, mean), tf.sqrt(tf.add(variance, 1e-5))), g), bias) as tf.Tensor2D;
      };
      const plainGelu = (v: tf.Tensor2D) =>
        tf.mul(
          tf.mul(v, 0.5),
          tf.add(tf.tanh(tf.mul(tf.add(v, tf.mul(tf.pow(v, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1),
        ) as tf.Tensor2D;
      const pairs: [string, (v: tf.Tensor2D, g: tf.Tensor1D) => tf.Tensor2D, (v: tf.Tensor2D, g: tf.Tensor1D) => tf.Tensor2D][] = [
        ['gelu', (v) => gelu(v), (v) => plainGelu(v)],
        ['layerNorm', (v, g) => layerNorm(v, g, bias, 1e-5), plainNorm],
      ];
      for (const [name, fused, plain] of pairs) {
        const input = tf.clipByValue(x, -8, 8);
        const inputs = name === 'layerNorm' ? [input, gain] : [input];
        const weigh =
          (f: typeof fused) =>
          (...v: tf.Tensor[]) =>
            tf.sum(tf.mul(f(v[0] as tf.Tensor2D, (v[1] ?? gain) as tf.Tensor1D), upstream));
        const [fx, fg] = tf.grads(weigh(fused))(inputs);
        const [px, pg] = tf.grads(weigh(plain))(inputs);
        const close = (a: tf.Tensor, b: tf.Tensor, what: string) => {
          const [u, v] = [a.dataSync(), b.dataSync()];
          u.forEach((value, i) =>
            expect(Math.abs(value - v[i]), `${name} ${what} ${i}, width ${width}`).toBeLessThan(2e-5 * Math.max(1, Math.abs(v[i]))),
          );
        };
        close(fused(input, gain), plain(input, gain), 'value');
        close(fx, px, 'gradient of x');
        if (name === 'layerNorm') close(fg, pg, 'gradient of gain');
      }
      // The bias (added in the same pass on the host): its gradient is Σ over rows of the upstream.
      const dBias = tf
        .grad((b: tf.Tensor) => tf.sum(tf.mul(layerNorm(x, gain, b as tf.Tensor1D, 1e-5), upstream)))(bias)
        .dataSync();
      const columnSums = tf.sum(upstream, 0).dataSync();
      dBias.forEach((value, i) => expect(Math.abs(value - columnSums[i]), `bias gradient ${i}, width ${width}`).toBeLessThan(1e-5));
    }
    // Causal attention weights: scale, mask, softmax and dropout noise in one op, against the four ops.
    const scores = tf.tensor3d(
      Float32Array.from({ length: 2 * 5 * 5 }, () => 3 * rng.normal()),
      [2, 5, 5],
    );
    const weigh5 = tf.tensor3d(
      Float32Array.from({ length: 50 }, () => rng.normal()),
      [2, 5, 5],
    );
    const causal = tf.linalg.bandPart(tf.ones([5, 5]), -1, 0);
    for (const noise of [null, Float32Array.from({ length: 50 }, (_, i) => (i % 3 === 0 ? 0 : 1.25))]) {
      const plainAttention = (v: tf.Tensor) => {
        const masked = tf.where(tf.equal(causal, 1), tf.mul(v, 0.7), tf.fill([5, 5], -Infinity));
        const weights = tf.softmax(masked);
        return noise ? tf.mul(weights, tf.tensor3d(noise, [2, 5, 5])) : weights;
      };
      const fusedAttention = (v: tf.Tensor) => causalAttention(v as tf.Tensor3D, 0.7, noise);
      const [a, b] = [fusedAttention(scores).dataSync(), plainAttention(scores).dataSync()];
      a.forEach((value, i) => expect(Math.abs(value - b[i]), `attention weight ${i}`).toBeLessThan(1e-6));
      const weighed = (f: (v: tf.Tensor) => tf.Tensor) => (v: tf.Tensor) => tf.sum(tf.mul(f(v), weigh5));
      const [ga, gb] = [tf.grad(weighed(fusedAttention))(scores).dataSync(), tf.grad(weighed(plainAttention))(scores).dataSync()];
      ga.forEach((value, i) => expect(Math.abs(value - gb[i]), `attention gradient ${i}`).toBeLessThan(1e-5));
    }
    const labels = Int32Array.from([3, 0, 9, 9, 5, 1]);
    const logits = tf.clipByValue(
      tf.tensor2d(
        Float32Array.from({ length: 60 }, () => 4 * rng.normal()),
        [6, 10],
      ),
      -8,
      8,
    );
    const plainLoss = (v: tf.Tensor) =>
      tf.neg(tf.sum(tf.mul(tf.logSoftmax(v as tf.Tensor2D), tf.oneHot(tf.tensor1d(labels, 'int32'), 10))));
    const fusedLoss = (v: tf.Tensor) => tf.mul(crossEntropySum(v as tf.Tensor2D, labels), 1.5);
    expect(crossEntropySum(logits, labels).dataSync()[0]).toBeCloseTo(plainLoss(logits).dataSync()[0], 4);
    const [fusedGrad, plainGrad] = [
      tf.grad(fusedLoss)(logits).dataSync(),
      tf
        .grad((v) => tf.mul(plainLoss(v), 1.5))(logits)
        .dataSync(),
    ];
    fusedGrad.forEach((v, i) => expect(Math.abs(v - plainGrad[i]), `cross-entropy gradient ${i}`).toBeLessThan(2e-6));
  });
});

describe('masked gpt training on a replica', () => {
  it('pruned projection weights, their gradients and Adam moments stay exactly zero through real steps', async () => {
    const config = resolveConfig({ model: 'gpt', dataset: 'moby-dick', layers: 1, heads: 2, width: 16, blockSize: 16, batchSize: 8 });
    const text = 'Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about.\n'.repeat(4);
    const data = new TextDataSource('test', 'test', text, { ...config, trainLimit: 0 });
    const replica = new Replica(createGpt({ ...TINY, vocabSize: data.classes, blockSize: 16, layers: 1 }), data, config);
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
    // What transformer users read: tokens/s of the cluster and MFU against the workers' measured peak.
    for (const m of pair.metrics) {
      expect(m.tokensPerSecond as number).toBeGreaterThan(0);
      expect(m.mfu as number).toBeGreaterThan(0);
      expect(m.mfu as number).toBeLessThan(1);
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
