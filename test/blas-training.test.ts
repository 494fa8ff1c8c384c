// A few optimisation steps of a tiny MLP and a tiny CNN (tfjs-core ops, softmax cross-entropy via
// logSoftmax) on the blas and the cpu backends from the same seeded start: the losses of every step and
// the final weights must agree to within 1e-4 relative (max(1, |value|) scale), for SGD and for Adam.
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { isBlasAvailable, registerBlasBackend } from '@occam/blas';
// Like the engine: no "install the node backend" banner in the test output.
tf.env().set('PROD', true);

const available = isBlasAvailable();
const TOLERANCE = 1e-4;

function seededValues(seed: number, length: number, scale: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 2 ** 32 - 0.5) * 2 * scale;
  });
}

interface Network {
  /** name → [shape, initial values] */
  params: Record<string, [number[], Float32Array]>;
  inputShape: number[];
  logits(params: Record<string, tf.Variable>, x: tf.Tensor): tf.Tensor2D;
}

const BATCH = 16;
const CLASSES = 4;

const mlp: Network = {
  inputShape: [BATCH, 20],
  params: {
    w1: [[20, 32], seededValues(1, 20 * 32, 0.3)],
    b1: [[32], seededValues(2, 32, 0.1)],
    w2: [[32, CLASSES], seededValues(3, 32 * CLASSES, 0.3)],
    b2: [[CLASSES], seededValues(4, CLASSES, 0.1)],
  },
  logits: (p, x) => tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(x, p.w1), p.b1)), p.w2), p.b2) as tf.Tensor2D,
};

const cnn: Network = {
  inputShape: [BATCH, 8, 8, 1],
  params: {
    k1: [[3, 3, 1, 4], seededValues(5, 36, 0.4)],
    c1: [[4], seededValues(6, 4, 0.1)],
    k2: [[3, 3, 4, 6], seededValues(7, 216, 0.3)],
    w: [[3 * 3 * 6, CLASSES], seededValues(8, 54 * CLASSES, 0.3)],
    b: [[CLASSES], seededValues(9, CLASSES, 0.1)],
  },
  logits: (p, x) => {
    const h1 = tf.relu(tf.add(tf.conv2d(x as tf.Tensor4D, p.k1 as tf.Tensor4D, 1, 'same'), p.c1)) as tf.Tensor4D;
    const h2 = tf.relu(tf.conv2d(h1, p.k2 as tf.Tensor4D, 2, 'valid'));
    return tf.add(tf.matMul(tf.reshape(h2, [BATCH, 54]), p.w), p.b) as tf.Tensor2D;
  },
};

/** Trains `network` for `steps` steps on `backend`; returns each step's loss and the final weights. */
async function train(backend: string, network: Network, optimizerName: 'sgd' | 'adam', steps: number) {
  await tf.setBackend(backend);
  const inputSize = network.inputShape.reduce((a, b) => a * b, 1);
  const x = tf.tensor(seededValues(10, inputSize, 1), network.inputShape);
  const labels = tf.oneHot(
    tf.tensor1d(
      Int32Array.from({ length: BATCH }, (_, i) => (i * 7) % CLASSES),
      'int32',
    ),
    CLASSES,
  );
  const params = Object.fromEntries(
    Object.entries(network.params).map(([name, [shape, init]]) => [name, tf.variable(tf.tensor(init, shape), true, `${backend}-${name}`)]),
  );
  const optimizer = optimizerName === 'sgd' ? tf.train.sgd(0.1) : tf.train.adam(0.01);
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const loss = optimizer.minimize(() => {
      const logProbabilities = tf.logSoftmax(network.logits(params, x));
      return tf.neg(tf.mean(tf.sum(tf.mul(labels, logProbabilities), 1))) as tf.Scalar;
    }, true);
    losses.push(loss!.dataSync()[0]);
    loss!.dispose();
  }
  const weights = Object.fromEntries(Object.entries(params).map(([name, v]) => [name, Float32Array.from(v.dataSync())]));
  optimizer.dispose();
  tf.dispose([x, labels, ...Object.values(params)]);
  return { losses, weights };
}

function expectNear(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string): void {
  expect(actual.length, label).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs(actual[i] - expected[i]);
    if (!(error <= TOLERANCE * Math.max(1, Math.abs(expected[i])))) {
      expect.fail(`${label}[${i}]: blas ${actual[i]} vs cpu ${expected[i]}`);
    }
  }
}

describe.skipIf(!available)('training on blas matches cpu', () => {
  for (const [networkName, network] of [
    ['mlp', mlp],
    ['cnn', cnn],
  ] as const) {
    for (const optimizerName of ['sgd', 'adam'] as const) {
      it(`${networkName} with ${optimizerName}`, async () => {
        registerBlasBackend({ threads: 0 });
        const steps = 6;
        const onCpu = await train('cpu', network, optimizerName, steps);
        const onBlas = await train('blas', network, optimizerName, steps);
        expectNear(onBlas.losses, onCpu.losses, 'loss per step');
        expect(onCpu.losses[steps - 1]).toBeLessThan(onCpu.losses[0]); // it does learn
        for (const name of Object.keys(network.params)) expectNear(onBlas.weights[name], onCpu.weights[name], name);
      });
    }
  }
});
