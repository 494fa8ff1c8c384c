// A GPT decoder in the spirit of nanoGPT: token + position embeddings, `layers` pre-norm blocks of
// causal multi-head self-attention and a GELU MLP (4× wide), a final LayerNorm and the LM head.
// Occam masks the attention projections (query, key, value, output) and the two MLP projections.
import * as tf from '@tensorflow/tfjs-core';
import type { Examples } from '../data/source.ts';
import type { Init, Model, ParamSpec } from './model.ts';

export interface GptOptions {
  vocabSize: number;
  /** Longest context; a batch may be shorter (sampling starts from a short prompt). */
  blockSize: number;
  layers: number;
  heads: number;
  width: number;
}

const INIT_STD = 0.02;
const LAYER_NORM_EPSILON = 1e-5;
/** Added to the attention scores of future positions: exp(−1e9 − max) is exactly 0 in float32. */
const MASKED_SCORE = -1e9;

export function createGpt({ vocabSize, blockSize, layers, heads, width }: GptOptions): Model {
  if (width % heads !== 0) throw new Error(`gpt: heads (${heads}) must divide width (${width})`);
  const headSize = width / heads;
  const params: ParamSpec[] = [];
  const normal: Init = { kind: 'normal', std: INIT_STD };
  // GPT-2: the projections that write into the residual stream start smaller, one factor of
  // 1/sqrt(2·layers) for the two such additions per block, so the stream's variance does not grow with depth.
  const residual: Init = { kind: 'normal', std: INIT_STD / Math.sqrt(2 * layers) };
  const add = (name: string, shape: number[], prunable: boolean, init: Init) => params.push({ name, shape, prunable, init });
  const linear = (name: string, inputs: number, outputs: number, init: Init) => {
    add(`${name}.kernel`, [inputs, outputs], true, init);
    add(`${name}.bias`, [outputs], false, { kind: 'zeros' });
  };
  const layerNorm = (name: string) => {
    add(`${name}.gain`, [width], false, { kind: 'ones' });
    add(`${name}.bias`, [width], false, { kind: 'zeros' });
  };

  add('wte', [vocabSize, width], false, normal);
  add('wpe', [blockSize, width], false, normal);
  for (let l = 0; l < layers; l++) {
    layerNorm(`h.${l}.ln_1`);
    linear(`h.${l}.attn.query`, width, width, normal);
    linear(`h.${l}.attn.key`, width, width, normal);
    linear(`h.${l}.attn.value`, width, width, normal);
    linear(`h.${l}.attn.output`, width, width, residual);
    layerNorm(`h.${l}.ln_2`);
    linear(`h.${l}.mlp.fc`, width, 4 * width, normal);
    linear(`h.${l}.mlp.proj`, 4 * width, width, residual);
  }
  layerNorm('ln_f');
  // The LM head is its own matrix (not tied to wte, unlike nanoGPT) and carries no mask: it is the
  // output layer, which docs/ALGORITHM.md leaves dense like the embeddings. No bias, as in nanoGPT.
  add('lm_head.kernel', [width, vocabSize], false, normal);

  const indexOf = new Map(params.map((p, i) => [p.name, i]));

  /** Logits [count · T, vocab] for a batch of count sequences of T ≤ blockSize tokens. */
  function forward(weights: tf.Tensor[], batch: Examples, _noiseSeed: number | null): tf.Tensor2D {
    // No dropout: noiseSeed is unused (small char-level models train well without it).
    const w = (name: string) => weights[indexOf.get(name) as number] as tf.Tensor2D;
    const count = batch.count;
    const steps = batch.x.length / count;
    if (!Number.isInteger(steps) || steps < 1 || steps > blockSize) {
      throw new Error(`gpt: a batch of ${count} sequences has ${batch.x.length} tokens; each needs 1 to ${blockSize}`);
    }
    const dense = (x: tf.Tensor2D, name: string) =>
      tf.fused.matMul({ a: x, b: w(`${name}.kernel`), bias: w(`${name}.bias`) }) as tf.Tensor2D;
    const norm = (x: tf.Tensor2D, name: string) => layerNormalize(x, w(`${name}.gain`), w(`${name}.bias`));
    const mask = causalMask(steps);

    /**
     * Causal self-attention: each head attends over the positions up to its own by scaled dot
     * product. A head owns `headSize` columns of the query, key and value projections and as many
     * rows of the output projection; slicing the (small) weights per head keeps the (large)
     * activations contiguous, so no transposes are needed.
     */
    const attention = (x: tf.Tensor2D, name: string) => {
      let out = w(`${name}.output.bias`) as tf.Tensor;
      for (let head = 0; head < heads; head++) {
        const first = head * headSize;
        const project = (projection: string) => {
          const kernel = tf.slice(w(`${name}.${projection}.kernel`), [0, first], [width, headSize]);
          const bias = tf.slice(w(`${name}.${projection}.bias`), [first], [headSize]);
          return tf.reshape(tf.fused.matMul({ a: x, b: kernel, bias }), [count, steps, headSize]);
        };
        const query = tf.mul(project('query'), 1 / Math.sqrt(headSize));
        const scores = tf.add(tf.matMul(query, project('key'), false, true), mask);
        const mixed = tf.reshape(tf.matMul(softmax(scores as tf.Tensor3D), project('value')), [count * steps, headSize]) as tf.Tensor2D;
        out = tf.add(out, tf.matMul(mixed, tf.slice(w(`${name}.output.kernel`), [first, 0], [headSize, width])));
      }
      return out as tf.Tensor2D;
    };
    const mlp = (x: tf.Tensor2D, name: string) => dense(gelu(dense(x, `${name}.fc`)), `${name}.proj`);

    // The residual stream: one row of `width` per token, sequence-major. The token embedding is a
    // one-hot product rather than tf.gather: gather's gradient (UnsortedSegmentSum) on the cpu
    // kernels costs vocab × tokens × width, the product's a small matrix multiply.
    const tokens = tf.oneHot(tf.tensor1d(Int32Array.from(batch.x), 'int32'), vocabSize, 1, 0, 'float32');
    const embedded = tf.add(tf.reshape(tf.matMul(tokens, w('wte')), [count, steps, width]), tf.slice(w('wpe'), [0, 0], [steps, width]));
    let x = tf.reshape(embedded, [count * steps, width]) as tf.Tensor2D;
    for (let l = 0; l < layers; l++) {
      x = tf.add(x, attention(norm(x, `h.${l}.ln_1`), `h.${l}.attn`));
      x = tf.add(x, mlp(norm(x, `h.${l}.ln_2`), `h.${l}.mlp`));
    }
    return tf.matMul(norm(x, 'ln_f'), w('lm_head.kernel'));
  }

  return { kind: 'gpt', params, forward, requiredKernels: [] };
}

