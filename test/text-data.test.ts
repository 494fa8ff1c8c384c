// The GPT's data: the character tokenizer, the text data source (contiguous splits, seeded
// training windows, fixed evaluation windows), Moby Dick, and one clear error per bad text file.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GPT_ROUND_STEPS, resolveConfig } from '../src/config.ts';
import { DataError } from '../src/training/data/errors.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import { readTextFile, TextDataSource, type TextSplitOptions } from '../src/training/data/text.ts';
import { CharTokenizer } from '../src/training/data/tokenizer.ts';
import { OCCAM_BIN } from '../src/coordinator/local-cluster.ts';

const SPLITS: TextSplitOptions = { blockSize: 8, testFraction: 0.1, holdback: 0.1, seed: 7, trainLimit: 0 };
const CORPUS = 'It is not down in any map; true places never are.\n'.repeat(20);

function tempFile(name: string, contents: string | Uint8Array): string {
  const path = join(mkdtempSync(join(tmpdir(), 'occam-text-')), name);
  writeFileSync(path, contents);
  return path;
}

describe('character tokenizer', () => {
  it('round-trips any text made of its characters, astral code points included', () => {
    const text = 'Call me Ishmael.\nŒuvre — ταῦτα, שלום, 🐋 à la mode!';
    const tokenizer = CharTokenizer.fromText(text);
    expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    expect(tokenizer.encode('🐋')).toHaveLength(1);
    expect(tokenizer.size).toBe(new Set(text).size);
  });

  it('sorts the vocabulary by code point, so it depends on the corpus alone', () => {
    const tokenizer = CharTokenizer.fromText('cab\nba');
    expect(tokenizer.vocabulary).toEqual(['\n', 'a', 'b', 'c']);
    expect(CharTokenizer.fromText('abc\n').vocabulary).toEqual(tokenizer.vocabulary);
  });

  it('names a character it does not know, and a token outside the vocabulary', () => {
    const tokenizer = CharTokenizer.fromText('abc');
    expect(() => tokenizer.encode('abz')).toThrow(/"z" \(U\+007A\) is not in the vocabulary/);
    expect(() => tokenizer.decode([3])).toThrow(/token 3 is outside the vocabulary of 3/);
  });
});

