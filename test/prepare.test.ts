// Data beyond one small text: `occam prepare` writes nanoGPT's token folder (train.bin, val.bin,
// meta.json) for character and GPT-2 BPE vocabularies; `occam train --model gpt --data-path DIR`
// trains on it and `occam sample` speaks its vocabulary; a token file larger than the heap limit
// trains, read window by window; bad folders and inputs get one line and exit 2.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, ftruncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OCCAM_BIN } from '../src/coordinator/local-cluster.ts';
import { readMetrics } from '../src/storage/run-dir.ts';
import { TOKEN_FORMAT, type TokenMeta } from '../src/training/data/token-files.ts';
import { gpt2Tokenizer, tokenizerFrom } from '../src/training/data/tokenizer.ts';

const TINY_GPT = ['--layers', '1', '--heads', '2', '--width', '16', '--block-size', '8', '--backend', 'cpu', '--quiet'];
const FIRST = 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse.\n'.repeat(12);
const SECOND = 'It is not down in any map; true places never are. Ταῦτα — 🐋!\n'.repeat(12);

function temp(name: string): string {
  return mkdtempSync(join(tmpdir(), `occam-${name}-`));
}

function occam(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [OCCAM_BIN, ...args], { encoding: 'utf8', timeout: 240_000, env: { ...process.env, ...env } });
}

/** `occam train` of the tiny gpt on a token folder, with `flags` (space-separated) and `--run-dir`. */
function trainGpt(dataPath: string, runDir: string, flags: string, env: Record<string, string> = {}) {
  return occam(['train', '--model', 'gpt', '--data-path', dataPath, ...TINY_GPT, ...flags.split(' '), '--run-dir', runDir], env);
}

/** The token ids of a .bin file. */
function tokensOf(path: string): number[] {
  const bytes = readFileSync(path);
  return Array.from({ length: bytes.length / 2 }, (_, i) => bytes.readUInt16LE(2 * i));
}

/** A folder of two text files, as a corpus folder is. */
function corpus(): string {
  const dir = temp('corpus');
  writeFileSync(join(dir, 'a.txt'), FIRST);
  writeFileSync(join(dir, 'b.txt'), SECOND);
  return dir;
}