/**
 * Softmax over the last axis, with its gradient y·(dy − Σ dy·y) written out: the cpu backend's
 * Softmax kernel is slow, and autodiff through the max would add a needless pass (the shift by
 * the max does not change the result, so it has no gradient).
 */
const softmaxWithGradient = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, save] = inputs as [tf.Tensor, tf.GradSaveFunc];
  const exps = tf.exp(tf.sub(x, tf.max(x, -1, true)));
  const y = tf.div(exps, tf.sum(exps, -1, true));
  save([y]);
  const gradFunc = (dy: tf.Tensor, [saved]: tf.Tensor[]) => {
    const dyTimesY = tf.mul(dy, saved);
    return tf.sub(dyTimesY, tf.mul(tf.sum(dyTimesY, -1, true), saved));
  };
  return { value: y, gradFunc };
});
const softmax = (x: tf.Tensor3D) => softmaxWithGradient(x) as tf.Tensor3D;

/** LayerNorm over each row: (x − mean) / sqrt(var + ε) · gain + bias. */
function layerNormalize(x: tf.Tensor2D, gain: tf.Tensor, bias: tf.Tensor): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, -1, true);
  const normalized = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, LAYER_NORM_EPSILON)));
  return tf.add(tf.mul(normalized, gain), bias);
}

/** GELU, GPT-2's tanh form: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). Built from ops every backend has. */
function gelu(x: tf.Tensor2D): tf.Tensor2D {
  const inner = tf.mul(tf.add(x, tf.mul(tf.mul(tf.mul(x, x), x), 0.044715)), Math.sqrt(2 / Math.PI));
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

/** [T, T] additive mask: 0 where key position ≤ query position, MASKED_SCORE after it. */
function causalMask(steps: number): tf.Tensor2D {
  const values = new Float32Array(steps * steps);
  for (let query = 0; query < steps; query++) values.fill(MASKED_SCORE, query * steps + query + 1, (query + 1) * steps);
  return tf.tensor2d(values, [steps, steps]);
}
