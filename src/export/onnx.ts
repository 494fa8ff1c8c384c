// `occam export --format onnx`: the trained network as an ONNX graph (opset 17) that onnxruntime,
// TensorRT or any ONNX runtime runs. The input is Occam's own layout (images NHWC, token ids);
// the output is the logits Occam computes. Pruned weights are zeros in dense initializers.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { TrainedModel } from '../training/trained.ts';
import { type Laid, torchConvWeight } from './layouts.ts';

const OPSET = 17;
/** ONNX IR version 8 (ONNX 1.10+), the first that opset 17 runtimes all read. */
const IR_VERSION = 8;
const FLOAT = 1;
const INT64 = 7;
const ATTRIBUTE = { FLOAT: 1, INT: 2, INTS: 7 } as const;

const root = protobuf.loadSync(fileURLToPath(new URL('../../proto/formats/onnx.proto', import.meta.url)));
const ModelProto = root.lookupType('onnx.ModelProto');

/** The model as the bytes of an .onnx file. */
export function onnxModel(trained: TrainedModel, producerVersion: string): Uint8Array {
  const graph = new Graph(trained);
  const kind = trained.config.model;
  const logits = kind === 'gpt' ? gptGraph(graph, trained) : kind === 'cnn' ? cnnGraph(graph) : mlpGraph(graph);
  const message = ModelProto.fromObject({
    irVersion: IR_VERSION,
    producerName: 'occam',
    producerVersion,
    docString: `Occam ${kind} trained with strategy ${trained.config.strategy}; logits of the best round (${trained.manifest.best.round})`,
    opsetImport: [{ domain: '', version: OPSET }],
    graph: {
      name: `occam_${kind}`,
      node: graph.nodes,
      initializer: graph.initializers,
      input: [graph.inputInfo()],
      output: [graph.outputInfo(logits)],
    },
  });
  return ModelProto.encode(message).finish();
}

/** Nodes and initializers under construction; names are unique by counter. */
class Graph {
  readonly nodes: object[] = [];
  readonly initializers: object[] = [];
  readonly input = 'input';
  private count = 0;
  private readonly added = new Set<string>();

  constructor(readonly trained: TrainedModel) {}

  inputInfo(): object {
    const { shape, type } = this.trained.input;
    const elemType = type === 'int32' ? INT64 : FLOAT;
    // Batch (and, for tokens, sequence length) are free.
    const dims =
      type === 'int32' ? [{ dimParam: 'batch' }, { dimParam: 'tokens' }] : [{ dimParam: 'batch' }, ...shape.map((d) => ({ dimValue: d }))];
    return { name: this.input, type: { tensorType: { elemType, shape: { dim: dims } } } };
  }

  outputInfo(name: string): object {
    const classes = { dimValue: this.trained.input.classes };
    const dims =
      this.trained.input.type === 'int32' ? [{ dimParam: 'batch' }, { dimParam: 'tokens' }, classes] : [{ dimParam: 'batch' }, classes];
    return { name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims } } } };
  }

  /** A stored parameter as an initializer (once, however many nodes read it), optionally re-laid out. */
  weight(name: string, transform?: (data: Float32Array, shape: number[]) => Laid): string {
    if (this.added.has(name)) return name;
    this.added.add(name);
    const tensor = this.trained.tensors.get(name);
    if (!tensor) throw new Error(`onnx export: the model has no tensor '${name}'`);
    const { data, shape } = transform
      ? transform(tensor.data as Float32Array, tensor.shape)
      : { data: tensor.data as Float32Array, shape: tensor.shape };
    return this.constant(name, shape, data);
  }

  constant(name: string, dims: number[], data: Float32Array | BigInt64Array): string {
    const rawData = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.initializers.push({ name, dims, dataType: data instanceof BigInt64Array ? INT64 : FLOAT, rawData });
    return name;
  }

  ints(name: string, values: number[]): string {
    return this.constant(name, [values.length], BigInt64Array.from(values.map(BigInt)));
  }

  /** Adds one node; returns its output's name (or, given `outputs` > 1, all of them). */
  op(type: string, inputs: string[], attributes?: Record<string, number | number[]>): string;
  op(type: string, inputs: string[], attributes: Record<string, number | number[]>, outputs: number): string[];
  op(type: string, inputs: string[], attributes: Record<string, number | number[]> = {}, outputs = 1): string | string[] {
    const output = `${type.toLowerCase()}_${this.count++}`;
    const names = Array.from({ length: outputs }, (_, k) => (k === 0 ? output : `${output}_${k}`));
    const attribute = Object.entries(attributes).map(([name, value]) =>
      Array.isArray(value)
        ? { name, type: ATTRIBUTE.INTS, ints: value }
        : Number.isInteger(value)
          ? { name, type: ATTRIBUTE.INT, i: value }
          : { name, type: ATTRIBUTE.FLOAT, f: value },
    );
    this.nodes.push({ opType: type, input: inputs, output: names, name: output, attribute });
    return outputs === 1 ? output : names;
  }

  dense(x: string, name: string, activation: 'relu' | null): string {
    const y = this.op('Gemm', [x, this.weight(`${name}.kernel`), this.weight(`${name}.bias`)]);
    return activation ? this.op('Relu', [y]) : y;
  }
}

function mlpGraph(g: Graph): string {
  const flat = g.op('Flatten', [g.input], { axis: 1 });
  return g.dense(g.dense(flat, 'hidden', 'relu'), 'output', null);
}

