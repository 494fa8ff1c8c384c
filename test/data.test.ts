import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../src/config.ts';
import { DataError } from '../src/training/data/errors.ts';
import { FASHION_MNIST_DIR, loadIdxFolder, loadIdxPair, readIdx } from '../src/training/data/idx.ts';
import { loadDataSource } from '../src/training/data/load.ts';
import { shardRange } from '../src/common/shard.ts';
import { readCsv } from '../src/training/data/tabular.ts';

const dir = mkdtempSync(join(tmpdir(), 'occam-data-'));

function idx(dims: number[], data: number[] | Uint8Array, type = 0x08): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = type;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(data)]);
}

function file(name: string, bytes: Buffer | string): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

const images = (n: number) =>
  idx(
    [n, 2, 2],
    Array.from({ length: n * 4 }, (_, i) => i % 256),
  );
const labels = (n: number) =>
  idx(
    [n],
    Array.from({ length: n }, (_, i) => i % 3),
  );

describe('IDX loader', () => {
  it('reads plain and gzip files, pixels scaled to [0, 1]', () => {
    const plain = loadIdxPair(file('a-images', images(5)), file('a-labels', labels(5)));
    const gz = loadIdxPair(file('b-images.gz', gzipSync(images(5))), file('b-labels.gz', gzipSync(labels(5))));
    expect(plain.count).toBe(5);
    expect(plain.inputShape).toEqual([2, 2, 1]);
    expect(plain.classes).toBe(3);
    expect(Array.from(gz.x)).toEqual(Array.from(plain.x));
    expect(plain.x[5]).toBeCloseTo(5 / 255, 6);
  });

  it('names the file and the problem for every kind of bad file', () => {
    const cases: [string, () => unknown, RegExp][] = [
      ['missing', () => readIdx(join(dir, 'nope')), /nope: file not found/],
      ['bad magic', () => readIdx(file('magic', Buffer.from([1, 2, 3, 4, 5]))), /magic: not an IDX file/],
      ['element type', () => readIdx(file('type', idx([1], [1], 0x0d))), /type: unsupported IDX element type/],
      [
        'truncated data',
        () => readIdx(file('trunc', images(5).subarray(0, 20))),
        /trunc: truncated: the header says 5×2×2 = 20 bytes of data, the file has 4/,
      ],
      ['truncated header', () => readIdx(file('header', Buffer.from([0, 0, 8, 3, 0]))), /header: truncated IDX header/],
      ['trailing bytes', () => readIdx(file('trail', Buffer.concat([labels(3), Buffer.from([9])]))), /trail: has 1 bytes after/],
      ['corrupt gzip', () => readIdx(file('bad.gz', Buffer.concat([gzipSync(images(2)).subarray(0, 12)]))), /bad.gz: corrupt gzip data/],
      [
        'label count',
        () => loadIdxPair(file('c-images', images(5)), file('c-labels', labels(4))),
        /c-labels: has 4 labels but .*c-images has 5 images/,
      ],
      ['swapped files', () => loadIdxPair(file('d-labels', labels(5)), file('d-images', images(5))), /d-labels: expected an images file/],
      ['missing folder', () => loadIdxFolder(join(dir, 'none')), /none: folder not found/],
      ['missing file in folder', () => loadIdxFolder(dir), /train-images-idx3-ubyte: file not found/],
    ];
    for (const [name, load, message] of cases) {
      let error: unknown;
      try {
        load();
      } catch (e) {
        error = e;
      }
      expect(error, name).toBeInstanceOf(DataError);
      expect((error as Error).message, name).toMatch(message);
    }
  });

  it.skipIf(!existsSync(FASHION_MNIST_DIR))('reads Fashion-MNIST from the Debian package', () => {
    const [train, test] = loadIdxFolder(FASHION_MNIST_DIR);
    expect(train.count).toBe(60000);
    expect(test.count).toBe(10000);
    expect(train.inputShape).toEqual([28, 28, 1]);
    expect(train.classes).toBe(10);
  });
});

