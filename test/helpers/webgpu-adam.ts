// Run as a child process with the Vulkan driver in its environment (webgpu.test.ts): five Adam(W)
// steps of a replica's state on webgpu (the WGSL kernels) and of the scalar reference on host
// arrays, from the same values; prints one JSON line with the largest difference and whether the
// pruned positions stayed exactly zero.
import * as tf from '@tensorflow/tfjs-core';
import { adamCoefficients, adamUpdate, type AdamSettings } from '../../src/training/adam.ts';
import { DeviceState } from '../../src/training/device-state.ts';
import { selectBackend } from '../../src/training/engine.ts';
import { Rng } from '../../src/training/rng.ts';

await selectBackend('webgpu');
const rng = new Rng(5);
const size = 3 * 1000 + 7; // not a whole number of workgroups
const weights = Float32Array.from({ length: size }, (_, i) => (i % 4 === 0 ? 0 : rng.uniform() - 0.5)); // every fourth pruned
const state = new DeviceState([{ name: 'layer.kernel', shape: [size], prunable: true, init: { kind: 'zeros' } }], [weights]);
const reference = { w: weights.slice(), m: new Float32Array(size), v: new Float32Array(size) };
const settings: AdamSettings = { learningRate: 0.01, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1 };
for (let step = 1; step <= 5; step++) {
  const gradient = Float32Array.from({ length: size }, (_, i) => (i % 4 === 0 ? 0 : rng.uniform() - 0.5));
  const scale = 1 / 32;
  state.adam(0, tf.tensor1d(gradient), scale, step, settings);
  adamUpdate(reference.w, reference, gradient, null, adamCoefficients(settings, scale, step));
}
const host = await state.read();
let worst = 0;
let prunedNonZero = 0;
for (const [key, want] of [
  ['weights', reference.w],
  ['m', reference.m],
  ['v', reference.v],
] as const) {
  const got = host[key][0];
  const largest = want.reduce((a, b) => Math.max(a, Math.abs(b)), 0);
  for (let i = 0; i < size; i++) {
    worst = Math.max(worst, Math.abs(got[i] - want[i]) / largest);
    if (i % 4 === 0 && got[i] !== 0) prunedNonZero++;
  }
}
process.stdout.write(`${JSON.stringify({ backend: tf.getBackend(), worst, prunedNonZero })}\n`);
