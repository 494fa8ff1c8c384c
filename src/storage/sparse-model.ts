// The compact form of a pruned model (model/model.sparse.safetensors): per pruned tensor only its
// kept values, in order, plus where they sit — a bitmask (1 bit per weight) or int32 indices,
// whichever is smaller at that density; unpruned tensors are stored whole. Still safetensors, so
// any safetensors reader opens it; decodeSparseModel gives back the weights and masks exactly.
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from './safetensors.ts';
import { maskName, withoutMasks } from './state-format.ts';

export const SPARSE_FORMAT = 'occam-sparse-model';

/** Encodes weights (zero where pruned) and their masks; `tensors` as modelTensors gives them. */
export function encodeSparseModel(tensors: NamedTensor[], metadata: Record<string, string> = {}): Buffer {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const shapes: Record<string, number[]> = {};
  const out: NamedTensor[] = [];
  for (const tensor of withoutMasks(tensors)) {
    const mask = byName.get(maskName(tensor.name))?.data;
    if (!mask) {
      out.push(tensor);
      continue;
    }
    const weights = tensor.data as Float32Array;
    const kept = countKept(mask);
    const values = new Float32Array(kept);
    const indices = new Int32Array(kept);
    for (let i = 0, k = 0; i < mask.length; i++) {
      if (mask[i] === 0) continue;
      values[k] = weights[i];
      indices[k++] = i;
    }
    shapes[tensor.name] = tensor.shape;
    out.push({ name: `${tensor.name}.values`, shape: [kept], data: values });
    const bitmaskBytes = Math.ceil(mask.length / 8);
    if (indices.byteLength < bitmaskBytes) out.push({ name: `${tensor.name}.indices`, shape: [kept], data: indices });
    else out.push({ name: `${tensor.name}.bitmask`, shape: [bitmaskBytes], data: packBits(mask) });
  }
  return encodeSafetensors(out, { ...metadata, format: SPARSE_FORMAT, shapes: JSON.stringify(shapes) });
}

/** The weights and masks a sparse model file holds (masks named `name.mask`), in the file's order. */
export function decodeSparseModel(bytes: Uint8Array): { tensors: NamedTensor[]; metadata: Record<string, string> } {
  const { tensors, metadata } = decodeSafetensors(bytes);
  if (metadata.format !== SPARSE_FORMAT) throw new Error(`not an Occam sparse model (format '${metadata.format ?? ''}')`);
  const shapes = parseShapes(metadata.shapes);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const out: NamedTensor[] = [];
  for (const tensor of tensors) {
    if (!tensor.name.endsWith('.values')) {
      if (!tensor.name.endsWith('.indices') && !tensor.name.endsWith('.bitmask')) out.push(tensor);
      continue;
    }
    const name = tensor.name.slice(0, -'.values'.length);
    const shape = shapes[name];
    if (!shape) throw new Error(`sparse model: no shape for '${name}'`);
    const size = shape.reduce((a, b) => a * b, 1);
    const values = tensor.data as Float32Array;
    const mask = positionsMask(name, size, values.length, byName);
    const weights = new Float32Array(size);
    for (let i = 0, k = 0; i < size; i++) if (mask[i] === 1) weights[i] = values[k++];
    out.push({ name, shape, data: weights }, { name: maskName(name), shape, data: mask });
  }
  return { tensors: out, metadata };
}

function positionsMask(name: string, size: number, kept: number, byName: Map<string, NamedTensor>): Uint8Array {
  const mask = new Uint8Array(size);
  const indices = byName.get(`${name}.indices`)?.data;
  const bitmask = byName.get(`${name}.bitmask`)?.data;
  if (indices instanceof Int32Array) {
    for (const i of indices) {
      if (i < 0 || i >= size) throw new Error(`sparse model: '${name}' has an index ${i} outside its ${size} weights`);
      mask[i] = 1;
    }
  } else if (bitmask instanceof Uint8Array && bitmask.length === Math.ceil(size / 8)) {
    for (let i = 0; i < size; i++) mask[i] = (bitmask[i >> 3] >> (i & 7)) & 1;
  } else {
    throw new Error(`sparse model: '${name}' has neither indices nor a bitmask of ${Math.ceil(size / 8)} bytes`);
  }
  if (countKept(mask) !== kept) throw new Error(`sparse model: '${name}' has ${kept} values for ${countKept(mask)} kept positions`);
  return mask;
}

function parseShapes(text: string | undefined): Record<string, number[]> {
  try {
    return JSON.parse(text ?? '') as Record<string, number[]>;
  } catch {
    throw new Error('sparse model: its metadata has no valid shapes');
  }
}

/** Bit i of the result is mask[i] (least significant bit first, as numpy's packbits with bitorder='little'). */
function packBits(mask: ArrayLike<number>): Uint8Array {
  const bits = new Uint8Array(Math.ceil(mask.length / 8));
  for (let i = 0; i < mask.length; i++) if (mask[i]) bits[i >> 3] |= 1 << (i & 7);
  return bits;
}

function countKept(mask: ArrayLike<number>): number {
  let kept = 0;
  for (let i = 0; i < mask.length; i++) kept += mask[i] === 0 ? 0 : 1;
  return kept;
}
