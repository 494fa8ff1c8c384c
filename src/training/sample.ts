// Text from a trained GPT (`occam sample RUN_DIR`): loads the run's exported model (the best
// round's weights and masks, model/model.safetensors + model.json) and its vocabulary, then draws
// one token at a time with temperature and top-k from a seeded stream.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveConfig, type OccamConfig } from '../config.ts';
import { corpusText } from './data/text.ts';
import { CharTokenizer } from './data/tokenizer.ts';
import { createGpt } from './models/gpt.ts';
import type { Model } from './models/model.ts';
import { Rng } from './rng.ts';
import { decodeSafetensors } from '../storage/safetensors.ts';
import { maskName } from '../storage/state-format.ts';

/** Where a run keeps its vocabulary: beside the exported model, so model/ is self-contained. */
export const VOCABULARY_FILE = join('model', 'vocab.json');

export interface SampleOptions {
  /** Tokens to generate. */
  length: number;
  /** Divides the logits; 0 always picks the most likely token. */
  temperature: number;
  /** Draw only from the k most likely tokens (ties at the k-th kept); 0 = all. */
  topK: number;
  seed: number;
  /** Text the generation continues; empty starts from a newline. */
  prompt: string;
}

export const SAMPLE_DEFAULTS: SampleOptions = { length: 500, temperature: 0.8, topK: 0, seed: 1, prompt: '' };

export interface TrainedGpt {
  model: Model;
  weights: tf.Tensor[];
  tokenizer: CharTokenizer;
  config: OccamConfig;
  /** The round whose model this is. */
  round: number;
}

/** Writes the vocabulary of a run (called when training starts; sampling reads it). */
export function saveVocabulary(runDir: string, tokenizer: CharTokenizer): void {
  mkdirSync(join(runDir, 'model'), { recursive: true });
  writeFileSync(join(runDir, VOCABULARY_FILE), `${JSON.stringify(tokenizer.vocabulary)}\n`);
}

/** The run's exported GPT, ready to sample; one clear error when the run has none. */
export function loadTrainedGpt(runDir: string): TrainedGpt {
  const manifestPath = join(runDir, 'model', 'model.json');
  const weightsPath = join(runDir, 'model', 'model.safetensors');
  if (!existsSync(manifestPath) || !existsSync(weightsPath))
    throw new Error(`${runDir} has no exported model (model/model.json and model/model.safetensors); has a round finished?`);
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { config: Partial<OccamConfig>; best?: { round?: number } };
  const config = resolveConfig(manifest.config);
  if (config.model !== 'gpt') throw new Error(`${runDir} holds a ${config.model} model; sampling needs a gpt`);
  const tokenizer = readVocabulary(runDir, config);
  const model = createGpt({
    vocabSize: tokenizer.size,
    blockSize: config.blockSize,
    layers: config.layers,
    heads: config.heads,
    width: config.width,
  });

  const { tensors } = decodeSafetensors(readFileSync(weightsPath));
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const weights = model.params.map((param) => {
    const stored = byName.get(param.name);
    if (!stored || !(stored.data instanceof Float32Array)) throw new Error(`${weightsPath} has no float32 tensor '${param.name}'`);
    if (stored.shape.join(',') !== param.shape.join(','))
      throw new Error(`${weightsPath}: '${param.name}' has shape [${stored.shape}], the model needs [${param.shape}]`);
    // Pruned weights are stored as zeros already; applying the mask keeps that true for any file.
    const mask = byName.get(maskName(param.name))?.data;
    const values = Float32Array.from(stored.data, (v, i) => (mask && mask[i] === 0 ? 0 : v));
    return tf.tensor(values, param.shape, 'float32');
  });
  return { model, weights, tokenizer, config, round: manifest.best?.round ?? -1 };
}

/** Generates `length` tokens after the prompt; returns them as text (without the prompt). */
export async function generate(gpt: TrainedGpt, options: SampleOptions): Promise<string> {
  const { model, weights, tokenizer, config } = gpt;
  const rng = new Rng(options.seed);
  const context = options.prompt ? Array.from(tokenizer.encode(options.prompt)) : [startToken(tokenizer)];
  const generated: number[] = [];
  for (let i = 0; i < options.length; i++) {
    // The model sees at most blockSize tokens: the latest ones.
    const window = Int32Array.from(context.slice(-config.blockSize));
    const batch = { x: window, y: new Int32Array(0), count: 1, ids: new Uint32Array(1) };
    const last = tf.tidy(() => tf.slice(model.forward(weights, batch, null), [window.length - 1, 0], [1, tokenizer.size]));
    const logits = await last.data();
    last.dispose();
    const next = pickToken(logits, options.temperature, options.topK, rng);
    context.push(next);
    generated.push(next);
  }
  return tokenizer.decode(generated);
}

/** One draw from softmax(logits / temperature) restricted to the top k; temperature 0 is argmax. */
export function pickToken(logits: ArrayLike<number>, temperature: number, topK: number, rng: Rng): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (temperature === 0) return best;
  const cutoff = topK > 0 && topK < logits.length ? Array.from(logits).sort((a, b) => b - a)[topK - 1] : -Infinity;
  const weights = Array.from(logits, (v) => (v >= cutoff ? Math.exp((v - logits[best]) / temperature) : 0));
  let remaining = rng.uniform() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; i++) {
    remaining -= weights[i];
    if (remaining < 0) return i;
  }
  return best;
}

/** A run's vocabulary: model/vocab.json, else rebuilt from the corpus its config names. */
function readVocabulary(runDir: string, config: OccamConfig): CharTokenizer {
  const path = join(runDir, VOCABULARY_FILE);
  if (existsSync(path)) {
    const vocabulary = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    if (!Array.isArray(vocabulary) || !vocabulary.every((c) => typeof c === 'string'))
      throw new Error(`${path} is not a list of characters`);
    return new CharTokenizer(vocabulary as string[]);
  }
  // The vocabulary is a function of the corpus alone, so rebuilding it gives the training one.
  return CharTokenizer.fromText(corpusText(config).text);
}

function startToken(tokenizer: CharTokenizer): number {
  const newline = tokenizer.vocabulary.indexOf('\n');
  return Math.max(newline, 0);
}
