// What transformer users read beside the loss: model FLOPs per token (nanoGPT's and PaLM's
// estimate) and the backend's measured float32 matrix-product rate, the peak that model FLOPs
// utilisation (MFU) is stated against.
import * as tf from '@tensorflow/tfjs-core';

/** A parameter as the estimate needs it. */
interface Layer {
  name: string;
  shape: number[];
}

/**
 * Training FLOPs per token of a GPT: 6 per weight (forward 2, backward 4) plus attention's
 * 12 · layers · blockSize · width (PaLM appendix B, nanoGPT's estimate_mfu). Position embeddings
 * are not weights a token multiplies, so they are not counted; masked weights are, since the
 * kernels multiply them too (as zeros).
 */
export function gptFlopsPerToken(layers: readonly Layer[], config: { layers: number; blockSize: number; width: number }): number {
  const weights = layers.filter((l) => l.name !== 'wpe').reduce((n, l) => n + l.shape.reduce((a, b) => a * b, 1), 0);
  return 6 * weights + 12 * config.layers * config.blockSize * config.width;
}

/** What turns a step rate into tokens/s and MFU: null for models that do not read tokens. */
export interface TokenThroughput {
  /** Tokens trained per global step (batch × block). */
  tokensPerStep: number;
  flopsPerToken: number;
}

export function tokenThroughput(
  config: { model: string; batchSize: number; layers: number; blockSize: number; width: number },
  layers: readonly Layer[],
): TokenThroughput | null {
  if (config.model !== 'gpt') return null;
  return { tokensPerStep: config.batchSize * config.blockSize, flopsPerToken: gptFlopsPerToken(layers, config) };
}

/** Model FLOPs utilisation: achieved model FLOPs per second over the summed peak; null without a peak. */
export function flopsUtilization(tokensPerSecond: number, flopsPerToken: number, peakFlops: number): number | null {
  return peakFlops > 0 && Number.isFinite(tokensPerSecond) ? (tokensPerSecond * flopsPerToken) / peakFlops : null;
}

/**
 * FLOP/s of a square float32 matrix product on the current backend, the best of a few timed
 * runs after a warm-up (about a second on a CPU). Smaller on the slow reference kernels (cpu, wasm).
 */
export async function measureMatmulFlops(): Promise<number> {
  const n = ['cpu', 'wasm'].includes(tf.getBackend()) ? 128 : 512;
  const a = tf.randomUniform([n, n]);
  const b = tf.randomUniform([n, n]);
  let best = Infinity;
  for (let run = 0; run < 4; run++) {
    const started = performance.now();
    const product = tf.matMul(a, b);
    await product.data(); // a device backend computes asynchronously: wait for the values
    product.dispose();
    if (run > 0) best = Math.min(best, performance.now() - started);
  }
  tf.dispose([a, b]);
  return (2 * n ** 3) / (best / 1000);
}
