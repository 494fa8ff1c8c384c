// The one owner of the replica state format: safetensors holding, per parameter, its weights
// (`name`), its 0/1 mask (`name.mask`, prunable parameters only) and its Adam moments
// (`adam.m.name`, `adam.v.name`), with Adam's step count in the metadata; and the order in which
// a state is digested, so a replica and the coordinator compute the same digest of the same bytes.
import { digestArrays } from '../common/digest.ts';
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from './safetensors.ts';

/** A parameter as the state format sees it. */
export interface ParamLayout {
  name: string;
  shape: number[];
  prunable: boolean;
}

/** Everything training depends on, in parameter order (masks null for parameters never pruned). */
export interface ReplicaState {
  weights: Float32Array[];
  masks: (Uint8Array | null)[];
  moments: { m: Float32Array; v: Float32Array }[];
  adamSteps: number;
}

export class StateFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateFormatError';
  }
}

/**
 * The most bytes an honest state of this layout takes: 16 per weight (weights, mask and both
 * moments at 4 bytes each, at most) and 1 KiB of safetensors header per parameter, plus 1 MiB.
 */
export function stateBytesBound(layout: readonly ParamLayout[]): number {
  const weights = layout.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  return 16 * weights + 1024 * layout.length + 2 ** 20;
}

export function maskName(param: string): string {
  return `${param}.mask`;
}

/** Model tensors without the masks of those among them that carry one. */
export function withoutMasks<T extends { name: string }>(tensors: T[]): T[] {
  const masks = new Set(tensors.map((t) => maskName(t.name)));
  return tensors.filter((t) => !masks.has(t.name));
}

/** Whether a state tensor is optimizer state (left out of exported models). */
export function isOptimizerTensor(name: string): boolean {
  return name.startsWith('adam.');
}

/** Weights and masks as named tensors: the model without its optimizer state. */
export function modelTensors(layout: ParamLayout[], state: ReplicaState): NamedTensor[] {
  return layout.flatMap((p, i) => {
    const mask = state.masks[i];
    const weights = { name: p.name, shape: p.shape, data: state.weights[i] };
    return mask ? [weights, { name: maskName(p.name), shape: p.shape, data: mask }] : [weights];
  });
}

export function encodeState(layout: ParamLayout[], state: ReplicaState): Buffer {
  const moments: NamedTensor[] = layout.flatMap((p, i) => [
    { name: `adam.m.${p.name}`, shape: p.shape, data: state.moments[i].m },
    { name: `adam.v.${p.name}`, shape: p.shape, data: state.moments[i].v },
  ]);
  return encodeSafetensors([...modelTensors(layout, state), ...moments], { adamSteps: String(state.adamSteps) });
}

/** Decodes and checks a whole state against the model's layout; throws StateFormatError naming the problem. */
export function decodeState(bytes: Uint8Array, layout: ParamLayout[]): ReplicaState {
  let decoded: { tensors: NamedTensor[]; metadata: Record<string, string> };
  try {
    decoded = decodeSafetensors(bytes);
  } catch (error) {
    throw new StateFormatError((error as Error).message);
  }
  const byName = new Map(decoded.tensors.map((t) => [t.name, t]));
  const take = <T extends Float32Array | Uint8Array>(param: ParamLayout, name: string, type: { new (n: number): T; name: string }): T => {
    const tensor = byName.get(name);
    if (!tensor) throw new StateFormatError(`state lacks a tensor of layer ${param.name} ('${name}')`);
    if (!(tensor.data instanceof type)) throw new StateFormatError(`state tensor '${name}' is not ${type.name}`);
    if (tensor.shape.join(',') !== param.shape.join(','))
      throw new StateFormatError(`state tensor '${name}' has shape [${tensor.shape}], the model needs [${param.shape}]`);
    return tensor.data as T;
  };
  const state: ReplicaState = { weights: [], masks: [], moments: [], adamSteps: Number(decoded.metadata.adamSteps) };
  if (!Number.isSafeInteger(state.adamSteps) || state.adamSteps < 0) throw new StateFormatError('state has no valid adamSteps');
  for (const p of layout) {
    state.weights.push(take(p, p.name, Float32Array));
    const mask = p.prunable ? take(p, maskName(p.name), Uint8Array) : null;
    if (mask?.some((x) => x > 1)) throw new StateFormatError(`state has no valid 0/1 mask for layer ${p.name} (other values in it)`);
    state.masks.push(mask);
    state.moments.push({ m: take(p, `adam.m.${p.name}`, Float32Array), v: take(p, `adam.v.${p.name}`, Float32Array) });
  }
  return state;
}

/** Digest of a state: equal digests mean bit-identical weights, masks, moments and step count. */
export function stateDigest(state: ReplicaState): string {
  return digestArrays([
    ...state.weights,
    ...state.masks.filter((m): m is Uint8Array => m !== null),
    ...state.moments.flatMap((x) => [x.m, x.v]),
    new Float64Array([state.adamSteps]),
  ]);
}
