// The blas backend against the cpu backend: run the same computation on each and compare, with the
// tolerance of float32 sums taken in another order. Shared by the kernel tests and the fused ops' tests.
import { expect } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';

/** mulberry32: a small seeded generator, so every run tests the same shapes and values. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Runs `compute` on cpu and on blas (tensors made inside it live on that backend) and returns both results. */
export async function onBoth(compute: () => tf.Tensor | tf.Tensor[]): Promise<{ cpu: Float32Array[]; blas: Float32Array[] }> {
  const run = async (backend: string) => {
    await tf.setBackend(backend);
    return tf
      .tidy(() => [compute()].flat())
      .map((tensor) => {
        const data = tensor.dataSync() as Float32Array;
        tensor.dispose();
        return data;
      });
  };
  return { cpu: await run('cpu'), blas: await run('blas') };
}

export function expectClose(actual: Float32Array, expected: Float32Array, dotLength: number, label: string): void {
  expect(actual.length, label).toBe(expected.length);
  let scale = 1;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  const tolerance = 1e-5 * Math.sqrt(Math.max(1, dotLength)) * scale;
  let worst = 0;
  let worstIndex = -1;
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= worst)) {
      worst = error;
      worstIndex = i;
    }
  }
  if (!(worst <= tolerance)) {
    expect.fail(
      `${label}: |blas − cpu| = ${worst} at ${worstIndex} (blas ${actual[worstIndex]}, cpu ${expected[worstIndex]}) > ${tolerance}`,
    );
  }
}

export async function expectSameOnBoth(compute: () => tf.Tensor | tf.Tensor[], dotLength: number, label: string) {
  const { cpu, blas } = await onBoth(compute);
  cpu.forEach((expected, i) => expectClose(blas[i], expected, dotLength, `${label} [output ${i}]`));
}
