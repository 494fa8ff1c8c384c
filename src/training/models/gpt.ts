// A GPT decoder in nanoGPT's shape: token + position embeddings, `layers` pre-norm blocks of
// causal multi-head self-attention (one fused query/key/value projection, all heads at once:
// attention.ts) and a GELU MLP (4× wide), a final LayerNorm and the LM head (optionally tied to the
// token embedding). Occam masks the attention projections (qkv, output) and the two MLP projections.
import * as tf from '@tensorflow/tfjs-core';
import type { Examples } from '../data/source.ts';
import { selfAttention } from './attention.ts';
import { gelu, layerNorm } from './fused.ts';
import { dropoutValues, type Init, type Model, type ParamSpec } from './model.ts';

export interface GptOptions {
  vocabSize: number;
  /** Longest context; a batch may be shorter (sampling starts from a short prompt). */
  blockSize: number;
  layers: number;
  heads: number;
  width: number;
  /** Dropout after the embeddings, on the attention weights and on both residual branches (nanoGPT's four places). */
  dropout: number;
  /** Biases in the linear layers and LayerNorms (nanoGPT's `bias`). */
  bias: boolean;
  /** The LM head is the token embedding, transposed (GPT-2's weight tying). */
  tieEmbeddings: boolean;
}

const INIT_STD = 0.02;
const LAYER_NORM_EPSILON = 1e-5;

