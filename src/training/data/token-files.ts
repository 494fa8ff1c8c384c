// A token folder (`occam prepare`, nanoGPT's layout): train.bin and val.bin of little-endian
// uint16 token ids and meta.json (tokenizer, vocabulary, counts). Training reads each window from
// the files with a positional read, so a corpus larger than memory trains. The holdback split is
// the end of train.bin; val.bin is the test split.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DataError } from './errors.ts';
import { TokenDataSource, type TextSplitOptions, type TokenStore } from './text.ts';
import { type Tokenizer, type TokenizerKind, tokenizerFrom } from './tokenizer.ts';

export const TOKEN_FILES = { train: 'train.bin', val: 'val.bin', meta: 'meta.json' } as const;
export const TOKEN_FORMAT = 'occam-tokens';

/** meta.json of a token folder. */
export interface TokenMeta {
  format: typeof TOKEN_FORMAT;
  version: 1;
  tokenizer: TokenizerKind;
  vocabSize: number;
  /** char: the characters in id order (nanoGPT's itos). */
  vocabulary?: string[];
  dtype: 'uint16';
  trainTokens: number;
  valTokens: number;
  /** The text files it was made from, in order. */
  sources: string[];
}

/** The token folder at `dir` as a data source; a missing or damaged folder is one DataError naming the file. */
export function loadTokenFolder(dir: string, options: TextSplitOptions): TokenDataSource {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new DataError(dir, 'is not a folder (make one with `occam prepare`)');
  const meta = readTokenMeta(dir);
  const tokenizer = metaTokenizer(meta, join(dir, TOKEN_FILES.meta));
  const store = new TokenFiles(dir, meta, tokenizer.size);
  const description = `tokens (${dir}: ${meta.tokenizer}, ${meta.trainTokens + meta.valTokens} tokens)`;
  const source = new TokenDataSource(description, dir, tokenizer, store, meta.valTokens, options);
  // A quick look at both ends of each file, so a folder of the wrong kind fails here, before any
  // worker starts; a bad id deeper in is named when a window reads it.
  const probe = new Int32Array(Math.min(options.blockSize + 1, meta.valTokens));
  for (const start of [0, meta.trainTokens - probe.length, meta.trainTokens, store.length - probe.length])
    store.read(Math.max(0, start), probe);
  return source;
}

/** meta.json, checked field by field. */
export function readTokenMeta(dir: string): TokenMeta {
  const path = join(dir, TOKEN_FILES.meta);
  if (!existsSync(path)) throw new DataError(path, 'not found: a token folder needs meta.json (make one with `occam prepare`)');
  let meta: Partial<TokenMeta>;
  try {
    meta = JSON.parse(readFileSync(path, 'utf8')) as Partial<TokenMeta>;
  } catch {
    throw new DataError(path, 'is not valid JSON');
  }
  if (typeof meta !== 'object' || meta === null || meta.format !== TOKEN_FORMAT)
    throw new DataError(path, `is not an ${TOKEN_FORMAT} meta file`);
  if (meta.version !== 1) throw new DataError(path, `has version ${String(meta.version)}; this Occam reads version 1`);
  if (meta.dtype !== 'uint16') throw new DataError(path, `has dtype ${String(meta.dtype)}; token files hold uint16`);
  for (const key of ['vocabSize', 'trainTokens', 'valTokens'] as const) {
    const value = meta[key];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new DataError(path, `has no valid ${key}`);
  }
  return meta as TokenMeta;
}

function metaTokenizer(meta: TokenMeta, path: string): Tokenizer {
  let tokenizer: Tokenizer;
  try {
    tokenizer = tokenizerFrom(meta.tokenizer === 'gpt2' ? { tokenizer: 'gpt2' } : meta.vocabulary, path);
  } catch (error) {
    throw new DataError(path, `has no usable vocabulary (${(error as Error).message})`);
  }
  if (tokenizer.size !== meta.vocabSize)
    throw new DataError(path, `says vocabSize ${meta.vocabSize}, its vocabulary has ${tokenizer.size}`);
  return tokenizer;
}

/** train.bin followed by val.bin as one stream, read by position; ids are checked as they are read. */
class TokenFiles implements TokenStore {
  readonly length: number;
  private readonly train: TokenFile;
  private readonly val: TokenFile;

  constructor(dir: string, meta: TokenMeta, vocabSize: number) {
    this.train = new TokenFile(join(dir, TOKEN_FILES.train), meta.trainTokens, vocabSize);
    this.val = new TokenFile(join(dir, TOKEN_FILES.val), meta.valTokens, vocabSize);
    this.length = meta.trainTokens + meta.valTokens;
  }

  read(start: number, into: Int32Array): void {
    const fromTrain = Math.max(0, Math.min(into.length, this.train.tokens - start));
    if (fromTrain > 0) this.train.read(start, into.subarray(0, fromTrain));
    if (fromTrain < into.length) this.val.read(Math.max(0, start - this.train.tokens), into.subarray(fromTrain));
  }
}

/** One .bin file, kept open for positional reads for the life of the process. */
class TokenFile {
  private readonly fd: number;
  private buffer = Buffer.alloc(0);

  constructor(
    private readonly path: string,
    readonly tokens: number,
    private readonly vocabSize: number,
  ) {
    if (!existsSync(path)) throw new DataError(path, 'not found');
    this.fd = openSync(path, 'r');
    const bytes = fstatSync(this.fd).size;
    if (bytes !== 2 * tokens) {
      closeSync(this.fd);
      throw new DataError(path, `has ${bytes} bytes; meta.json says ${tokens} uint16 tokens (${2 * tokens} bytes)`);
    }
  }

  read(start: number, into: Int32Array): void {
    const bytes = 2 * into.length;
    if (this.buffer.length < bytes) this.buffer = Buffer.alloc(bytes);
    const got = readSync(this.fd, this.buffer, 0, bytes, 2 * start);
    if (got !== bytes) throw new DataError(this.path, `ended at token ${start + got / 2} while reading ${into.length} from ${start}`);
    for (let i = 0; i < into.length; i++) {
      const id = this.buffer.readUInt16LE(2 * i);
      if (id >= this.vocabSize)
        throw new DataError(this.path, `holds token ${id} at ${start + i}, outside the vocabulary of ${this.vocabSize}`);
      into[i] = id;
    }
  }
}
