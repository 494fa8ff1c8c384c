// `occam export --format safetensors-torch`: the weights under the parameter names and layouts of
// the plain torch.nn modules in docs/occam_torch.py (Linear weights [out, in], Conv2d [out, in,
// kh, kw]), so `model.load_state_dict(load_file(...))` needs no renaming; the masks go in a second
// file, laid out the same way, for torch.nn.utils.prune.custom_from_mask.
import { encodeSafetensors, type NamedTensor } from '../storage/safetensors.ts';
import { maskName } from '../storage/state-format.ts';
import type { TrainedModel } from '../training/trained.ts';
import { type Laid, torchConvWeight, transposed } from './layouts.ts';

export interface TorchFiles {
  /** The state dict of the docs/occam_torch.py module. */
  weights: Uint8Array;
  /** 0/1 masks of the pruned parameters, by the same names. */
  masks: Uint8Array;
  /** What occam_torch.build() needs to construct the module. */
  configJson: string;
}

export function torchSafetensors(trained: TrainedModel): TorchFiles {
  const weights: NamedTensor[] = [];
  const masks: NamedTensor[] = [];
  for (const param of trained.model.params) {
    const tensor = trained.tensors.get(param.name) as NamedTensor;
    const name = torchName(param.name);
    weights.push({ name, ...relaid(param.name, tensor.data as Float32Array, tensor.shape) });
    const mask = trained.tensors.get(maskName(param.name));
    if (mask) {
      const laid = relaid(param.name, Float32Array.from(mask.data), mask.shape);
      masks.push({ name, shape: laid.shape, data: Uint8Array.from(laid.data) });
    }
  }
  const { config, input } = trained;
  const module =
    config.model === 'gpt'
      ? {
          kind: 'gpt',
          vocab_size: input.classes,
          block_size: config.blockSize,
          layers: config.layers,
          heads: config.heads,
          width: config.width,
          bias: config.bias,
          tie_embeddings: config.tieEmbeddings,
        }
      : { kind: config.model, input_shape: input.shape, units: config.units, classes: input.classes };
  return {
    weights: encodeSafetensors(weights, { format: 'pt' }),
    masks: encodeSafetensors(masks, { format: 'pt' }),
    configJson: `${JSON.stringify({ ...module, class_names: input.classNames }, null, 2)}\n`,
  };
}

/** Occam's parameter name → the torch.nn one: kernels and LayerNorm gains are `weight`s. */
export function torchName(name: string): string {
  if (name === 'wte' || name === 'wpe') return `${name}.weight`;
  return name.replace(/\.(kernel|gain)$/, '.weight');
}

function relaid(name: string, data: Float32Array, shape: number[]): Laid {
  if (!name.endsWith('.kernel')) return { data, shape };
  return shape.length === 4 ? torchConvWeight(data, shape) : transposed(data, shape);
}
