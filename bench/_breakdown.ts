// Where one training step's time goes, by what the kernels are (TF.js's profiler, on the backend in
// use): matrix products, convolutions, Occam's fused ops (GELU, LayerNorm, the causal softmax,
// cross-entropy: custom-gradient scopes), element-wise work, reductions and the rest, then what is
// outside any kernel (the tape, reading the gradient, compacting it to the mask), then the update.
import * as tf from '@tensorflow/tfjs-core';
import type { Replica } from '../src/training/replica.ts';

export interface StepBreakdown {
  gemm: number;
  conv: number;
  fused: number;
  elementwise: number;
  reduce: number;
  otherKernels: number;
  /** Step time outside every kernel: the tape, gradient reads, compaction. */
  outside: number;
  update: number;
}

const FUSED = /^unnamed scope$/;
const GEMM = /MatMul|Einsum/;
const CONV = /Conv|Pool|Im2Col/;
const REDUCE = /^(Sum|Max|Min|Mean|Prod|ArgMax|ArgMin|Softmax|LogSoftmax|All|Any)/;
const ELEMENTWISE =
  /^(Add|AddN|Sub|Mul|RealDiv|Div|Neg|Exp|Log|Sqrt|Rsqrt|Square|SquaredDifference|Relu|Relu6|Elu|Sigmoid|Tanh|Select|Where|Greater|GreaterEqual|Less|LessEqual|Equal|NotEqual|Maximum|Minimum|Cast|Abs|Sign|Step|Pow|Reciprocal|OnesLike|ZerosLike|Fill|Tile|Gelu|LayerNorm|Cross|Causal)/;

/** Profiles the gradient of `steps` steps (from `fromStep`) and times their updates; ms per step. */
export async function stepBreakdown(replica: Replica, batch: number, fromStep: number, steps: number): Promise<StepBreakdown> {
  const totals = { gemm: 0, conv: 0, fused: 0, elementwise: 0, reduce: 0, otherKernels: 0, outside: 0, update: 0 };
  for (let step = fromStep; step < fromStep + steps; step++) {
    const buffer = new Float32Array(replica.gradientLength);
    let gradientMs = 0;
    const profile = await tf.profile(async () => {
      const start = performance.now();
      await replica.shardGradient(step, 0, 1, buffer);
      gradientMs = performance.now() - start;
      return [];
    });
    let kernelsMs = 0;
    let product: { ms: number; inputs: string; outputs: string } | null = null;
    for (const kernel of profile.kernels) {
      const name = kernel.name;
      // An `op__op` entry wraps the kernel profiled beside it: counting both would count it twice.
      if (name.endsWith('__op')) continue;
      let ms = typeof kernel.kernelTimeMs === 'number' ? kernel.kernelTimeMs : 0;
      const inputs = JSON.stringify(kernel.inputShapes).slice(1, -1);
      const outputs = JSON.stringify(kernel.outputShapes);
      if (GEMM.test(name) || CONV.test(name)) product = { ms, inputs, outputs };
      // A fused ReLU layer's scope (relu-layers.ts) is profiled after the product it ran, whose
      // time it includes: that product has the scope's output and ends with the scope's inputs.
      if (FUSED.test(name) && product && product.outputs === outputs && product.inputs.endsWith(inputs)) {
        ms = Math.max(0, ms - product.ms);
        product = null;
      }
      kernelsMs += ms;
      const group = FUSED.test(name)
        ? 'fused'
        : GEMM.test(name)
          ? 'gemm'
          : CONV.test(name)
            ? 'conv'
            : ELEMENTWISE.test(name)
              ? 'elementwise'
              : REDUCE.test(name)
                ? 'reduce'
                : 'otherKernels';
      totals[group] += ms;
    }
    totals.outside += Math.max(0, gradientMs - kernelsMs);
    const start = performance.now();
    replica.applyGradient(buffer, batch);
    totals.update += performance.now() - start;
  }
  for (const key of Object.keys(totals) as (keyof StepBreakdown)[]) totals[key] /= steps;
  return totals;
}
