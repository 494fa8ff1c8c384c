// `occam prepare`: a text file, or a folder of them, tokenized into a token folder in nanoGPT's
// layout (train.bin, val.bin: uint16 token ids; meta.json). Files are read in chunks and tokens
// are written as they come, so a corpus larger than memory prepares; the last valFraction of the
// tokens becomes val.bin. Character level needs a first pass to find the vocabulary.
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { writeAtomically } from '../../storage/atomic-file.ts';
import { DataError } from './errors.ts';
import { TOKEN_FILES, TOKEN_FORMAT, type TokenMeta } from './token-files.ts';
import { CharTokenizer, gpt2Tokenizer, type Tokenizer, type TokenizerKind } from './tokenizer.ts';

export interface PrepareOptions {
  /** A UTF-8 text file, or a folder whose files (sorted by name) are read in order. */
  input: string;
  out: string;
  tokenizer: TokenizerKind;
  /** Fraction of the tokens (the end) written to val.bin. */
  valFraction: number;
  /** Called about once a second with the bytes read so far and the total. */
  progress?(readBytes: number, totalBytes: number, tokens: number): void;
}

/** Bytes read from a file at a time. */
const CHUNK_BYTES = 4 << 20;
/** uint16 token ids: a vocabulary may not be larger. */
const MAX_VOCABULARY = 65536;

export function prepareTokens(options: PrepareOptions): TokenMeta {
  const sources = textFiles(options.input);
  if (!(options.valFraction > 0 && options.valFraction < 1))
    throw new DataError('--val-fraction', `must be between 0 and 1 (got ${options.valFraction})`);
  if (existsSync(join(options.out, TOKEN_FILES.meta))) {
    throw new DataError(options.out, 'already holds a token folder (meta.json); choose another --out or remove it');
  }
  mkdirSync(options.out, { recursive: true });
  const totalBytes = sources.reduce((n, path) => n + statSync(path).size, 0);
  const tokenizer = options.tokenizer === 'gpt2' ? gpt2Tokenizer() : charVocabulary(sources);
  // Between files: GPT-2's end-of-text token (as GPT-2 was trained), or a newline for characters.
  const separator = options.tokenizer === 'gpt2' ? [tokenizer.size - 1] : Array.from(tokenizer.encode('\n'));

  const trainPath = join(options.out, TOKEN_FILES.train);
  const out = openSync(`${trainPath}.partial`, 'w');
  let tokens = 0;
  let readBytes = 0;
  let lastReport = 0;
  const write = (ids: ArrayLike<number>) => {
    const bytes = Buffer.alloc(2 * ids.length);
    for (let i = 0; i < ids.length; i++) bytes.writeUInt16LE(ids[i], 2 * i);
    writeSync(out, bytes);
    tokens += ids.length;
  };
  try {
    sources.forEach((path, index) => {
      if (index > 0) write(separator);
      forEachTextChunk(path, (text, bytes) => {
        write(encodeChunk(tokenizer, text, path));
        readBytes += bytes;
        if (Date.now() - lastReport > 1000) {
          options.progress?.(readBytes, totalBytes, tokens);
          lastReport = Date.now();
        }
      });
    });
  } finally {
    closeSync(out);
  }
  const valTokens = Math.max(1, Math.round(options.valFraction * tokens));
  if (tokens - valTokens < 1)
    throw new DataError(options.input, `holds only ${tokens} tokens: too few to split into train.bin and val.bin`);
  splitTail(`${trainPath}.partial`, join(options.out, TOKEN_FILES.val), tokens - valTokens, valTokens);
  renameSync(`${trainPath}.partial`, trainPath);
  options.progress?.(totalBytes, totalBytes, tokens);

  const meta: TokenMeta = {
    format: TOKEN_FORMAT,
    version: 1,
    tokenizer: options.tokenizer,
    vocabSize: tokenizer.size,
    ...(tokenizer instanceof CharTokenizer ? { vocabulary: [...tokenizer.vocabulary] } : {}),
    dtype: 'uint16',
    trainTokens: tokens - valTokens,
    valTokens,
    sources,
  };
  // meta.json last: a folder without it is an unfinished one, which training refuses.
  writeAtomically(join(options.out, TOKEN_FILES.meta), `${JSON.stringify(meta, null, 2)}\n`);
  return meta;
}

/** The input's text files: the file itself, or a folder's regular files (not hidden), sorted by name. */
function textFiles(input: string): string[] {
  if (!existsSync(input)) throw new DataError(input, 'not found');
  if (!statSync(input).isDirectory()) return [input];
  const files = readdirSync(input)
    .filter((name) => !name.startsWith('.'))
    .sort()
    .map((name) => join(input, name))
    .filter((path) => statSync(path).isFile());
  if (files.length === 0) throw new DataError(input, 'is a folder without text files');
  return files;
}

/** First pass of character level: the sorted distinct characters of every file. */
function charVocabulary(sources: string[]): Tokenizer {
  const chars = new Set<string>(sources.length > 1 ? ['\n'] : []);
  for (const path of sources)
    forEachTextChunk(path, (text) => {
      for (const char of text) chars.add(char);
    });
  if (chars.size === 0) throw new DataError(sources[0], 'is empty');
  if (chars.size > MAX_VOCABULARY)
    throw new DataError(sources[0], `has ${chars.size} distinct characters; uint16 token ids allow ${MAX_VOCABULARY}`);
  return CharTokenizer.fromText([...chars].join(''));
}

function encodeChunk(tokenizer: Tokenizer, text: string, path: string): Int32Array {
  try {
    return tokenizer.encode(text);
  } catch (error) {
    throw new DataError(path, (error as Error).message);
  }
}

/**
 * Calls `use` with a file's text a chunk at a time, each ending at a line break where there is
 * one (so BPE never merges across a chunk boundary mid-word); invalid UTF-8 is one DataError.
 */
function forEachTextChunk(path: string, use: (text: string, bytes: number) => void): void {
  const fd = openSync(path, 'r');
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const buffer = Buffer.alloc(CHUNK_BYTES);
  let carry = '';
  let offset = 0;
  let any = false;
  try {
    for (;;) {
      const got = readSync(fd, buffer, 0, CHUNK_BYTES, offset);
      let text: string;
      try {
        text = carry + decoder.decode(buffer.subarray(0, got), { stream: got > 0 });
      } catch {
        throw new DataError(path, `is not valid UTF-8 text (near byte ${offset})`);
      }
      offset += got;
      any ||= got > 0;
      if (got === 0) {
        if (text.length > 0) use(text, 0);
        break;
      }
      const cut = text.lastIndexOf('\n') + 1;
      carry = cut > 0 ? text.slice(cut) : '';
      use(cut > 0 ? text.slice(0, cut) : text, got);
    }
  } finally {
    closeSync(fd);
  }
  if (!any) throw new DataError(path, 'is empty');
}

/** Moves the last `count` tokens of the file at `from` (after `keep` tokens) to `to`, and truncates. */
function splitTail(from: string, to: string, keep: number, count: number): void {
  const source = openSync(from, 'r+');
  const target = openSync(to, 'w');
  try {
    const buffer = Buffer.alloc(CHUNK_BYTES);
    for (let done = 0; done < 2 * count; ) {
      const got = readSync(source, buffer, 0, Math.min(CHUNK_BYTES, 2 * count - done), 2 * keep + done);
      writeSync(target, buffer, 0, got);
      done += got;
    }
    ftruncateSync(source, 2 * keep);
  } finally {
    closeSync(source);
    closeSync(target);
  }
}
