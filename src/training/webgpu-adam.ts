// Adam(W) on the webgpu backend in three WGSL kernels per parameter (the two moments, then the
// weights) instead of the dozen element-wise ops TF.js would dispatch: a GPU step's update is
// mostly launch cost, and it is what follows the last all-reduced bucket.
import * as tf from '@tensorflow/tfjs-core';
import type { AdamCoefficients } from '../common/simd/f32.ts';

/** m' = β1·m + gm·g, v' = β2·v + gv·g², w' = keep·w − stepSize·m' / (√v' + ε): new tensors, for the caller to assign. */
export function adamOnWebGpu(
  weights: tf.Tensor,
  m: tf.Tensor,
  v: tf.Tensor,
  gradient: tf.Tensor,
  c: AdamCoefficients,
): { weights: tf.Tensor; m: tf.Tensor; v: tf.Tensor } {
  const nextM = run(
    new ElementwiseProgram('adam_m', ['M', 'G'], 'beta1 : f32, gm : f32,', MOMENT, m.shape),
    [m, gradient],
    [c.beta1, c.gm],
  );
  const nextV = run(
    new ElementwiseProgram('adam_v', ['V', 'G'], 'beta2 : f32, gv : f32,', SQUARES, v.shape),
    [v, gradient],
    [c.beta2, c.gv],
  );
  const nextW = run(
    new ElementwiseProgram('adam_w', ['W', 'M', 'V'], 'keep : f32, stepSize : f32, epsilon : f32,', WEIGHTS, weights.shape),
    [weights, nextM, nextV],
    [c.keep, c.stepSize, c.epsilon],
  );
  return { weights: nextW, m: nextM, v: nextV };
}

const MOMENT = 'uniforms.beta1 * getMByOutputIndex(index) + uniforms.gm * getGByOutputIndex(index)';
const SQUARES = 'uniforms.beta2 * getVByOutputIndex(index) + uniforms.gv * getGByOutputIndex(index) * getGByOutputIndex(index)';
const WEIGHTS =
  'uniforms.keep * getWByOutputIndex(index) - uniforms.stepSize * getMByOutputIndex(index) / (sqrt(getVByOutputIndex(index)) + uniforms.epsilon)';

/** The part of tfjs-backend-webgpu's backend used here: run a program, get the output's record. */
interface WebGpuBackend {
  runWebGPUProgram(
    program: ElementwiseProgram,
    inputs: tf.TensorInfo[],
    dtype: 'float32',
    uniforms: { type: 'float32'; data: number[] }[],
  ): tf.TensorInfo;
}

function run(program: ElementwiseProgram, inputs: tf.Tensor[], uniforms: number[]): tf.Tensor {
  const backend = tf.backend() as unknown as WebGpuBackend;
  const info = backend.runWebGPUProgram(
    program,
    inputs,
    'float32',
    uniforms.map((value) => ({ type: 'float32', data: [value] })),
  );
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** One value out per index, from same-shaped inputs (TF.js's WebGPUProgram contract; the coefficients are uniforms, so one pipeline serves every step). */
class ElementwiseProgram {
  readonly size = true;
  readonly workgroupSize: [number, number, number] = [64, 1, 1];
  readonly dispatchLayout: { x: number[] };
  readonly dispatch: [number, number, number];

  constructor(
    readonly shaderKey: string,
    readonly variableNames: string[],
    readonly uniforms: string,
    private readonly expression: string,
    readonly outputShape: number[],
  ) {
    this.dispatchLayout = { x: outputShape.map((_, i) => i) };
    const size = outputShape.reduce((a, b) => a * b, 1);
    this.dispatch = [Math.ceil(size / this.workgroupSize[0]), 1, 1];
  }

  getUserCode(): string {
    return `
      fn main(index : i32) {
        if (index < uniforms.size) {
          setOutputAtIndex(index, ${this.expression});
        }
      }`;
  }
}
