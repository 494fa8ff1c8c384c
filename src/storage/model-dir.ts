// The one owner of a run's model/ folder — what a trained model needs to be used anywhere:
// occam-model.json (Occam's own manifest: config, best round, tensor list, sizes),
// model.safetensors (dense weights + 0/1 masks), model.sparse.safetensors (kept values only),
// input.json (input layout and preprocessing) and, for text, vocab.json.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { OccamConfig } from '../config.ts';
import { writeAtomically } from './atomic-file.ts';
import { RunDirError } from './errors.ts';
import { decodeSafetensors, encodeSafetensors, type NamedTensor, safetensorsBytes } from './safetensors.ts';
import { encodeSparseModel } from './sparse-model.ts';
import { isOptimizerTensor, maskName, withoutMasks } from './state-format.ts';

export const MODEL_FILES = {
  manifest: 'occam-model.json',
  dense: 'model.safetensors',
  sparse: 'model.sparse.safetensors',
  input: 'input.json',
  vocabulary: 'vocab.json',
} as const;

/** How raw inputs become what the model reads, so new inputs can be prepared the same way. */
export type Preprocessing =
  | { kind: 'none' }
  /** Image bytes divided by 255 (IDX files). */
  | { kind: 'pixels'; divideBy: number }
  /** CSV features in this order, each standardised: (value − mean) / scale, the training split's statistics. */
  | { kind: 'standardise'; features: string[]; mean: number[]; scale: number[] }
  /** Character tokens; the vocabulary is vocab.json. */
  | { kind: 'tokens' };

/** The input a model takes and the names of what it predicts. */
export interface InputLayout {
  /** One sample, e.g. [28, 28, 1] (height, width, channels), [13] features, [blockSize] tokens. */
  shape: number[];
  type: 'float32' | 'int32';
  classes: number;
  /** Class index → name, where the data names its classes. */
  classNames: string[] | null;
  preprocessing: Preprocessing;
}

/** The best round as the manifest records it (RunDir's BestRound). */
export interface ModelRound {
  round: number;
  holdbackLoss: number;
  testLoss: number | null;
  testAccuracy: number | null;
  weightsKept: number;
}

/** File sizes of the exported model: dense float32 weights alone against the sparse file. */
export interface ModelSizes {
  denseBytes: number;
  sparseBytes: number;
}

export interface ModelManifest {
  format: 'occam-model';
  config: OccamConfig;
  best: ModelRound;
  tensors: { name: string; shape: number[] }[];
  sizes: ModelSizes;
}

/** A trained model read back: its manifest, its input layout, and its weights (zero where pruned) and masks by name. */
export interface TrainedModel {
  dir: string;
  manifest: ModelManifest;
  /** Null for a model whose run did not record its input (then the data must be loaded to learn it). */
  input: InputLayout | null;
  tensors: Map<string, NamedTensor>;
}

/** Writes the best model from replica state bytes (weights and masks; the optimizer state is left out). */
export function writeModel(dir: string, state: Uint8Array, config: OccamConfig, best: ModelRound): ModelSizes {
  mkdirSync(dir, { recursive: true });
  const tensors = decodeSafetensors(state).tensors.filter((t) => !isOptimizerTensor(t.name));
  const metadata = { format: 'occam-model', round: String(best.round) };
  const sparse = encodeSparseModel(tensors, metadata);
  const sizes = { denseBytes: safetensorsBytes(withoutMasks(tensors)), sparseBytes: sparse.length };
  writeAtomically(join(dir, MODEL_FILES.dense), encodeSafetensors(tensors, metadata));
  writeAtomically(join(dir, MODEL_FILES.sparse), sparse);
  const manifest: ModelManifest = {
    format: 'occam-model',
    config,
    best,
    tensors: tensors.map((t) => ({ name: t.name, shape: t.shape })),
    sizes,
  };
  writeAtomically(join(dir, MODEL_FILES.manifest), `${JSON.stringify(manifest, null, 2)}\n`);
  return sizes;
}

/** Writes input.json (when training starts: the data is loaded then). */
export function writeInputLayout(dir: string, layout: InputLayout): void {
  mkdirSync(dir, { recursive: true });
  writeAtomically(join(dir, MODEL_FILES.input), `${JSON.stringify(layout)}\n`);
}

/** The sizes the manifest records, or null when no model was exported yet. */
export function readModelSizes(dir: string): ModelSizes | null {
  const path = join(dir, MODEL_FILES.manifest);
  if (!existsSync(path)) return null;
  return (JSON.parse(readFileSync(path, 'utf8')) as Partial<ModelManifest>).sizes ?? null;
}

/** Reads model/ back; one clear error naming the file when something is missing or damaged. */
export function readModel(dir: string): TrainedModel {
  const path = (name: string) => join(dir, name);
  for (const name of [MODEL_FILES.manifest, MODEL_FILES.dense]) {
    if (!existsSync(path(name))) throw new RunDirError(`${dir} has no ${name}: no model was exported (has a round finished?)`);
  }
  const manifest = readJson<ModelManifest>(path(MODEL_FILES.manifest));
  if (manifest.format !== 'occam-model' || !manifest.config || !manifest.best)
    throw new RunDirError(`${path(MODEL_FILES.manifest)} is not an Occam model manifest`);
  const input = existsSync(path(MODEL_FILES.input)) ? readJson<InputLayout>(path(MODEL_FILES.input)) : null;
  let decoded: NamedTensor[];
  try {
    decoded = decodeSafetensors(readFileSync(path(MODEL_FILES.dense))).tensors;
  } catch (error) {
    throw new RunDirError(`${path(MODEL_FILES.dense)}: ${(error as Error).message}`);
  }
  const tensors = new Map(decoded.map((t) => [t.name, t]));
  // Pruned weights are stored as zeros already; applying the mask keeps that true for any file.
  for (const t of decoded) {
    const mask = tensors.get(maskName(t.name))?.data;
    if (mask && t.data instanceof Float32Array) tensors.set(t.name, { ...t, data: t.data.map((v, i) => (mask[i] === 0 ? 0 : v)) });
  }
  return { dir, manifest, input, tensors };
}

function readJson<T>(path: string): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    throw new RunDirError(`${path} is not valid JSON`);
  }
}
