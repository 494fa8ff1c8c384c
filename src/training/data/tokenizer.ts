// The GPT's tokenizers. Character level: one token per Unicode code point, the vocabulary being the
// sorted distinct characters of the whole corpus (sorting, not order of first appearance, makes it
// a function of the corpus alone, so every worker and `occam sample` agree). GPT-2's byte-level
// BPE: js-tiktoken with the merges it ships. vocab.json and a token folder's meta.json say which.
import { Tiktoken } from 'js-tiktoken/lite';
import gpt2Ranks from 'js-tiktoken/ranks/gpt2';

export type TokenizerKind = 'char' | 'gpt2';

export interface Tokenizer {
  readonly kind: TokenizerKind;
  /** Token ids are 0 … size − 1. */
  readonly size: number;
  /** The token generation starts from when there is no prompt (a newline). */
  readonly startToken: number;
  /** Token ids of `text`; text it cannot encode is an error that names it. */
  encode(text: string): Int32Array;
  decode(tokens: ArrayLike<number>): string;
  /** What vocab.json holds: the characters in id order, or which BPE vocabulary. */
  describe(): TokenizerDescription;
}

export type TokenizerDescription = string[] | { tokenizer: 'gpt2'; vocabSize: number };

/** The tokenizer vocab.json or meta.json describes; `source` names the file in errors. */
export function tokenizerFrom(description: unknown, source: string): Tokenizer {
  if (Array.isArray(description)) {
    if (!description.every((c) => typeof c === 'string')) throw new Error(`${source} is not a list of characters`);
    return new CharTokenizer(description as string[]);
  }
  if (typeof description === 'object' && description !== null && (description as { tokenizer?: unknown }).tokenizer === 'gpt2') {
    return gpt2Tokenizer();
  }
  throw new Error(`${source} describes no tokenizer Occam knows (a list of characters, or {"tokenizer": "gpt2"})`);
}

/** GPT-2's byte-level BPE (50,257 tokens); loading its merges takes a moment, so it is built once. */
export function gpt2Tokenizer(): Tokenizer {
  cachedGpt2 ??= new Gpt2Tokenizer();
  return cachedGpt2;
}

let cachedGpt2: Gpt2Tokenizer | undefined;

class Gpt2Tokenizer implements Tokenizer {
  readonly kind = 'gpt2' as const;
  readonly size = GPT2_VOCABULARY;
  readonly startToken: number;
  private readonly encoding = new Tiktoken(gpt2Ranks);

  constructor() {
    this.startToken = this.encoding.encode('\n')[0];
  }

  encode(text: string): Int32Array {
    // Special tokens such as <|endoftext|> in the text are ordinary text, not control tokens.
    return Int32Array.from(this.encoding.encode(text, [], []));
  }

  decode(tokens: ArrayLike<number>): string {
    for (let i = 0; i < tokens.length; i++) {
      if (!(tokens[i] >= 0 && tokens[i] < this.size)) throw new Error(`token ${tokens[i]} is outside the vocabulary of ${this.size}`);
    }
    return this.encoding.decode(Array.from(tokens));
  }

  describe(): TokenizerDescription {
    return { tokenizer: 'gpt2', vocabSize: this.size };
  }
}

/** GPT-2's vocabulary: 50,000 merges, 256 bytes and <|endoftext|>. */
const GPT2_VOCABULARY = 50257;

export class CharTokenizer implements Tokenizer {
  readonly kind = 'char' as const;
  /** Token id → character. */
  readonly vocabulary: readonly string[];
  private readonly ids: Map<string, number>;

  constructor(vocabulary: readonly string[]) {
    if (vocabulary.length === 0) throw new Error('a tokenizer needs at least one character');
    this.vocabulary = vocabulary;
    this.ids = new Map(vocabulary.map((char, id) => [char, id]));
    if (this.ids.size !== vocabulary.length) throw new Error('the vocabulary repeats a character');
  }

  /** The tokenizer of a corpus: its distinct code points in code-point order. */
  static fromText(text: string): CharTokenizer {
    const chars = [...new Set(text)];
    chars.sort((a, b) => (a.codePointAt(0) as number) - (b.codePointAt(0) as number));
    return new CharTokenizer(chars);
  }

  get size(): number {
    return this.vocabulary.length;
  }

  get startToken(): number {
    return Math.max(this.vocabulary.indexOf('\n'), 0);
  }

  describe(): TokenizerDescription {
    return [...this.vocabulary];
  }

  /** Token ids of `text`; a character outside the vocabulary is an error that names it. */
  encode(text: string): Int32Array {
    const tokens = new Int32Array(countCodePoints(text));
    let at = 0;
    for (const char of text) {
      const id = this.ids.get(char);
      if (id === undefined)
        throw new Error(
          `character ${JSON.stringify(char)} (U+${(char.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0')}) is not in the vocabulary`,
        );
      tokens[at++] = id;
    }
    return tokens;
  }

  decode(tokens: ArrayLike<number>): string {
    let text = '';
    for (let i = 0; i < tokens.length; i++) {
      const char = this.vocabulary[tokens[i]];
      if (char === undefined) throw new Error(`token ${tokens[i]} is outside the vocabulary of ${this.size}`);
      text += char;
    }
    return text;
  }
}

function countCodePoints(text: string): number {
  let count = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    // A high surrogate followed by a low one is one code point.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    count++;
  }
  return count;
}
