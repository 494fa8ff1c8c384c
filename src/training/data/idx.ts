// Reader for IDX files (the MNIST format), plain or gzip: Fashion-MNIST from Debian's
// `dataset-fashion-mnist`, or any MNIST-format data. Every way a file can be wrong — missing,
// not gzip, wrong magic, truncated, labels that do not match the images — is one DataError.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DataError } from './errors.ts';
import type { LabelledArrays } from './source.ts';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

interface IdxArray {
  dims: number[];
  bytes: Uint8Array;
}

/** Reads the standard four files (train-/t10k- images and labels, `.gz` or not) from a folder. */
export function loadIdxFolder(dir: string): [LabelledArrays, LabelledArrays] {
  if (!existsSync(dir)) throw new DataError(dir, 'folder not found');
  const train = loadIdxPair(findIdxFile(dir, 'train-images-idx3-ubyte'), findIdxFile(dir, 'train-labels-idx1-ubyte'));
  const test = loadIdxPair(findIdxFile(dir, 't10k-images-idx3-ubyte'), findIdxFile(dir, 't10k-labels-idx1-ubyte'));
  if (train.inputShape.join('×') !== test.inputShape.join('×')) {
    throw new DataError(dir, `its train images are ${train.inputShape.join('×')} but its test images are ${test.inputShape.join('×')}`);
  }
  const classes = Math.max(train.classes, test.classes);
  return [
    { ...train, classes },
    { ...test, classes },
  ];
}

/** One images file and its labels file; pixels scaled to [0, 1]. */
export function loadIdxPair(imagesPath: string, labelsPath: string): LabelledArrays {
  const images = readIdx(imagesPath);
  const labels = readIdx(labelsPath);
  if (images.dims.length < 2) {
    throw new DataError(
      imagesPath,
      `expected an images file (3 dimensions), found ${images.dims.length} dimension(s): is it a labels file?`,
    );
  }
  if (labels.dims.length !== 1) {
    throw new DataError(labelsPath, `expected a labels file (1 dimension), found ${labels.dims.length}: is it an images file?`);
  }
  const count = images.dims[0];
  if (labels.dims[0] !== count) {
    throw new DataError(labelsPath, `has ${labels.dims[0]} labels but ${imagesPath} has ${count} images`);
  }
  const x = new Float32Array(images.bytes.length);
  for (let i = 0; i < x.length; i++) x[i] = images.bytes[i] / 255;
  const y = Int32Array.from(labels.bytes);
  let classes = 0;
  for (const label of y) classes = Math.max(classes, label + 1);
  const [rows, cols = 1] = images.dims.slice(1);
  const channels = images.dims.slice(3).reduce((a, b) => a * b, 1);
  return { x, y, count, inputShape: [rows, cols, channels], classes, preprocessing: { kind: 'pixels', divideBy: 255 } };
}

/** Parses one IDX file of unsigned bytes. */
export function readIdx(path: string): IdxArray {
  if (!existsSync(path)) throw new DataError(path, 'file not found');
  let data: Uint8Array = readFileSync(path);
  if (data[0] === 0x1f && data[1] === 0x8b) {
    try {
      data = gunzipSync(data);
    } catch (error) {
      throw new DataError(path, `corrupt gzip data (${(error as Error).message})`);
    }
  }
  if (data.length < 4 || data[0] !== 0 || data[1] !== 0) throw new DataError(path, 'not an IDX file (bad magic number)');
  if (data[2] !== 0x08) throw new DataError(path, `unsupported IDX element type 0x${data[2].toString(16)} (only unsigned bytes, 0x08)`);
  const rank = data[3];
  const headerBytes = 4 + 4 * rank;
  if (rank === 0 || data.length < headerBytes) throw new DataError(path, 'truncated IDX header');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const expected = dims.reduce((a, b) => a * b, 1);
  const actual = data.length - headerBytes;
  if (actual < expected) {
    throw new DataError(path, `truncated: the header says ${dims.join('×')} = ${expected} bytes of data, the file has ${actual}`);
  }
  if (actual > expected) throw new DataError(path, `has ${actual - expected} bytes after the ${dims.join('×')} data`);
  return { dims, bytes: data.subarray(headerBytes) };
}

function findIdxFile(dir: string, base: string): string {
  for (const name of [`${base}.gz`, base]) {
    const path = join(dir, name);
    if (existsSync(path)) return path;
  }
  throw new DataError(join(dir, base), `file not found (looked for ${base}.gz and ${base} in ${dir})`);
}