describe('CSV loader', () => {
  it('reads numeric features and maps labels to classes', () => {
    const path = file('ok.csv', 'a,b,"kind"\n1,2,cat\n3,4.5,dog\n\n-1,"6",cat\n');
    const table = readCsv(path, 'kind');
    expect(table.features).toEqual(['a', 'b']);
    expect(table.classNames).toEqual(['cat', 'dog']);
    expect(Array.from(table.data.y)).toEqual([0, 1, 0]);
    expect(Array.from(table.data.x)).toEqual([1, 2, 3, 4.5, -1, 6]);
  });

  it('names the file, line and column of every problem', () => {
    const cases: [string, string, RegExp][] = [
      ['missing.csv', '', /missing.csv: file not found/],
      ['empty.csv', 'a,b\n', /empty.csv: needs a header row and at least one data row/],
      ['nolabel.csv', 'a,b\n1,2\n', /nolabel.csv: no label column 'label' \(columns: a, b\)/],
      ['text.csv', 'a,label\n1,x\nhello,y\n', /text.csv: line 3, column 'a': 'hello' is not a number/],
      ['ragged.csv', 'a,label\n1,x\n2\n', /ragged.csv: line 3 has 1 fields, the header has 2/],
      ['blank.csv', 'a,label\n1,\n', /blank.csv: line 2: empty label in column 'label'/],
    ];
    for (const [name, content, message] of cases) {
      const path = name === 'missing.csv' ? join(dir, name) : file(name, content);
      expect(() => readCsv(path, 'label'), name).toThrow(message);
    }
  });
});

describe('holdback split, epochs and shards', () => {
  it('the holdback split is a deterministic function of the seed', () => {
    const a = loadDataSource(resolveConfig({ seed: 7 }));
    const b = loadDataSource(resolveConfig({ seed: 7 }));
    const c = loadDataSource(resolveConfig({ seed: 8 }));
    expect(a.holdbackCount).toBe(800);
    expect(a.trainCount).toBe(7200);
    expect(a.testCount).toBe(2000);
    const first = (s: typeof a) => Array.from(s.evalExamples('holdback', 0, 50).x.subarray(0, 50 * 784));
    expect(first(a)).toEqual(first(b));
    expect(first(a)).not.toEqual(first(c));
  });

  it('reshuffles every epoch, each epoch visiting every training sample once', () => {
    const source = loadDataSource(resolveConfig({ trainLimit: 1000, holdback: 0.2 }));
    const steps = source.stepsPerEpoch(128);
    expect(steps).toBe(Math.ceil(800 / 128));
    const epoch = (e: number) => Array.from({ length: steps }, (_, s) => Array.from(source.globalBatch(e * steps + s, 128))).flat();
    const e0 = epoch(0);
    const e1 = epoch(1);
    expect(new Set(e0).size).toBe(800);
    expect([...e0].sort((x, y) => x - y)).toEqual([...e1].sort((x, y) => x - y));
    expect(e0).not.toEqual(e1);
    expect(Array.from(source.globalBatch(3, 128))).toEqual(e0.slice(3 * 128, 4 * 128));
  });

  it('trainLimit takes a seeded random subset, so a class-sorted source keeps every class', () => {
    const source = loadDataSource(resolveConfig({ trainLimit: 500, holdback: 0 }));
    expect(source.trainCount).toBe(500);
    const labels = new Set(source.trainExamples(Uint32Array.from({ length: 500 }, (_, i) => i)).y);
    expect(labels.size).toBe(10);
  });

  it('shard ranges cover a batch exactly once for any world size', () => {
    for (const length of [0, 1, 7, 128, 129]) {
      for (let world = 1; world <= 5; world++) {
        const covered: number[] = [];
        for (let rank = 0; rank < world; rank++) {
          const [start, end] = shardRange(length, rank, world);
          for (let i = start; i < end; i++) covered.push(i);
        }
        expect(covered).toEqual(Array.from({ length }, (_, i) => i));
      }
    }
  });

  it('Iris and a CSV become standardised sources with a seeded test split', () => {
    const iris = loadDataSource(resolveConfig({ dataset: 'iris', holdback: 0.1, testFraction: 0.2 }));
    expect(iris.trainCount + iris.holdbackCount + iris.testCount).toBe(150);
    expect(iris.testCount).toBe(30);
    expect(iris.classes).toBe(3);
    expect(iris.inputShape).toEqual([4]);
  });
});
