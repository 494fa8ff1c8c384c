// The blas backend's kernels against the cpu backend's, on seeded random shapes: matrix products (all
// transposes, batch and broadcast batch dims, fused bias/activations), convolutions and their
// gradients (strides, same/valid/explicit padding, dilations), the element-wise kernels and sums.
// Tolerance for products: |blas − cpu| ≤ 1e-5·√K·max(1, max|cpu|), K the length of each dot product
// (float32 sums in a different order); element-wise kernels must match exactly.
import { execFileSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { blasLibraryInfo, isBlasAvailable, registerBlasBackend } from '@occam/blas';
import { expectClose, expectSameOnBoth, onBoth, seededRandom } from './helpers/on-both.ts';
// Like the engine: no "install the node backend" banner in the test output.
tf.env().set('PROD', true);

const available = isBlasAvailable();

const random = seededRandom(20240611);
const integer = (low: number, high: number) => low + Math.floor(random() * (high - low + 1));
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
const values = (shape: number[]) => Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * random() - 1);

describe.skipIf(!available)('blas backend kernels', () => {
  beforeAll(() => {
    registerBlasBackend({ threads: 0 });
  });

  it('registers idempotently and reports its library', async () => {
    registerBlasBackend({ threads: 0 });
    registerBlasBackend({ threads: 1 });
    expect(await tf.setBackend('blas')).toBe(true);
    const info = blasLibraryInfo();
    expect(info?.path).toBeTruthy();
    expect(tf.getKernel('Conv2D', 'blas')).toBeDefined();
    expect(tf.getKernel('Transpose', 'blas')).toBeDefined(); // copied from cpu
  });

  it('BatchMatMul: every transpose combination, with and without batch dimensions', async () => {
    const batchShapes: [number[], number[]][] = [
      [[], []],
      [[3], [3]],
      [
        [2, 3],
        [2, 3],
      ],
      [[4], []], // a stack against one matrix (folded into one tall product)
      [[], [4]],
      [[1], [5]],
      [[2, 1], [3]], // broadcast on both sides: out batch [2, 3]
      [
        [3, 1, 2],
        [4, 1],
      ],
    ];
    for (const [aBatch, bBatch] of batchShapes) {
      for (const transposeA of [false, true]) {
        for (const transposeB of [false, true]) {
          const [m, n, k] = [integer(1, 37), integer(1, 37), pick([1, 7, 64, 130])];
          const aShape = [...aBatch, ...(transposeA ? [k, m] : [m, k])];
          const bShape = [...bBatch, ...(transposeB ? [n, k] : [k, n])];
          const aValues = values(aShape);
          const bValues = values(bShape);
          const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(aBatch, bBatch);
          const label = `a ${aShape} b ${bShape} tA ${transposeA} tB ${transposeB}`;
          // The reference broadcasts explicitly: the cpu kernel indexes batches modulo their count,
          // which is only right when one side's batch is 1 or both are equal.
          const { cpu, blas } = await onBoth(() => {
            const a = tf.tensor(aValues, aShape);
            const b = tf.tensor(bValues, bShape);
            if (tf.getBackend() === 'blas') return tf.matMul(a, b, transposeA, transposeB);
            const fullA = tf.broadcastTo(a, [...outBatch, ...aShape.slice(-2)]);
            const fullB = tf.broadcastTo(b, [...outBatch, ...bShape.slice(-2)]);
            return tf.matMul(fullA, fullB, transposeA, transposeB);
          });
          expectClose(blas[0], cpu[0], k, label);
        }
      }
    }
  });

  it('BatchMatMul: larger products (multi-threaded GEMM) and empty shapes', async () => {
    const [m, k, n] = [128, 300, 257];
    const aValues = values([m, k]);
    const bValues = values([k, n]);
    await expectSameOnBoth(() => tf.matMul(tf.tensor2d(aValues, [m, k]), tf.tensor2d(bValues, [k, n])), k, 'large');
    // BLAS adds the product onto the bias rows, over several blocks of k at this size.
    const [deep, biasValues] = [values([m, 1000]), values([n])];
    const wide = values([1000, n]);
    await expectSameOnBoth(
      () => tf.fused.matMul({ a: tf.tensor2d(deep, [m, 1000]), b: tf.tensor2d(wide, [1000, n]), bias: tf.tensor1d(biasValues) }),
      1000,
      'large, with a bias row',
    );
    await expectSameOnBoth(() => tf.matMul(tf.zeros([3, 0]), tf.zeros([0, 4])), 0, 'k = 0');
    await expectSameOnBoth(() => tf.matMul(tf.zeros([0, 5]), tf.zeros([5, 4])), 5, 'm = 0');
  });

  it('_FusedMatMul: bias shapes and every activation the cpu backend supports', async () => {
    const activations = ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'prelu', 'sigmoid'] as const;
    for (const activation of activations) {
      for (const biasKind of ['none', 'vector', 'row', 'scalar', 'full'] as const) {
        const batch = pick([[], [2]]);
        const [m, n, k] = [integer(1, 20), integer(1, 20), integer(1, 50)];
        const transposeA = random() < 0.5;
        const transposeB = random() < 0.5;
        const aShape = [...batch, ...(transposeA ? [k, m] : [m, k])];
        const bShape = [...batch, ...(transposeB ? [n, k] : [k, n])];
        const biasShape = { none: null, vector: [n], row: [1, n], scalar: [1], full: [m, n] }[biasKind];
        const alphaShape = pick([[n], [m, n], [1]]);
        const [aValues, bValues] = [values(aShape), values(bShape)];
        const biasValues = biasShape ? values(biasShape) : null;
        const alphaValues = values(alphaShape);
        await expectSameOnBoth(
          () =>
            tf.fused.matMul({
              a: tf.tensor(aValues, aShape),
              b: tf.tensor(bValues, bShape),
              transposeA,
              transposeB,
              bias: biasValues && biasShape ? tf.tensor(biasValues, biasShape) : undefined,
              activation,
              preluActivationWeights: activation === 'prelu' ? tf.tensor(alphaValues, alphaShape) : undefined,
              leakyreluAlpha: 0.3,
            }),
          k,
          `${activation} bias ${biasKind} a ${aShape} b ${bShape}`,
        );
      }
    }
  });

  it('_FusedMatMul: a bias column of a square product is not taken for a row', async () => {
    const [aValues, bValues, column] = [values([6, 4]), values([4, 6]), values([6, 1])];
    await expectSameOnBoth(
      () => tf.fused.matMul({ a: tf.tensor2d(aValues, [6, 4]), b: tf.tensor2d(bValues, [4, 6]), bias: tf.tensor2d(column, [6, 1]) }),
      4,
      'bias [6, 1]',
    );
  });

  /** A random valid NHWC convolution: tfjs needs stride 1 or dilation 1 in each direction. */
  function randomConvolution() {
    const filterHeight = integer(1, 4);
    const filterWidth = integer(1, 4);
    const dilated = random() < 0.3;
    const strides: [number, number] = dilated ? [1, 1] : [integer(1, 3), integer(1, 3)];
    const dilations: [number, number] = dilated ? [integer(1, 2), integer(2, 3)] : [1, 1];
    const height = integer(filterHeight * dilations[0], 12);
    const width = integer(filterWidth * dilations[1], 12);
    const pad = pick([
      'same',
      'valid',
      1,
      [
        [0, 0],
        [integer(0, 2), integer(0, 2)],
        [integer(0, 2), integer(0, 2)],
        [0, 0],
      ],
    ] as const) as 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
    return {
      xShape: [integer(1, 3), height, width, integer(1, 5)] as [number, number, number, number],
      filterHeight,
      filterWidth,
      outChannels: integer(1, 6),
      strides,
      dilations,
      pad,
    };
  }

  it('Conv2D: strides, same/valid/numeric/explicit padding, dilations, 1×1 filters', async () => {
    for (let trial = 0; trial < 40; trial++) {
      const c =
        trial === 0
          ? { ...randomConvolution(), filterHeight: 1, filterWidth: 1, strides: [1, 1] as [number, number], pad: 'valid' as const }
          : randomConvolution();
      const filterShape = [c.filterHeight, c.filterWidth, c.xShape[3], c.outChannels] as [number, number, number, number];
      const [xValues, filterValues] = [values(c.xShape), values(filterShape)];
      await expectSameOnBoth(
        () => tf.conv2d(tf.tensor4d(xValues, c.xShape), tf.tensor4d(filterValues, filterShape), c.strides, c.pad, 'NHWC', c.dilations),
        c.filterHeight * c.filterWidth * c.xShape[3],
        `conv x ${c.xShape} filter ${filterShape} strides ${c.strides} pad ${JSON.stringify(c.pad)} dilations ${c.dilations}`,
      );
    }
  });

  it('Conv2D: a batch large enough to need several im2col chunks', async () => {
    const xShape: [number, number, number, number] = [40, 28, 28, 8];
    const filterShape: [number, number, number, number] = [5, 5, 8, 16];
    const [xValues, filterValues] = [values(xShape), values(filterShape)];
    await expectSameOnBoth(
      () => tf.conv2d(tf.tensor4d(xValues, xShape), tf.tensor4d(filterValues, filterShape), 1, 'same'),
      5 * 5 * 8,
      'chunked conv',
    );
  });

  it('Conv2D gradients over several im2col chunks (deep filters)', async () => {
    // 5·5·32 columns make a chunk 1310 rows, so 4·24·24 output pixels take two chunks.
    const xShape: [number, number, number, number] = [4, 24, 24, 32];
    const filterShape: [number, number, number, number] = [5, 5, 32, 4];
    const [xValues, filterValues] = [values(xShape), values(filterShape)];
    await expectSameOnBoth(
      () =>
        tf.grads((x: tf.Tensor, f: tf.Tensor) => tf.sum(tf.square(tf.conv2d(x as tf.Tensor4D, f as tf.Tensor4D, 1, 'same'))))([
          tf.tensor4d(xValues, xShape),
          tf.tensor4d(filterValues, filterShape),
        ]),
      4 * 24 * 24 * 5 * 5 * 4,
      'chunked conv gradients',
    );
  });

  it('FusedConv2D: bias and activations', async () => {
    for (const activation of ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'prelu', 'sigmoid'] as const) {
      const c = randomConvolution();
      const filterShape = [c.filterHeight, c.filterWidth, c.xShape[3], c.outChannels] as [number, number, number, number];
      const [xValues, filterValues, biasValues, alphaValues] = [
        values(c.xShape),
        values(filterShape),
        values([c.outChannels]),
        values([c.outChannels]),
      ];
      await expectSameOnBoth(
        () =>
          tf.fused.conv2d({
            x: tf.tensor4d(xValues, c.xShape),
            filter: tf.tensor4d(filterValues, filterShape),
            strides: c.strides,
            pad: c.pad,
            dilations: c.dilations,
            bias: tf.tensor1d(biasValues),
            activation,
            preluActivationWeights: activation === 'prelu' ? tf.tensor1d(alphaValues) : undefined,
            leakyreluAlpha: 0.25,
          }),
        c.filterHeight * c.filterWidth * c.xShape[3],
        `fused conv ${activation} x ${c.xShape} filter ${filterShape}`,
      );
    }
  });

  it('Conv2DBackpropInput and Conv2DBackpropFilter, called directly', async () => {
    for (let trial = 0; trial < 30; trial++) {
      const c = { ...randomConvolution(), dilations: [1, 1] as [number, number] }; // the gradient kernels take no dilations
      const filterShape = [c.filterHeight, c.filterWidth, c.xShape[3], c.outChannels] as [number, number, number, number];
      const info = tf.backend_util.computeConv2DInfo(c.xShape, filterShape, c.strides, 1, c.pad);
      const dyShape = [c.xShape[0], info.outHeight, info.outWidth, c.outChannels];
      const [xValues, filterValues, dyValues] = [values(c.xShape), values(filterShape), values(dyShape)];
      const label = `x ${c.xShape} filter ${filterShape} strides ${c.strides} pad ${JSON.stringify(c.pad)}`;
      const attrs = { strides: c.strides, pad: c.pad, dataFormat: 'NHWC' };
      await expectSameOnBoth(
        () =>
          tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor(dyValues, dyShape), filter: tf.tensor(filterValues, filterShape) }, {
            ...attrs,
            inputShape: c.xShape,
          } as unknown as tf.NamedAttrMap) as tf.Tensor,
        c.filterHeight * c.filterWidth * c.outChannels,
        `backprop input ${label}`,
      );
      await expectSameOnBoth(
        () =>
          tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor(xValues, c.xShape), dy: tf.tensor(dyValues, dyShape) }, {
            ...attrs,
            filterShape,
          } as unknown as tf.NamedAttrMap) as tf.Tensor,
        dyShape[0] * dyShape[1] * dyShape[2],
        `backprop filter ${label}`,
      );
    }
  });

  it('gradients through conv2d, fused conv2d and matMul (tf.grads)', async () => {
    for (let trial = 0; trial < 8; trial++) {
      const c = { ...randomConvolution(), dilations: [1, 1] as [number, number] };
      const filterShape = [c.filterHeight, c.filterWidth, c.xShape[3], c.outChannels] as [number, number, number, number];
      const [xValues, filterValues, biasValues] = [values(c.xShape), values(filterShape), values([c.outChannels])];
      const fused = trial % 2 === 1;
      await expectSameOnBoth(
        () => {
          const x = tf.tensor4d(xValues, c.xShape);
          const filter = tf.tensor4d(filterValues, filterShape);
          const bias = tf.tensor1d(biasValues);
          const f = (xi: tf.Tensor, fi: tf.Tensor, bi: tf.Tensor) => {
            const y = fused
              ? tf.fused.conv2d({
                  x: xi as tf.Tensor4D,
                  filter: fi as tf.Tensor4D,
                  strides: c.strides,
                  pad: c.pad,
                  bias: bi,
                  activation: 'relu',
                })
              : tf.relu(tf.add(tf.conv2d(xi as tf.Tensor4D, fi as tf.Tensor4D, c.strides, c.pad), bi));
            return tf.sum(tf.mul(y, tf.sin(y)));
          };
          return tf.grads(f)([x, filter, bias]);
        },
        4 * c.filterHeight * c.filterWidth * Math.max(c.xShape[3], c.outChannels) * c.xShape[0] * c.xShape[1] * c.xShape[2],
        `grads ${trial} fused ${fused}`,
      );
    }
  });

  it('variableGrads of a small conv + dense network match', async () => {
    const xShape: [number, number, number, number] = [4, 10, 10, 2];
    const [xValues, k1, b1, k2, b2, labels] = [
      values(xShape),
      values([3, 3, 2, 4]),
      values([4]),
      values([4 * 4 * 4, 5]),
      values([5]),
      Int32Array.from({ length: 4 }, () => integer(0, 4)),
    ];
    await expectSameOnBoth(
      () => {
        const vars = [
          tf.variable(tf.tensor4d(k1, [3, 3, 2, 4]), true, 'k1'),
          tf.variable(tf.tensor1d(b1), true, 'b1'),
          tf.variable(tf.tensor2d(k2, [64, 5]), true, 'k2'),
          tf.variable(tf.tensor1d(b2), true, 'b2'),
        ];
        const x = tf.tensor4d(xValues, xShape);
        const { grads, value } = tf.variableGrads(() => {
          const conv = tf.fused.conv2d({ x, filter: vars[0] as tf.Tensor4D, strides: 1, pad: 'valid', bias: vars[1], activation: 'relu' });
          const pooled = tf.maxPool(conv, 2, 2, 'valid');
          const logits = tf.fused.matMul({ a: tf.reshape(pooled, [4, 64]), b: vars[2] as tf.Tensor2D, bias: vars[3] });
          const oneHot = tf.oneHot(tf.tensor1d(labels, 'int32'), 5);
          return tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits), oneHot), 1))) as tf.Scalar;
        }, vars);
        const result = [value, ...vars.map((v) => grads[v.name])];
        vars.forEach((v) => v.dispose());
        return result;
      },
      64,
      'conv + dense variableGrads',
    );
  });

  it('MaxPool and MaxPoolGrad: ties, NaN, padding and overlapping windows, scalar and SIMD', async () => {
    const cases: [number[], number | [number, number], number | [number, number], 'same' | 'valid' | number][] = [
      [[2, 8, 8, 3], 2, 2, 'valid'],
      [[2, 9, 7, 4], 3, 2, 'same'], // overlapping windows
      [[1, 6, 6, 2], [2, 3], [1, 2], 'valid'],
      [[3, 5, 5, 1], 3, 1, 1],
      // Channels in fours take the SIMD forward pass.
      [[2, 8, 8, 8], 2, 2, 'valid'],
      [[1, 7, 6, 12], 3, 1, 'same'],
    ];
    for (const [shape, filterSize, strides, pad] of cases) {
      // Half the inputs are exactly 0 (as after a ReLU), so windows have ties; a few are NaN or -Infinity.
      const x = values(shape).map((v, i) => (i % 17 === 3 ? NaN : i % 23 === 5 ? -Infinity : Math.max(v, 0)));
      const r = values(tf.backend_util.computePool2DInfo(shape as [number, number, number, number], filterSize, strides, 1, pad).outShape);
      const label = `maxPool ${shape} filter ${filterSize} strides ${strides} pad ${pad}`;
      const { cpu, blas } = await onBoth(() => {
        const input = tf.tensor4d(x, shape as [number, number, number, number]);
        const pooled = tf.maxPool(input, filterSize, strides, pad);
        const grad = tf.grad((t: tf.Tensor) =>
          tf.sum(tf.mul(tf.maxPool(t as tf.Tensor4D, filterSize, strides, pad), tf.tensor(r, pooled.shape))),
        )(input);
        return [pooled, grad];
      });
      expect(Array.from(blas[0]), label).toEqual(Array.from(cpu[0]));
      expectClose(blas[1], cpu[1], 9, `${label} gradient`);
    }
  });

  it('element-wise kernels: every broadcast pattern, exactly equal to cpu', async () => {
    const shapePairs: [number[], number[]][] = [
      [
        [7, 9],
        [7, 9],
      ], // same
      [[7, 9], []], // scalar
      [[], [3, 5]],
      [[4, 6, 5], [5]], // tile (a bias row)
      [
        [1, 5],
        [4, 3, 5],
      ],
      [
        [6, 1],
        [6, 8],
      ], // row ([n, 1] against [n, k])
      [
        [2, 3, 4],
        [2, 3, 1],
      ],
      [
        [6, 1],
        [1, 8],
      ], // both broadcast: the cpu kernel's path
      [
        [2, 1, 3],
        [2, 4, 3],
      ], // middle broadcast: the cpu kernel's path
      // 4096 outputs and more: a BLAS axpy (Add and Sub of equal shapes) or WebAssembly SIMD, rows of any length
      [
        [73, 61],
        [73, 61],
      ],
      [[70, 3, 21], [21]],
      [[5], [900, 5]],
      [[64, 128], [128]],
    ];
    const binaryOps: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
      ['add', tf.add],
      ['sub', tf.sub],
      ['mul', tf.mul],
      ['div', tf.div],
      ['maximum', tf.maximum],
      ['minimum', tf.minimum],
      ['squaredDifference', tf.squaredDifference],
    ];
    for (const [aShape, bShape] of shapePairs) {
      const [aValues, bValues] = [values(aShape), values(bShape)];
      for (const [name, op] of binaryOps) {
        const { cpu, blas } = await onBoth(() => op(tf.tensor(aValues, aShape), tf.tensor(bValues, bShape)));
        expect(Array.from(blas[0]), `${name} ${aShape} ${bShape}`).toEqual(Array.from(cpu[0]));
      }
    }
    const special = Float32Array.from([NaN, -Infinity, Infinity, -0, 0, -2.5, 3.25, 1e-30, -1e-30, 0.5, -0.5]);
    // Special values on both sides of every SIMD op: NaN, infinities and signed zeros as the cpu kernel gives them.
    const many = Float32Array.from({ length: 5000 }, (_, i) => special[i % special.length]);
    const shuffled = Float32Array.from({ length: 5000 }, (_, i) => special[(i * 7 + 3) % special.length]);
    for (const [name, op] of binaryOps.slice(0, 4)) {
      const { cpu, blas } = await onBoth(() => op(tf.tensor1d(many), tf.tensor1d(shuffled)));
      expect(Array.from(blas[0]), `${name} of special values`).toEqual(Array.from(cpu[0]));
    }
    const unaryOps: [string, (x: tf.Tensor) => tf.Tensor][] = [
      ['relu', tf.relu],
      ['relu6', tf.relu6],
      ['step', (x) => tf.step(x, 0.3)],
      ['leakyRelu', (x) => tf.leakyRelu(x, 0.1)],
      ['elu', tf.elu],
      ['sigmoid', tf.sigmoid],
      ['tanh', tf.tanh],
      ['sqrt', tf.sqrt],
      ['rsqrt', tf.rsqrt],
      ['square', tf.square],
      ['exp', tf.exp],
      ['log', tf.log],
      ['neg', tf.neg],
      ['abs', tf.abs],
      ['reciprocal', tf.reciprocal],
    ];
    const mixed = Float32Array.from([...special, ...values([200])]);
    for (const [name, op] of unaryOps) {
      const { cpu, blas } = await onBoth(() => op(tf.tensor1d(mixed)));
      // toEqual treats NaN as equal to NaN and tells -0 from 0.
      expect(Array.from(blas[0]), name).toEqual(Array.from(cpu[0]));
    }
    const ints = Int32Array.from([1, -2, 3]);
    const { cpu, blas } = await onBoth(() => [
      tf.add(tf.tensor1d(ints, 'int32'), tf.scalar(2, 'int32')),
      tf.abs(tf.tensor1d(ints, 'int32')),
    ]);
    expect(blas.map((a) => Array.from(a))).toEqual(cpu.map((a) => Array.from(a)));
  });

  it('Sum and Mean over leading, trailing and middle axes, with keepDims', async () => {
    const shape = [5, 4, 3, 6];
    const x = values(shape);
    for (const axis of [0, [0, 1], 3, [2, 3], [1, 2, 3], [0, 1, 2, 3], 1, [0, 2], []] as (number | number[])[]) {
      for (const keepDims of [false, true]) {
        const { cpu, blas } = await onBoth(() => [
          tf.sum(tf.tensor(x, shape), axis, keepDims),
          tf.mean(tf.tensor(x, shape), axis, keepDims),
        ]);
        const label = `axis ${axis} keepDims ${keepDims}`;
        // A Sum over leading axes is BLAS's float32 sum (gemm.ts columnSums); the rest keep the cpu bits.
        const axes = [axis].flat();
        const leading = axes.length > 0 && axes.every((a, i) => a === i);
        if (leading) expectClose(blas[0], cpu[0], x.length, label);
        else expect(Array.from(blas[0]), label).toEqual(Array.from(cpu[0]));
        expect(Array.from(blas[1]), label).toEqual(Array.from(cpu[1]));
        await tf.setBackend('blas');
        const shapeOnBlas = tf.tidy(() => tf.sum(tf.tensor(x, shape), axis, keepDims).shape);
        await tf.setBackend('cpu');
        const shapeOnCpu = tf.tidy(() => tf.sum(tf.tensor(x, shape), axis, keepDims).shape);
        expect(shapeOnBlas).toEqual(shapeOnCpu);
      }
    }
  });

  it('a Sum over the leading axes (a bias gradient) is within float32 rounding of the double-precision column sums', async () => {
    await tf.setBackend('blas');
    const random = seededRandom(41);
    for (const [rows, width] of [
      [3001, 384],
      [2048, 5],
      [1, 7],
      [7, 1],
      [64, 1031],
    ]) {
      const x = Float32Array.from({ length: rows * width }, () => random() * 2 - 1);
      const got = tf.tidy(() => tf.sum(tf.tensor(x, [rows, 1, width]), [0, 1]).dataSync());
      for (let j = 0; j < width; j++) {
        let exact = 0;
        let magnitude = 0;
        for (let r = 0; r < rows; r++) {
          exact += x[r * width + j];
          magnitude += Math.abs(x[r * width + j]);
        }
        // Float32 sums in any order: at most about rows·2^-24 of Σ|x|.
        expect(Math.abs(got[j] - exact), `column ${j} of ${rows} × ${width}`).toBeLessThanOrEqual(rows * 6e-8 * magnitude + 1e-30);
      }
    }
  });

  it('Slice: strided and contiguous regions, float32, int32 and bool', async () => {
    const shape = [4, 5, 6, 3];
    const x = values(shape);
    const regions: [number[], number[]][] = [
      [
        [0, 1, 2, 0],
        [4, 3, 2, 3],
      ],
      [
        [1, 0, 0, 1],
        [2, -1, -1, 2],
      ],
      [
        [2, 0, 0, 0],
        [1, 5, 6, 3],
      ], // contiguous: stays a view
      [
        [0, 4, 5, 2],
        [4, 1, 1, 1],
      ],
    ];
    for (const [begin, size] of regions) {
      const { cpu, blas } = await onBoth(() => [
        tf.slice(tf.tensor(x, shape), begin, size),
        tf.slice(
          tf.tensor(
            x.map((v) => Math.round(v * 100)),
            shape,
            'int32',
          ),
          begin,
          size,
        ),
        tf.slice(
          tf.tensor(
            x.map((v) => (v > 0 ? 1 : 0)),
            shape,
            'bool',
          ),
          begin,
          size,
        ),
        tf.slice(tf.tensor2d(x.subarray(0, 120), [12, 10]), [1, 3], [10, 4]),
      ]);
      expect(
        blas.map((a) => Array.from(a)),
        `slice ${begin} ${size}`,
      ).toEqual(cpu.map((a) => Array.from(a)));
    }
  });

  it('Concat and SplitV along every axis, float32 and int32, exactly equal to cpu', async () => {
    for (const shape of [
      [6, 4],
      [3, 4, 5],
      [2, 3, 6, 70], // rows of 70 and more: copied with set
      [48, 16, 8], // pooled sizes
    ]) {
      for (let axis = -1; axis < shape.length; axis++) {
        const along = shape.at(axis) as number;
        const sizes = along % 3 === 0 ? 3 : [1, along - 1];
        const other = [...shape];
        other[(axis + shape.length) % shape.length] = 2;
        const x = values(shape);
        const y = values(other);
        const { cpu, blas } = await onBoth(() => [
          tf.concat([tf.tensor(x, shape), tf.tensor(y, other), tf.tensor(x, shape)], axis),
          tf.concat([tf.tensor(x.map(Math.round), shape, 'int32'), tf.tensor(y.map(Math.round), other, 'int32')], axis),
          ...tf.split(tf.tensor(x, shape), sizes, axis),
          ...tf.split(tf.tensor(x.map(Math.round), shape, 'int32'), sizes, axis),
        ]);
        expect(
          blas.map((a) => Array.from(a)),
          `[${shape}] axis ${axis}`,
        ).toEqual(cpu.map((a) => Array.from(a)));
      }
    }
  });

  it('Transpose: every permutation of rank 2 to 4, float32 and int32; GatherV2 rows and ScatterNd rows, exactly equal to cpu', async () => {
    const permutations = (n: number): number[][] =>
      n === 1
        ? [[0]]
        : permutations(n - 1).flatMap((p) => Array.from({ length: n }, (_, at) => [...p.slice(0, at), n - 1, ...p.slice(at)]));
    for (const shape of [
      [3, 5],
      [2, 3, 4],
      [2, 3, 1, 5],
      [4, 1, 3, 2],
      [2, 3, 2, 20], // runs of 20: copied with set
    ]) {
      const x = values(shape);
      for (const perm of permutations(shape.length)) {
        const { cpu, blas } = await onBoth(() => [
          tf.transpose(tf.tensor(x, shape), perm),
          tf.transpose(
            tf.tensor(
              x.map((v) => Math.round(v * 100)),
              shape,
              'int32',
            ),
            perm,
          ),
        ]);
        expect(
          blas.map((a) => Array.from(a)),
          `transpose [${shape}] by [${perm}]`,
        ).toEqual(cpu.map((a) => Array.from(a)));
      }
    }
    const table = values([7, 3, 2]);
    const updates = values([5, 3, 2]);
    const { cpu, blas } = await onBoth(() => [
      tf.gather(tf.tensor(table, [7, 3, 2]), tf.tensor1d([6, 0, 0, 3], 'int32')),
      tf.gather(tf.tensor(table, [7, 6]), tf.tensor2d([1, 2, 5, 4], [2, 2], 'int32')),
      tf.gather(tf.tensor(table, [7, 6]), tf.tensor1d([5, 1], 'int32'), 1),
      // Rows scattered back, duplicates summed (a gather's gradient), and a scatter of single values.
      tf.scatterND(tf.tensor2d([6, 0, 0, 3, 6], [5, 1], 'int32'), tf.tensor(updates, [5, 3, 2]), [7, 3, 2]),
      tf.scatterND(tf.tensor2d([1, 2, 0, 1], [2, 2], 'int32'), tf.tensor1d([0.5, -2]), [3, 3]),
    ]);
    expect(blas.map((a) => Array.from(a))).toEqual(cpu.map((a) => Array.from(a)));
  });

  it('recycles output arrays without ever changing data a caller has read', async () => {
    await tf.setBackend('blas');
    const a = tf.tensor1d(values([10000]));
    const b = tf.tensor1d(values([10000]));
    const first = tf.add(a, b);
    const read = first.dataSync();
    const copy = Float32Array.from(read);
    first.dispose();
    const second = tf.mul(a, b); // same size: would reuse first's array if reads did not disown it
    const unread = tf.sub(a, b);
    unread.dispose();
    const third = tf.mul(a, a); // may reuse unread's array
    expect(Array.from(read)).toEqual(Array.from(copy));
    const expected = tf.tidy(() => tf.mul(a, b).dataSync());
    expect(Array.from(second.dataSync())).toEqual(Array.from(expected));
    expect(third.dataSync()[0]).toBe(Math.fround(a.dataSync()[0] * a.dataSync()[0]));
    tf.dispose([a, b, second, third]);

    // The cpu Slice kernel returns a view into its input's array: disposing the input must not recycle it.
    const source = tf.add(tf.ones([100, 100]), tf.ones([100, 100]));
    const rows = tf.slice(source, [10, 0], [20, 100]);
    source.dispose();
    const reuse = tf.tidy(() => tf.add(tf.mul(tf.ones([100, 100]), tf.scalar(7)), tf.zeros([100, 100])));
    expect(rows.dataSync().every((v) => v === 2)).toBe(true);
    tf.dispose([rows, reuse]);

    // Split pieces of a recycled array are copies: recycling it leaves them as they were.
    const whole = tf.add(tf.ones([300, 100]), tf.ones([300, 100]));
    const pieces = tf.split(whole, 3, 0);
    whole.dispose();
    const overwrite = tf.tidy(() => tf.add(tf.mul(tf.ones([300, 100]), tf.scalar(7)), tf.zeros([300, 100])));
    for (const piece of pieces) expect(piece.dataSync().every((v) => v === 2)).toBe(true);
    tf.dispose([...pieces, overwrite]);
  });
});

describe('blas backend without a BLAS library', () => {
  it('throws one line saying what was tried and how to install one', () => {
    const script =
      "import('@occam/blas').then((m) => { try { m.registerBlasBackend({ threads: 0 }); console.log('registered'); } " +
      'catch (e) { console.log(e.message); } })';
    const output = execFileSync(process.execPath, ['--import', 'tsx', '-e', script], {
      cwd: new URL('..', import.meta.url),
      env: { ...process.env, OCCAM_BLAS: '/nonexistent/libnothing.so' },
      encoding: 'utf8',
    }).trim();
    expect(output.split('\n')).toHaveLength(1);
    expect(output).toContain('no BLAS library found');
    expect(output).toContain('OCCAM_BLAS=/nonexistent/libnothing.so');
    expect(output).toContain('apt-get install libopenblas0');
  });
});
