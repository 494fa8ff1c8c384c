// The commands that do not train: prepare (a corpus into a token folder) and those that use a
// finished run — report, sample, export, evaluate and predict. Each prints its result on stdout and
// keeps stderr for progress and one line of error; main() has already refused any flag the command
// does not take (help.ts COMMANDS).
import { resolve } from 'node:path';
import { evalBatchSamples, parseConfigValue, resolveConfig, type OccamConfig } from '../config.ts';
import { createLogger, type Logger } from '../common/log.ts';
import { EXPORT_FORMATS, exportRun, type ExportFormat } from '../export/export.ts';
import { writeComparisonReport, writeRunReport } from '../observe/report.ts';
import { readMetrics, readRunConfig } from '../storage/run-dir.ts';
import { loadDataSource } from '../training/data/load.ts';
import { prepareTokens } from '../training/data/prepare.ts';
import { selectBackend } from '../training/engine.ts';
import { accuracy, evaluateSplit, meanLoss } from '../training/evaluate.ts';
import { predict, readInputs } from '../training/predict.ts';
import { generate, loadTrainedGpt, SAMPLE_DEFAULTS, type SampleOptions } from '../training/sample.ts';
import { loadTrainedModel } from '../training/trained.ts';
import { configFlags, type ParsedArgs, UsageError } from './args.ts';

/** `occam report RUN_DIR…`: rewrites one run's report.html, or writes a comparison of several (default ./occam-report.html). */
export function report(args: ParsedArgs): number {
  const runDirs = args.positionals;
  if (runDirs.length === 0) throw new UsageError('report needs at least one RUN_DIR');
  const out = args.flags.get('out');
  const path =
    runDirs.length === 1 && !out ? writeRunReport(runDirs[0]) : writeComparisonReport(runDirs, resolve(out ?? 'occam-report.html'));
  process.stdout.write(`${path}\n`);
  return 0;
}

/** `occam export RUN_DIR --format F [--out DIR]`: writes the files and lists them. */
export function exportModel(args: ParsedArgs): number {
  const [runDir, ...extra] = args.positionals;
  if (!runDir || extra.length > 0) throw new UsageError('export needs exactly one RUN_DIR');
  const format = args.flags.get('format');
  if (!format) throw new UsageError(`export needs --format ${EXPORT_FORMATS.join('|')}`);
  if (!(EXPORT_FORMATS as readonly string[]).includes(format))
    throw new UsageError(`--format must be one of ${EXPORT_FORMATS.join(', ')} (got '${format}')`);
  const out = args.flags.get('out');
  for (const path of exportRun(resolve(runDir), format as ExportFormat, out ? resolve(out) : undefined)) process.stdout.write(`${path}\n`);
  return 0;
}

/**
 * `occam evaluate RUN_DIR`: the best model on the run's data (or other data of the same layout).
 * Evaluated as the run's workers did it (the same shares, summed in rank order, on the same
 * backend), so on the run's own data the figures equal the summary's best round exactly.
 */
export async function evaluate(args: ParsedArgs): Promise<number> {
  const [runDir, ...extra] = args.positionals;
  if (!runDir || extra.length > 0) throw new UsageError('evaluate needs exactly one RUN_DIR');
  const config = resolveConfig(readRunConfig(runDir), configFlags(args));
  const engine = await selectBackend(config.backend, quietLog());
  const trained = loadTrainedModel(runDir);
  const data = loadDataSource(config);
  const expected = `${trained.input.shape.join('×')} (${trained.input.classes} classes)`;
  if (data.inputShape.join('×') !== trained.input.shape.join('×') || data.classes > trained.input.classes)
    throw new UsageError(
      `${data.description} has inputs ${data.inputShape.join('×')} (${data.classes} classes); the model takes ${expected}`,
    );
  const round = trained.manifest.best.round;
  const world = readMetrics(runDir).find((m) => m.round === round)?.workers ?? config.workers;
  const result: Record<string, { loss: number | null; accuracy: number | null; count: number }> = {};
  for (const split of ['holdback', 'test'] as const) {
    const sums = await evaluateSplit(trained.model, trained.weights, data, split, world, config);
    result[split] = { loss: meanLoss(sums), accuracy: accuracy(sums), count: sums.count };
  }
  if (args.flags.has('json')) {
    process.stdout.write(`${JSON.stringify({ round, data: data.description, workers: world, backend: engine.backend, ...result })}\n`);
    return 0;
  }
  process.stdout.write(`best model of ${runDir} (round ${round}) on ${data.description}, as ${world} worker(s) on ${engine.backend}\n`);
  for (const [split, r] of Object.entries(result)) {
    const loss = r.loss === null ? '–' : r.loss.toFixed(4);
    const acc = r.accuracy === null ? '–' : `${(100 * r.accuracy).toFixed(2)}%`;
    process.stdout.write(`  ${split.padEnd(9)} loss ${loss}  accuracy ${acc}  (${r.count} samples)\n`);
  }
  return 0;
}