describe('occam prepare', () => {
  it('char: a folder becomes train.bin + val.bin holding every character in order, and a gpt trains on it', () => {
    const out = join(temp('tokens'), 'moby');
    const prepared = occam(['prepare', corpus(), '--out', out, '--val-fraction', '0.2']);
    expect(prepared.status, prepared.stderr).toBe(0);
    expect(prepared.stdout).toContain(`occam train --model gpt --data-path ${out}`);
    expect(prepared.stderr).toMatch(/prepare: .* MB read \(100 %\)/);
    const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as TokenMeta;
    expect(meta).toMatchObject({ format: TOKEN_FORMAT, version: 1, tokenizer: 'char', dtype: 'uint16' });
    const tokenizer = tokenizerFrom(meta.vocabulary, 'meta.json');
    const train = tokensOf(join(out, 'train.bin'));
    const val = tokensOf(join(out, 'val.bin'));
    expect([train.length, val.length]).toEqual([meta.trainTokens, meta.valTokens]);
    expect(val.length).toBe(Math.round(0.2 * (train.length + val.length)));
    // The files in name order, a newline between them.
    expect(tokenizer.decode([...train, ...val])).toBe(`${FIRST}\n${SECOND}`);

    const runDir = join(temp('run'), 'char');
    const run = trainGpt(out, runDir, '--rounds 2 --round-steps 3 --batch-size 8 --workers 2');
    expect(run.status, run.stderr).toBe(0);
    expect(readMetrics(runDir)).toHaveLength(2);
    expect(JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8'))).toMatchObject({ dataset: 'tokens', dataPath: out });
    const sampled = occam(['sample', runDir, '--length', '30', '--prompt', 'Call me', '--backend', 'cpu']);
    expect(sampled.status, sampled.stderr).toBe(0);
    expect([...sampled.stdout.trimEnd()]).toHaveLength('Call me'.length + 30);
  });

  it('gpt2: byte-level BPE ids that decode back to the text, trained and sampled with the GPT-2 vocabulary', () => {
    const input = join(temp('text'), 'moby.txt');
    writeFileSync(input, FIRST + SECOND);
    const out = join(temp('tokens'), 'bpe');
    const prepared = occam(['prepare', input, '--out', out, '--tokenizer', 'gpt2']);
    expect(prepared.status, prepared.stderr).toBe(0);
    const meta = JSON.parse(readFileSync(join(out, 'meta.json'), 'utf8')) as TokenMeta;
    expect(meta).toMatchObject({ tokenizer: 'gpt2', vocabSize: 50257 });
    const ids = [...tokensOf(join(out, 'train.bin')), ...tokensOf(join(out, 'val.bin'))];
    expect(ids).toEqual(Array.from(gpt2Tokenizer().encode(FIRST + SECOND)));
    expect(ids.length).toBeLessThan((FIRST + SECOND).length / 2); // words, not characters

    const runDir = join(temp('run'), 'bpe');
    const run = trainGpt(out, runDir, '--rounds 1 --round-steps 2 --batch-size 2 --workers 1 --eval-limit 4');
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(runDir, 'model', 'vocab.json'), 'utf8'))).toEqual({ tokenizer: 'gpt2', vocabSize: 50257 });
    const sampled = occam(['sample', runDir, '--length', '5', '--prompt', 'Call me', '--backend', 'cpu']);
    expect(sampled.status, sampled.stderr).toBe(0);
    expect(sampled.stdout.startsWith('Call me')).toBe(true);
  });

  it('trains on a token file larger than the heap limit, reading windows from disk', () => {
    // A 3 GB train.bin (sparse: token 0 throughout) with the heap capped at 96 MB: loading it whole
    // could not fit (nor could Node read it into one buffer), so this trains only by positional reads.
    const dir = temp('huge');
    const trainTokens = 1_500_000_000;
    const fd = openSync(join(dir, 'train.bin'), 'w');
    ftruncateSync(fd, 2 * trainTokens);
    closeSync(fd);
    writeFileSync(join(dir, 'val.bin'), Buffer.alloc(2 * 4096));
    const meta: TokenMeta = {
      format: TOKEN_FORMAT,
      version: 1,
      tokenizer: 'char',
      vocabSize: 2,
      vocabulary: ['a', 'b'],
      dtype: 'uint16',
      trainTokens,
      valTokens: 4096,
      sources: [],
    };
    writeFileSync(join(dir, 'meta.json'), JSON.stringify(meta));
    const runDir = join(temp('run'), 'huge');
    const run = trainGpt(dir, runDir, '--rounds 2 --round-steps 2 --batch-size 4 --workers 1 --eval-limit 8', {
      NODE_OPTIONS: '--max-old-space-size=96',
    });
    expect(run.status, run.stderr).toBe(0);
    const metrics = readMetrics(runDir);
    expect(metrics).toHaveLength(2);
    expect(metrics[1].holdbackLoss).toBeLessThan(metrics[0].holdbackLoss as number); // it learns that every token is 'a'
  });

  it('bad inputs and damaged token folders: one line each, exit 2, nothing half-written trains', () => {
    const notUtf8 = join(temp('bad'), 'latin1.txt');
    writeFileSync(notUtf8, Buffer.from([0x43, 0x61, 0x6c, 0x6c, 0xe9, 0x0a]));
    const good = join(temp('tokens'), 'good');
    expect(occam(['prepare', corpus(), '--out', good]).status).toBe(0);
    const damaged = (name: string, change: (dir: string) => void) => {
      const dir = join(temp('tokens'), name);
      mkdirSync(dir);
      for (const file of ['train.bin', 'val.bin', 'meta.json']) writeFileSync(join(dir, file), readFileSync(join(good, file)));
      change(dir);
      return dir;
    };
    const cases: [string[], RegExp][] = [
      [['prepare', '/nonexistent/corpus.txt', '--out', temp('o')], /corpus.txt: not found/],
      [['prepare', notUtf8, '--out', temp('o')], /latin1.txt: is not valid UTF-8 text/],
      [['prepare', notUtf8, '--out', temp('o'), '--tokenizer', 'sentencepiece'], /--tokenizer must be char or gpt2/],
      [['prepare', notUtf8], /prepare needs --out DIR/],
      [['prepare', corpus(), '--out', good], /already holds a token folder/],
      [
        [
          'train',
          '--model',
          'gpt',
          '--data-path',
          damaged('nometa', (d) => writeFileSync(join(d, 'meta.json'), '{"format": "nanogpt"}')),
          ...TINY_GPT,
        ],
        /is not an occam-tokens meta file/,
      ],
      [
        [
          'train',
          '--model',
          'gpt',
          '--data-path',
          damaged('short', (d) => writeFileSync(join(d, 'train.bin'), Buffer.alloc(10))),
          ...TINY_GPT,
        ],
        /train.bin: has 10 bytes; meta.json says/,
      ],
      [
        [
          'train',
          '--model',
          'gpt',
          '--data-path',
          damaged('outside', (d) => writeFileSync(join(d, 'val.bin'), Buffer.alloc(readFileSync(join(d, 'val.bin')).length, 0xff))),
          ...TINY_GPT,
        ],
        /val.bin: holds token 65535 at 0, outside the vocabulary/,
      ],
      [['train', '--model', 'gpt', '--dataset', 'tokens', '--data-path', temp('empty'), ...TINY_GPT], /meta.json: not found/],
    ];
    for (const [args, message] of cases) {
      const result = occam(args);
      expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      // One line of error (a usage error adds the pointer to --help).
      const lines = result.stderr
        .trim()
        .split('\n')
        .filter((line) => line !== "run 'occam --help' for usage");
      expect(lines, args.join(' ')).toHaveLength(1);
      expect(result.stderr, args.join(' ')).toMatch(message);
    }
  });
});