function cnnGraph(g: Graph): string {
  // Occam's images are NHWC; ONNX's Conv is NCHW. The features go back to NHWC before the flatten,
  // so the dense kernel's row order is Occam's.
  const conv = (x: string, name: string) =>
    g.op('Relu', [g.op('Conv', [x, g.weight(`${name}.kernel`, torchConvWeight), g.weight(`${name}.bias`)], { kernel_shape: [3, 3] })]);
  const pool = (x: string) => g.op('MaxPool', [x], { kernel_shape: [2, 2], strides: [2, 2] });
  let x = g.op('Transpose', [g.input], { perm: [0, 3, 1, 2] });
  x = pool(conv(x, 'conv1'));
  x = pool(conv(x, 'conv2'));
  x = conv(x, 'conv3');
  x = g.op('Flatten', [g.op('Transpose', [x], { perm: [0, 2, 3, 1] })], { axis: 1 });
  return g.dense(g.dense(x, 'dense', 'relu'), 'output', null);
}

/** The GPT of models/gpt.ts, op for op: logits [batch, tokens, vocab] for token ids [batch, tokens ≤ blockSize]. */
function gptGraph(g: Graph, trained: TrainedModel): string {
  const { layers, heads, width, blockSize } = trained.config;
  const headSize = width / heads;
  const scalar = (name: string, value: number) => g.constant(name, [], Float32Array.of(value));
  const has = (name: string) => trained.tensors.has(name);
  const linear = (x: string, name: string) => {
    const product = g.op('MatMul', [x, g.weight(`${name}.kernel`)]);
    return has(`${name}.bias`) ? g.op('Add', [product, g.weight(`${name}.bias`)]) : product;
  };
  // LayerNormalization's bias input is optional (bias: false trains none).
  const norm = (x: string, name: string) =>
    g.op('LayerNormalization', [x, g.weight(`${name}.gain`), ...(has(`${name}.bias`) ? [g.weight(`${name}.bias`)] : [])], {
      axis: -1,
      epsilon: 1e-5,
    });
  const half = scalar('half', 0.5);
  const one = scalar('one', 1);
  const cubic = scalar('gelu_cubic', 0.044715);
  const root2OverPi = scalar('gelu_scale', Math.sqrt(2 / Math.PI));
  const gelu = (x: string) => {
    const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
    const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, cubic])]), root2OverPi]);
    return g.op('Mul', [g.op('Mul', [x, half]), g.op('Add', [g.op('Tanh', [inner]), one])]);
  };

  // The sequence length T, and T×T of the causal mask (MASKED_SCORE after the diagonal, as gpt.ts).
  const tokens = g.op('Gather', [g.op('Shape', [g.input]), g.ints('axis_1', [1])], { axis: 0 });
  const positions = g.op('Range', [
    g.constant('zero', [], BigInt64Array.of(0n)),
    g.op('Squeeze', [tokens]),
    g.constant('step', [], BigInt64Array.of(1n)),
  ]);
  const maskValues = new Float32Array(blockSize * blockSize);
  for (let q = 0; q < blockSize; q++) maskValues.fill(-1e9, q * blockSize + q + 1, (q + 1) * blockSize);
  const mask = g.op('Slice', [
    g.constant('causal_mask', [blockSize, blockSize], maskValues),
    g.ints('mask_start', [0, 0]),
    g.op('Concat', [tokens, tokens], { axis: 0 }),
  ]);
  const splitHeads = g.ints('split_heads', [0, 0, heads, headSize]);
  const mergeHeads = g.ints('merge_heads', [0, 0, width]);
  const scale = scalar('attention_scale', 1 / Math.sqrt(headSize));

  const thirds = g.ints('qkv_split', [width, width, width]);
  const attention = (x: string, name: string) => {
    // The fused projection's columns: query, key, value (Split's outputs are <name>, <name>_1, <name>_2).
    const qkv = g.op('Split', [linear(x, `${name}.qkv`), thirds], { axis: -1 }, 3);
    const project = (part: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [part, splitHeads])], { perm });
    const query = g.op('Mul', [project(qkv[0], [0, 2, 1, 3]), scale]);
    const scores = g.op('Add', [g.op('MatMul', [query, project(qkv[1], [0, 2, 3, 1])]), mask]);
    const mixed = g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), project(qkv[2], [0, 2, 1, 3])]);
    return linear(g.op('Reshape', [g.op('Transpose', [mixed], { perm: [0, 2, 1, 3] }), mergeHeads]), `${name}.output`);
  };

  let x = g.op('Add', [g.op('Gather', [g.weight('wte'), g.input], { axis: 0 }), g.op('Gather', [g.weight('wpe'), positions], { axis: 0 })]);
  for (let l = 0; l < layers; l++) {
    x = g.op('Add', [x, attention(norm(x, `h.${l}.ln_1`), `h.${l}.attn`)]);
    x = g.op('Add', [x, linear(gelu(linear(norm(x, `h.${l}.ln_2`), `h.${l}.mlp.fc`)), `h.${l}.mlp.proj`)]);
  }
  // A tied head is the token embedding, transposed.
  const head = has('lm_head.kernel') ? g.weight('lm_head.kernel') : g.op('Transpose', [g.weight('wte')], { perm: [1, 0] });
  return g.op('MatMul', [norm(x, 'ln_f'), head]);
}