/** `occam predict RUN_DIR FILE`: one CSV line (or JSON line) of class probabilities per input. */
export async function predictFile(args: ParsedArgs): Promise<number> {
  const [runDir, file, ...extra] = args.positionals;
  if (!runDir || !file || extra.length > 0) throw new UsageError('predict needs RUN_DIR and FILE');
  const backend = args.flags.get('backend');
  await selectBackend(backend ? (parseConfigValue('backend', backend) as OccamConfig['backend']) : 'auto', quietLog());
  const trained = loadTrainedModel(runDir);
  const { x, count } = readInputs(trained, file);
  const { classes, probabilities } = await predict(trained, x, count, evalBatchSamples(trained.config));
  const json = args.flags.has('json');
  const csvCell = (text: string) => (/[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);
  if (!json) process.stdout.write(`${['row', 'prediction', ...classes].map(csvCell).join(',')}\n`);
  probabilities.forEach((p, row) => {
    let best = 0;
    for (let c = 1; c < p.length; c++) if (p[c] > p[best]) best = c;
    if (json) {
      const named = Object.fromEntries(classes.map((name, c) => [name, p[c]]));
      process.stdout.write(`${JSON.stringify({ row: row + 1, prediction: classes[best], probabilities: named })}\n`);
    } else {
      process.stdout.write(`${[String(row + 1), csvCell(classes[best]), ...Array.from(p, (v) => v.toFixed(6))].join(',')}\n`);
    }
  });
  return 0;
}

/** Tools that print results on stdout keep stderr for warnings and errors only. */
function quietLog(): Logger {
  return createLogger({ role: 'coordinator', level: 'warn' });
}

/** `occam sample RUN_DIR`: text from the best model of a gpt run, on stdout. */
export async function sample(args: ParsedArgs): Promise<number> {
  const [runDir, ...extra] = args.positionals;
  if (!runDir || extra.length > 0) throw new UsageError('sample needs exactly one RUN_DIR');
  const options: SampleOptions = {
    length: numberFlag(args, 'length', SAMPLE_DEFAULTS.length, (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0'),
    temperature: numberFlag(args, 'temperature', SAMPLE_DEFAULTS.temperature, (n) => Number.isFinite(n) && n >= 0, 'a number ≥ 0'),
    topK: numberFlag(args, 'top-k', SAMPLE_DEFAULTS.topK, (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0 (0 = all tokens)'),
    seed: numberFlag(
      args,
      'seed',
      SAMPLE_DEFAULTS.seed,
      (n) => Number.isInteger(n) && n >= 0 && n <= 4294967295,
      'an integer in [0, 2^32)',
    ),
    prompt: args.flags.get('prompt') ?? SAMPLE_DEFAULTS.prompt,
  };
  const backend = args.flags.get('backend');
  await selectBackend(backend ? (parseConfigValue('backend', backend) as OccamConfig['backend']) : 'auto', quietLog());
  const gpt = loadTrainedGpt(runDir);
  process.stdout.write(`${options.prompt + (await generate(gpt, options))}\n`);
  return 0;
}

/** `occam prepare INPUT --out DIR`: a token folder for --dataset tokens; progress on stderr, the summary on stdout. */
export function prepare(args: ParsedArgs): number {
  const [input, ...extra] = args.positionals;
  if (!input || extra.length > 0) throw new UsageError('prepare needs exactly one INPUT (a text file or a folder of them)');
  const out = args.flags.get('out');
  if (!out) throw new UsageError('prepare needs --out DIR');
  const tokenizer = args.flags.get('tokenizer') ?? 'char';
  if (tokenizer !== 'char' && tokenizer !== 'gpt2') throw new UsageError(`--tokenizer must be char or gpt2 (got '${tokenizer}')`);
  const valFraction = numberFlag(args, 'val-fraction', 0.1, (n) => n > 0 && n < 1, 'a fraction between 0 and 1');
  const progress = (read: number, total: number, tokens: number) =>
    process.stderr.write(
      `prepare: ${mb(read)} of ${mb(total)} MB read (${total > 0 ? Math.round((100 * read) / total) : 100} %), ${tokens.toLocaleString('en-US')} tokens\n`,
    );
  const meta = prepareTokens({ input, out, tokenizer, valFraction, progress });
  process.stdout.write(
    `${resolve(out)}: ${meta.trainTokens.toLocaleString('en-US')} train + ${meta.valTokens.toLocaleString('en-US')} val tokens, ` +
      `${meta.tokenizer} vocabulary of ${meta.vocabSize.toLocaleString('en-US')}\n` +
      `train on it: occam train --model gpt --data-path ${out}\n`,
  );
  return 0;
}

/** A numeric flag's value, or `fallback` when absent; a value that breaks `rule` is a UsageError. */
function numberFlag(args: ParsedArgs, name: string, fallback: number, valid: (n: number) => boolean, rule: string): number {
  const text = args.flags.get(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !valid(value)) throw new UsageError(`--${name} must be ${rule} (got '${text}')`);
  return value;
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}
