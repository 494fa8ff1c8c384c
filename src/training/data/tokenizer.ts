// The character tokenizer of the GPT: one token per Unicode code point, the vocabulary being the
// sorted distinct characters of the whole corpus. Sorting (not order of first appearance) makes
// the vocabulary a function of the corpus alone, so every worker and `occam sample` agree.

export class CharTokenizer {
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