export function createGpt(options: GptOptions): Model {
  const { vocabSize, blockSize, layers, heads, width, dropout, bias, tieEmbeddings } = options;
  if (width % heads !== 0) throw new Error(`gpt: heads (${heads}) must divide width (${width})`);
  const headSize = width / heads;
  const params: ParamSpec[] = [];
  const normal: Init = { kind: 'normal', std: INIT_STD };
  // GPT-2: the projections that write into the residual stream start smaller, one factor of
  // 1/sqrt(2·layers) for the two such additions per block, so the stream's variance does not grow with depth.
  const residual: Init = { kind: 'normal', std: INIT_STD / Math.sqrt(2 * layers) };
  const add = (name: string, shape: number[], prunable: boolean, init: Init) => params.push({ name, shape, prunable, init });
  const addLinear = (name: string, inputs: number, outputs: number, init: Init) => {
    add(`${name}.kernel`, [inputs, outputs], true, init);
    if (bias) add(`${name}.bias`, [outputs], false, { kind: 'zeros' });
  };
  const addLayerNorm = (name: string) => {
    add(`${name}.gain`, [width], false, { kind: 'ones' });
    if (bias) add(`${name}.bias`, [width], false, { kind: 'zeros' });
  };

  add('wte', [vocabSize, width], false, normal);
  add('wpe', [blockSize, width], false, normal);
  for (let l = 0; l < layers; l++) {
    addLayerNorm(`h.${l}.ln_1`);
    // Query, key and value side by side: columns [0, w) query, [w, 2w) key, [2w, 3w) value.
    addLinear(`h.${l}.attn.qkv`, width, 3 * width, normal);
    addLinear(`h.${l}.attn.output`, width, width, residual);
    addLayerNorm(`h.${l}.ln_2`);
    addLinear(`h.${l}.mlp.fc`, width, 4 * width, normal);
    addLinear(`h.${l}.mlp.proj`, 4 * width, width, residual);
  }
  addLayerNorm('ln_f');
  // The LM head carries no mask: it is the output layer, which docs/ALGORITHM.md leaves dense like
  // the embeddings. No bias, as in nanoGPT.
  if (!tieEmbeddings) add('lm_head.kernel', [width, vocabSize], false, normal);

  const indexOf = new Map(params.map((p, i) => [p.name, i]));

  /** Logits [count · T, vocab] for a batch of count sequences of T ≤ blockSize tokens. */
  function forward(weights: tf.Tensor[], batch: Examples, noiseSeed: number | null): tf.Tensor2D {
    const w = (name: string) => weights[indexOf.get(name) as number] as tf.Tensor2D;
    const maybe = (name: string) => (indexOf.has(name) ? w(name) : undefined);
    const count = batch.count;
    const steps = batch.x.length / count;
    if (!Number.isInteger(steps) || steps < 1 || steps > blockSize) {
      throw new Error(`gpt: a batch of ${count} sequences has ${batch.x.length} tokens; each needs 1 to ${blockSize}`);
    }
    const dense = (x: tf.Tensor, name: string) =>
      tf.fused.matMul({ a: x as tf.Tensor2D, b: w(`${name}.kernel`), bias: maybe(`${name}.bias`) }) as tf.Tensor2D;
    const norm = (x: tf.Tensor2D, name: string) =>
      layerNorm(x, w(`${name}.gain`) as tf.Tensor as tf.Tensor1D, maybe(`${name}.bias`) as tf.Tensor1D | undefined, LAYER_NORM_EPSILON);
    // Each dropout site has its own salt; a sample's noise depends on its id and the step only.
    let site = 0;
    const drop = <T extends tf.Tensor>(x: T): T => {
      site++;
      if (noiseSeed === null || dropout === 0) return x;
      return tf.mul(x, tf.tensor(dropoutValues(batch.ids, noiseSeed, site, x.size / count, dropout), x.shape)) as T;
    };
    /** Dropout noise for attention weights laid out [heads · count, T, T]: each sample's noise, placed head-major. */
    const attentionNoise = (): Float32Array | null => {
      site++;
      if (noiseSeed === null || dropout === 0) return null;
      const perHead = steps * steps;
      const noise = dropoutValues(batch.ids, noiseSeed, site, heads * perHead, dropout);
      const placed = new Float32Array(noise.length);
      for (let sample = 0; sample < count; sample++)
        for (let head = 0; head < heads; head++) {
          const from = (sample * heads + head) * perHead;
          placed.set(noise.subarray(from, from + perHead), (head * count + sample) * perHead);
        }
      return placed;
    };

    // Causal self-attention, all heads at once, from the fused projection (attention.ts).
    const attention = (x: tf.Tensor2D, name: string) =>
      dense(selfAttention(dense(x, `${name}.qkv`), { count, steps, heads, headSize }, attentionNoise()), `${name}.output`);
    const mlp = (x: tf.Tensor2D, name: string) => dense(gelu(dense(x, `${name}.fc`)), `${name}.proj`);

    // The residual stream: one row of `width` per token, sequence-major.
    // A full block takes the whole position table: no slice, whose gradient would be a padding op.
    const positions = steps === blockSize ? w('wpe') : tf.slice(w('wpe'), [0, 0], [steps, width]);
    const embedded = tf.add(tf.reshape(embed(w('wte'), batch.x), [count, steps, width]), positions);
    let x = drop(tf.reshape(embedded, [count * steps, width])) as tf.Tensor2D;
    for (let l = 0; l < layers; l++) {
      x = tf.add(x, drop(attention(norm(x, `h.${l}.ln_1`), `h.${l}.attn`)));
      x = tf.add(x, drop(mlp(norm(x, `h.${l}.ln_2`), `h.${l}.mlp`)));
    }
    const final = norm(x, 'ln_f');
    return tieEmbeddings ? tf.matMul(final, w('wte'), false, true) : tf.matMul(final, w('lm_head.kernel'));
  }

  return { kind: 'gpt', params, forward, requiredKernels: [] };
}

/**
 * The embedding rows of `tokens`, with the gradient scattered back to those rows (duplicates
 * summed). tf.gather's own gradient (UnsortedSegmentSum) costs vocab × tokens × width on the cpu
 * kernels; the scatter costs tokens × width, whatever the vocabulary.
 */
function embed(table: tf.Tensor2D, tokens: Int32Array | Float32Array): tf.Tensor2D {
  const ids = tf.tensor1d(Int32Array.from(tokens), 'int32');
  const lookup = tf.customGrad((...inputs: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [rows, save] = inputs as [tf.Tensor2D, tf.GradSaveFunc];
    save([ids]); // kept for the backward pass, which runs after the forward pass's tidy has ended
    const gradFunc = (dy: tf.Tensor, [saved]: tf.Tensor[]) => tf.scatterND(tf.reshape(saved, [-1, 1]), dy, rows.shape);
    return { value: tf.gather(rows, ids), gradFunc };
  });
  return lookup(table) as tf.Tensor2D;
}
