// Text from a trained GPT (`occam sample RUN_DIR`): loads the run's exported model (the best
// round's weights and masks, trained.ts) and its vocabulary, then draws one token at a time with
// temperature and top-k from a seeded stream.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OccamConfig } from '../config.ts';
import { MODEL_FILES } from '../storage/model-dir.ts';
import { corpusText } from './data/text.ts';
import { CharTokenizer, type Tokenizer, tokenizerFrom } from './data/tokenizer.ts';
import type { Model } from './models/model.ts';
import { Rng } from './rng.ts';
import { loadTrainedModel } from './trained.ts';

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
  tokenizer: Tokenizer;
  config: OccamConfig;
  /** The round whose model this is. */
  round: number;
}

/** The run's exported GPT, ready to sample; one clear error when the run has none. */
export function loadTrainedGpt(runDir: string): TrainedGpt {
  const trained = loadTrainedModel(runDir);
  if (trained.config.model !== 'gpt') throw new Error(`${runDir} holds a ${trained.config.model} model; sampling needs a gpt`);
  const tokenizer = readVocabulary(runDir, trained.config);
  return { model: trained.model, weights: trained.weights, tokenizer, config: trained.config, round: trained.manifest.best.round };
}

/** Generates `length` tokens after the prompt; returns them as text (without the prompt). */
export async function generate(gpt: TrainedGpt, options: SampleOptions): Promise<string> {
  const { model, weights, tokenizer, config } = gpt;
  const rng = new Rng(options.seed);
  const context = options.prompt ? Array.from(tokenizer.encode(options.prompt)) : [tokenizer.startToken];
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
function readVocabulary(runDir: string, config: OccamConfig): Tokenizer {
  const path = join(runDir, 'model', MODEL_FILES.vocabulary);
  if (existsSync(path)) {
    let description: unknown;
    try {
      description = JSON.parse(readFileSync(path, 'utf8'));
    } catch {
      throw new Error(`${path} is not valid JSON`);
    }
    return tokenizerFrom(description, path);
  }
  if (config.dataset === 'tokens') throw new Error(`${path} is missing: the run's vocabulary is in ${config.dataPath}/meta.json`);
  // The vocabulary is a function of the corpus alone, so rebuilding it gives the training one.
  return CharTokenizer.fromText(corpusText(config).text);
}
