// What training needs from a data set: the global batch of any step, the examples behind sample
// ids, and evaluation slices of the holdback and test splits. Batches are a pure function of
// (seed, step), so any worker count, and any resumed run, sees the same global batches.
import type { InputLayout, Preprocessing } from '../../storage/model-dir.ts';
import { mixSeed, permutation } from '../rng.ts';

/** A batch of samples, row-major. */
export interface Examples {
  /** Inputs: count × prod(inputShape) values. */
  x: Float32Array | Int32Array;
  /** Targets: count × targetsPerSample class indices. */
  y: Int32Array;
  count: number;
  /** A stable identity per sample; seeds its dropout noise. */
  ids: Uint32Array;
}

export type EvalSplit = 'holdback' | 'test';

export interface DataSource {
  readonly description: string;
  /** Shape of one input sample, e.g. [28, 28, 1], [4], or [blockSize] token ids. */
  readonly inputShape: number[];
  readonly inputType: 'float32' | 'int32';
  /** Number of classes (vocabulary size for text). */
  readonly classes: number;
  /** Targets per sample (1 for classification, blockSize for next-token prediction). */
  readonly targetsPerSample: number;
  /** What a trained model needs to take new inputs: shape, class names, preprocessing (model/input.json). */
  readonly layout: InputLayout;
  readonly trainCount: number;
  readonly holdbackCount: number;
  readonly testCount: number;
  /** Training steps in one pass over the training split. */
  stepsPerEpoch(batchSize: number): number;
  /** Ids of the training samples in the global batch of `step`. */
  globalBatch(step: number, batchSize: number): Uint32Array;
  trainExamples(ids: Uint32Array): Examples;
  /** Samples [start, end) of an evaluation split. */
  evalExamples(split: EvalSplit, start: number, end: number): Examples;
}

/** Labelled arrays: the common form of image and tabular data. */
export interface LabelledArrays {
  x: Float32Array;
  y: Int32Array;
  count: number;
  inputShape: number[];
  classes: number;
  classNames?: string[];
  /** What was done to the raw values to give `x`. */
  preprocessing?: Preprocessing;
}

/** The half-open range of `length` items that `rank` of `world` takes: contiguous, sizes differ by ≤ 1. */
/** Rows `indices` of a labelled array set, as a new set. */
export function selectRows(data: LabelledArrays, indices: ArrayLike<number>): LabelledArrays {
  const width = data.x.length / Math.max(1, data.count);
  const x = new Float32Array(indices.length * width);
  const y = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const row = indices[i];
    x.set(data.x.subarray(row * width, (row + 1) * width), i * width);
    y[i] = data.y[row];
  }
  return { ...data, x, y, count: indices.length };
}

/** Splits off a seeded random `fraction` of the rows: [rest, taken]. */
export function splitRows(data: LabelledArrays, fraction: number, seed: number): [LabelledArrays, LabelledArrays] {
  const order = permutation(data.count, seed);
  const taken = Math.round(fraction * data.count);
  const takenRows = Array.from(order.subarray(0, taken)).sort((a, b) => a - b);
  const restRows = Array.from(order.subarray(taken)).sort((a, b) => a - b);
  return [selectRows(data, restRows), selectRows(data, takenRows)];
}

/** Salts that keep the seeded streams of different purposes apart. */
export const SEED_SALT = { holdback: 1, test: 2, epoch: 3, init: 4, dropout: 5, windows: 6, limit: 7 } as const;

/**
 * Image and tabular data held in memory. The holdback split is a seeded random fraction of the
 * training data; each epoch visits the training split in a fresh seeded permutation.
 */
export class ArrayDataSource implements DataSource {
  readonly inputShape: number[];
  readonly inputType = 'float32' as const;
  readonly classes: number;
  readonly targetsPerSample = 1;
  private readonly train: LabelledArrays;
  private readonly holdback: LabelledArrays;
  private readonly test: LabelledArrays;
  private cachedEpoch = -1;
  private cachedOrder: Uint32Array = new Uint32Array(0);

  constructor(
    readonly description: string,
    train: LabelledArrays,
    test: LabelledArrays,
    holdbackFraction: number,
    private readonly seed: number,
  ) {
    [this.train, this.holdback] = splitRows(train, holdbackFraction, mixSeed(seed, SEED_SALT.holdback));
    this.test = test;
    this.inputShape = train.inputShape;
    this.classes = train.classes;
  }

  get layout(): InputLayout {
    const { inputShape, classes, classNames, preprocessing } = this.train;
    return {
      shape: inputShape,
      type: 'float32',
      classes,
      classNames: classNames ?? null,
      preprocessing: preprocessing ?? { kind: 'none' },
    };
  }

  get trainCount(): number {
    return this.train.count;
  }
  get holdbackCount(): number {
    return this.holdback.count;
  }
  get testCount(): number {
    return this.test.count;
  }

  stepsPerEpoch(batchSize: number): number {
    return Math.max(1, Math.ceil(this.train.count / batchSize));
  }

  globalBatch(step: number, batchSize: number): Uint32Array {
    const steps = this.stepsPerEpoch(batchSize);
    const epoch = Math.floor(step / steps);
    if (epoch !== this.cachedEpoch) {
      this.cachedOrder = permutation(this.train.count, mixSeed(this.seed, SEED_SALT.epoch, epoch));
      this.cachedEpoch = epoch;
    }
    const start = (step - epoch * steps) * batchSize;
    return this.cachedOrder.slice(start, Math.min(this.train.count, start + batchSize));
  }

  trainExamples(ids: Uint32Array): Examples {
    return this.rows(this.train, ids, ids);
  }

  evalExamples(split: EvalSplit, start: number, end: number): Examples {
    const data = split === 'holdback' ? this.holdback : this.test;
    const rows = new Uint32Array(end - start);
    for (let i = 0; i < rows.length; i++) rows[i] = start + i;
    return this.rows(data, rows, rows);
  }

  private rows(data: LabelledArrays, rows: Uint32Array, ids: Uint32Array): Examples {
    const { x, y } = selectRows(data, rows);
    return { x, y, count: rows.length, ids };
  }
}