describe('text data source', () => {
  const data = new TextDataSource('test corpus', 'test', CORPUS, SPLITS);
  const tokens = data.tokenizer.encode(CORPUS);
  const total = tokens.length;
  const testStart = total - Math.round(0.1 * total);
  const holdbackStart = testStart - Math.round(0.1 * testStart);

  it('splits the stream into contiguous train | holdback | test blocks of fixed windows', () => {
    expect(data.inputShape).toEqual([8]);
    expect(data.inputType).toBe('int32');
    expect(data.targetsPerSample).toBe(8);
    expect(data.classes).toBe(new Set(CORPUS).size);
    expect(data.testCount).toBe(Math.floor((total - testStart - 1) / 8));
    expect(data.holdbackCount).toBe(Math.floor((testStart - holdbackStart - 1) / 8));
    // Window k of a split: inputs at split start + 8k, targets one token later.
    const test = data.evalExamples('test', 2, 4);
    expect(test.count).toBe(2);
    expect(Array.from(test.x.subarray(0, 8))).toEqual(Array.from(tokens.subarray(testStart + 16, testStart + 24)));
    expect(Array.from(test.y.subarray(8, 16))).toEqual(Array.from(tokens.subarray(testStart + 25, testStart + 33)));
    const holdback = data.evalExamples('holdback', 0, data.holdbackCount);
    expect(Array.from(holdback.x.subarray(0, 8))).toEqual(Array.from(tokens.subarray(holdbackStart, holdbackStart + 8)));
    // The last holdback target is still inside the holdback block.
    expect(holdbackStart + 8 * data.holdbackCount + 1).toBeLessThanOrEqual(testStart);
  });

  it('draws training windows as a pure function of (seed, step), inside the training block', () => {
    const again = new TextDataSource('test corpus', 'test', CORPUS, SPLITS);
    expect(Array.from(again.globalBatch(5, 32))).toEqual(Array.from(data.globalBatch(5, 32)));
    expect(Array.from(data.globalBatch(6, 32))).not.toEqual(Array.from(data.globalBatch(5, 32)));
    const otherSeed = new TextDataSource('test corpus', 'test', CORPUS, { ...SPLITS, seed: 8 });
    expect(Array.from(otherSeed.globalBatch(5, 32))).not.toEqual(Array.from(data.globalBatch(5, 32)));
    for (let step = 0; step < 50; step++) {
      for (const start of data.globalBatch(step, 16)) expect(start + 8 + 1).toBeLessThanOrEqual(holdbackStart);
    }
    const starts = data.globalBatch(0, 4);
    const batch = data.trainExamples(starts);
    expect(Array.from(batch.ids)).toEqual(Array.from(starts));
    expect(Array.from(batch.x.subarray(8, 16))).toEqual(Array.from(tokens.subarray(starts[1], starts[1] + 8)));
    expect(Array.from(batch.y.subarray(8, 16))).toEqual(Array.from(tokens.subarray(starts[1] + 1, starts[1] + 9)));
  });

  it('loads Moby Dick for --dataset moby-dick, with a gpt round length by default', () => {
    const config = resolveConfig({ model: 'gpt', dataset: 'moby-dick', blockSize: 64 });
    expect(config.roundSteps).toBe(GPT_ROUND_STEPS);
    expect(resolveConfig({ model: 'gpt', dataset: 'moby-dick', roundSteps: 7 }).roundSteps).toBe(7);
    const moby = loadDataSource(config) as TextDataSource;
    expect(moby.description).toMatch(/Moby Dick/);
    expect(moby.classes).toBeGreaterThan(60);
    const first = moby.evalExamples('holdback', 0, 1);
    expect(moby.tokenizer.decode(first.x)).toHaveLength(64);
    expect(moby.tokenizer.decode(moby.trainExamples(new Uint32Array([0])).x)).toMatch(/^CONTENTS/);
  });
});

describe('bad text files get one DataError naming the file and the problem', () => {
  const load = (path: string, blockSize = 8) => loadDataSource(resolveConfig({ model: 'gpt', dataset: 'text', dataPath: path, blockSize }));
  const expectDataError = (fn: () => unknown, path: string, problem: RegExp) => {
    try {
      fn();
    } catch (error) {
      expect(error).toBeInstanceOf(DataError);
      expect((error as DataError).source).toBe(path);
      expect((error as DataError).message).toMatch(problem);
      return;
    }
    throw new Error('expected a DataError');
  };

  it('missing, a directory, empty, not UTF-8, too short', () => {
    const missing = join(tmpdir(), 'occam-no-such-file.txt');
    expectDataError(() => load(missing), missing, /not found/);
    const folder = mkdtempSync(join(tmpdir(), 'occam-text-dir-'));
    expectDataError(() => load(folder), folder, /is a directory/);
    const empty = tempFile('empty.txt', '');
    expectDataError(() => load(empty), empty, /is empty/);
    const bom = tempFile('bom.txt', new Uint8Array([0xef, 0xbb, 0xbf]));
    expectDataError(() => load(bom), bom, /is empty/);
    const latin1 = tempFile('latin1.txt', new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x0a]));
    expectDataError(() => load(latin1), latin1, /not valid UTF-8/);
    const short = tempFile('short.txt', 'a short line of text\n'.repeat(3));
    expectDataError(
      () => load(short, 32),
      short,
      /too short: 63 characters leave the holdback split 5, and block size 32 needs at least 33/,
    );
  });

  it('a good file loads, and readTextFile drops a byte-order mark', () => {
    const path = tempFile('good.txt', `\ufeff${CORPUS}`);
    expect(readTextFile(path)).toBe(CORPUS);
    expect(load(path).description).toBe(`text (${path})`);
  });

  it('occam train --text FILE reports the bad file in one line and exits 2', () => {
    const empty = tempFile('empty.txt', '');
    const result = spawnSync(process.execPath, [OCCAM_BIN, 'train', '--model', 'gpt', '--text', empty], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(result.stderr.trim()).toBe(`occam: ${empty}: is empty`);
    expect(result.status).toBe(2);
  });
});
