// The `occam` command line: `train` (a local cluster, the main command), `coordinator` and
// `worker` (the processes of a real cluster). Every training setting is a --kebab-case flag, an
// OCCAM_* environment variable or a key of a --config JSON file; the token never travels on the
// command line, where `ps` would show it.
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, parseConfigValue, resolveConfig, type OccamConfig } from './config.ts';
import { loadDataSource } from './training/data/load.ts';
import { selectBackend } from './training/engine.ts';
import { generate, loadTrainedGpt, SAMPLE_DEFAULTS, type SampleOptions } from './training/sample.ts';
import { loadTrainedModel, saveModelInputs } from './training/trained.ts';
import { accuracy, evaluateSplit, meanLoss } from './training/evaluate.ts';
import { predict, readInputs } from './training/predict.ts';
import { createLogger, setLogContext, type Logger } from './common/log.ts';
import { AuthenticatedServer, sendJson } from './wire/server.ts';
import { readTlsOptions } from './wire/tls.ts';
import { Coordinator, RunStopped } from './coordinator/coordinator.ts';
import { trainLocally } from './coordinator/local-cluster.ts';
import { withObservability } from './observe/observability.ts';
import { formatSummary, terminalMode, TerminalView } from './observe/terminal.ts';
import { writeComparisonReport, writeRunReport } from './observe/report.ts';
import { readMetrics, readRunConfig, type RunSummary } from './storage/run-dir.ts';
import { EXPORT_FORMATS, exportRun, type ExportFormat } from './export/export.ts';
import { faultHooks } from './worker/faults.ts';
import { Worker } from './worker/worker.ts';
import {
  configFlags,
  configFromEnv,
  flag,
  maxMessageBytes,
  numberFlag,
  parseArgs,
  portFlag,
  readConfig,
  readToken,
  stopGraceMs,
  UsageError,
  type ParsedArgs,
} from './cli/args.ts';

const USAGE = `occam — distributed sparse training with Occam Gradient Descent

usage:
  occam train [options]                 train with a local coordinator and --workers N worker processes
  occam train --resume RUN_DIR          continue a run from its last valid checkpoint
  occam coordinator [options]           run a cluster's coordinator (token: OCCAM_TOKEN or --token-file)
  occam worker --coordinator URL        run one worker (token: OCCAM_TOKEN or --token-file)
  occam report RUN_DIR [RUN_DIR…] [--out FILE]
                                        one run's report.html again, or several runs compared on the same axes
  occam sample RUN_DIR [--length N] [--temperature T] [--top-k K] [--seed S] [--prompt TEXT]
                                        generate text from a gpt run's best model
  occam export RUN_DIR --format onnx|tfjs|safetensors-torch [--out DIR]
                                        the best model for onnxruntime, TF.js or PyTorch (default RUN_DIR/export/FORMAT)
  occam evaluate RUN_DIR [--dataset D --data-path P --label-column C --eval-limit N] [--json]
                                        loss and accuracy of the best model (default: the run's own data)
  occam predict RUN_DIR FILE [--json]   class probabilities for a CSV of rows or an IDX file of images, as CSV

training settings (flags, OCCAM_<NAME> variables, or keys of --config FILE.json):
  --dataset mnist|fashion-mnist|idx|csv|iris|moby-dick|text   --data-path PATH   --label-column NAME
  --model mlp|cnn|gpt   --units N   --rounds N   --batch-size N (global)   --learning-rate X
  gpt: --layers N --heads N --width N --block-size N   --round-steps N (0 = 200 for gpt)
       --text FILE (= --dataset text --data-path FILE; any UTF-8 file)
  --strategy occam|none|posttrain|gradual   --p0 X   --target-density X   --holdback X
  --workers N   --seed N   --backend auto|tensorflow|blas|wasm|cpu   (and every key of DEFAULT_CONFIG)

output: --run-dir DIR (default runs/<run id>)   --json (events as JSON lines)   --quiet   --pretty-logs
        --port P (train: the status page and /metrics on 127.0.0.1:P; default any free port)
cluster: --host H --port P (coordinator)   --ring-host H --ring-port P --worker-id ID --gpu INDEX (worker)
         --linger (coordinator: after the run, keep serving status until SIGTERM, as a pod must)
         --token-file FILE   --tls-cert FILE --tls-key FILE --tls-ca FILE`;

/** Flags that are not training settings. */
export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.flags.has('help') || args.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const pretty = args.flags.has('pretty-logs') || undefined;
  const log = createLogger({ role: args.command === 'worker' ? 'worker' : 'coordinator', pretty });
  if (!['sample', 'report', 'export', 'evaluate', 'predict'].includes(args.command) && args.positionals.length > 0)
    throw new UsageError(`unexpected argument '${args.positionals[0]}'`);
  switch (args.command) {
    case 'train':
      return train(args, pretty);
    case 'coordinator':
      return runCoordinator(args, log);
    case 'worker':
      return runWorker(args, log);
    case 'sample':
      return sample(args);
    case 'report':
      return report(args);
    case 'export':
      return exportModel(args);
    case 'evaluate':
      return evaluate(args);
    case 'predict':
      return predictFile(args);
    default:
      throw new UsageError(`unknown command '${args.command}'`);
  }
}

async function train(args: ParsedArgs, pretty: boolean | undefined): Promise<number> {
  const resumeDir = args.flags.get('resume');
  const config = resumeDir ? resolveConfig(readRunConfig(resumeDir), configFlags(args)) : readConfig(args);
  // Fail fast, in this process, on a data problem: one clear error before any worker starts.
  const data = loadDataSource(config);
  const runId = resumeDir ? (resolve(resumeDir).split('/').pop() ?? 'run') : newRunId(config);
  const runDir = resolve(resumeDir ?? args.flags.get('run-dir') ?? join('runs', runId));
  saveModelInputs(runDir, data);
  const view = new TerminalView(terminalMode({ json: args.flags.has('json'), quiet: args.flags.has('quiet') }, process.stderr));
  view.setBatchSize(config.batchSize);
  // The terminal shows progress; the coordinator's structured log goes to the run directory.
  mkdirSync(runDir, { recursive: true });
  const log = createLogger({
    role: 'coordinator',
    pretty,
    destination: createWriteStream(join(runDir, 'coordinator.log'), { flags: 'a' }),
    context: { runId },
  });
  process.stderr.write(
    `occam: training ${config.model} on ${config.dataset} with ${config.workers} worker(s), strategy ${config.strategy}; run directory ${runDir}\n`,
  );
  const port = Number(args.flags.get('port') ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port must be a port number (got '${args.flags.get('port')}')`);
  const onListening = (listening: number) =>
    process.stderr.write(`occam: status page http://127.0.0.1:${listening}/ · metrics http://127.0.0.1:${listening}/metrics\n`);
  const summary = await trainLocally({ config, runDir, runId, log, port, onListening, onEvent: (e) => view.handle(e) });
  if (args.flags.has('json')) process.stdout.write(`${JSON.stringify({ type: 'summary', summary })}\n`);
  else process.stdout.write(`\n${formatSummary(summary)}\n\nrun directory: ${runDir}\n`);
  return 0;
}

async function runCoordinator(args: ParsedArgs, log: Logger): Promise<number> {
  const runDirFlag = args.flags.get('run-dir') ?? process.env.OCCAM_RUN_DIR;
  if (!runDirFlag) throw new UsageError('coordinator needs --run-dir (or OCCAM_RUN_DIR): checkpoints and metrics go there');
  const runDir = resolve(runDirFlag);
  // A restarted coordinator continues the run its run directory holds. Settings given again (the
  // Kubernetes ConfigMap on every start) must match it: RunDir refuses a different config by name.
  const explicit = args.flags.has('config') || Object.keys(configFromEnv()).length > 0 || Object.keys(configFlags(args)).length > 0;
  const config = existsSync(join(runDir, 'config.json')) && !explicit ? resolveConfig(readRunConfig(runDir)) : readConfig(args);
  // Best effort: the workers hold the data; without model/input.json and vocab.json, using the
  // model later loads the data its config names to learn them.
  try {
    saveModelInputs(runDir, loadDataSource(config));
  } catch (error) {
    log.warn({ err: (error as Error).message }, 'could not record the model input layout (model/input.json)');
  }
  const runId = runDir.split('/').pop() ?? 'run';
  setLogContext(log, { runId });
  const coordinator = new Coordinator(
    withObservability({
      config,
      runDir,
      runId,
      host: flag(args, 'host', 'OCCAM_HOST') ?? '0.0.0.0',
      port: portFlag(args, 'port', 'OCCAM_PORT', 7070),
      token: readToken(args),
      log,
      tls: readTlsOptions(
        flag(args, 'tls-cert', 'OCCAM_TLS_CERT'),
        flag(args, 'tls-key', 'OCCAM_TLS_KEY'),
        flag(args, 'tls-ca', 'OCCAM_TLS_CA'),
      ),
      maxMessageBytes: maxMessageBytes(args),
    }),
  );
  await coordinator.listen();
  // SIGTERM (Kubernetes stopping the pod): finish the current segment, commit, and exit; the
  // workers keep reconnecting, to the restarted coordinator. A hung segment cannot hold the pod
  // past the grace time: then the previous commit stands.
  const graceMs = stopGraceMs();
  process.on('SIGTERM', () => {
    log.info({ graceMs }, 'SIGTERM: stopping after the next checkpoint commit');
    coordinator.requestStop();
    setTimeout(() => {
      log.warn('grace time over; exiting with the previous commit');
      process.exit(0);
    }, graceMs).unref();
  });
  try {
    const summary = await coordinator.run();
    process.stdout.write(`${formatSummary(summary)}\n`);
    await coordinator.close('run finished');
    if (args.flags.has('linger') || /^(1|true)$/i.test(process.env.OCCAM_LINGER ?? '')) await linger(coordinator, summary, args, log);
  } catch (error) {
    if (!(error instanceof RunStopped)) throw error;
    log.info({ step: error.step }, 'stopped after a commit; a restarted coordinator resumes from it');
    await coordinator.close('coordinator stopping', false);
  }
  return 0;
}

/**
 * --linger: in a pod, exiting would restart the container and replay the finished run. Instead
 * keep answering the probes and /status.json (phase done, with the summary) until SIGTERM, so the
 * pod stays Running and its run directory can be copied out; workers are refused (410).
 */
async function linger(coordinator: Coordinator, summary: RunSummary, args: ParsedArgs, log: Logger): Promise<void> {
  const tls = readTlsOptions(
    flag(args, 'tls-cert', 'OCCAM_TLS_CERT'),
    flag(args, 'tls-key', 'OCCAM_TLS_KEY'),
    flag(args, 'tls-ca', 'OCCAM_TLS_CA'),
  );
  const server = new AuthenticatedServer({
    name: 'linger',
    token: null,
    log,
    tls,
    routes: (path) => {
      if (path === '/healthz') return { status: 200, body: { ok: true } };
      if (path === '/readyz') return { status: 503, body: { phase: 'done' } };
      if (path === '/status.json') return { status: 200, body: { ...coordinator.status(), summary } };
      return null;
    },
    fallback: (_request, response) => {
      sendJson(response, 410, { error: 'the run is finished' });
      return true;
    },
  });
  await server.listen(portFlag(args, 'port', 'OCCAM_PORT', 7070), flag(args, 'host', 'OCCAM_HOST') ?? '0.0.0.0');
  log.info('run finished; serving /status.json until SIGTERM (--linger)');
  await new Promise((resolve) => process.once('SIGTERM', resolve));
  await server.close();
}

async function runWorker(args: ParsedArgs, log: Logger): Promise<number> {
  const coordinatorUrl = flag(args, 'coordinator', 'OCCAM_COORDINATOR');
  if (!coordinatorUrl) throw new UsageError('worker needs --coordinator ws://HOST:PORT (or OCCAM_COORDINATOR)');
  const ringHost = flag(args, 'ring-host', 'OCCAM_RING_HOST') ?? hostname();
  const tls = readTlsOptions(
    flag(args, 'tls-cert', 'OCCAM_TLS_CERT'),
    flag(args, 'tls-key', 'OCCAM_TLS_KEY'),
    flag(args, 'tls-ca', 'OCCAM_TLS_CA'),
  );
  // With TLS the token must never cross the wire in clear text.
  if (tls && !coordinatorUrl.startsWith('wss://'))
    throw new UsageError(`TLS is configured, so --coordinator must be a wss:// URL (got '${coordinatorUrl}')`);
  const backend = args.flags.get('backend') ?? process.env.OCCAM_BACKEND;
  const worker = new Worker({
    coordinatorUrl,
    token: readToken(args),
    workerId: flag(args, 'worker-id', 'OCCAM_WORKER_ID') ?? `${hostname()}-${process.pid}`,
    ringBindHost: flag(args, 'ring-bind-host', 'OCCAM_RING_BIND_HOST') ?? (ringHost === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0'),
    ringAdvertiseHost: ringHost,
    ringPort: portFlag(args, 'ring-port', 'OCCAM_RING_PORT', 0),
    backend: backend ? (parseConfigValue('backend', backend) as OccamConfig['backend']) : undefined,
    gpu:
      flag(args, 'gpu', 'OCCAM_GPU') === undefined
        ? undefined
        : numberFlag(args, 'gpu', 'OCCAM_GPU', 0, (n) => Number.isInteger(n) && n >= 0 && n < 1024, 'a GPU index ≥ 0'),
    localRank: numberFlag(args, 'local-rank', 'OCCAM_LOCAL_RANK', 0, (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0'),
    log,
    tls,
    reconnectGiveUpMs: args.flags.has('exit-with-parent') ? 30000 : 0,
    hooks: faultHooks(process.env.OCCAM_FAULTS, (fault) => log.warn({ fault }, 'fault injection')),
    maxMessageBytes: maxMessageBytes(args),
  });
  if (args.flags.has('exit-with-parent')) process.on('disconnect', () => process.exit(0));
  // SIGTERM (the pod is stopping, e.g. scaled down): leave at the coordinator's next commit, so
  // the run redoes no steps; OCCAM_STOP_GRACE_MS bounds the wait.
  const graceMs = stopGraceMs();
  process.on('SIGTERM', () => worker.leave(graceMs));
  await worker.run();
  return 0;
}

/** `occam report RUN_DIR…`: rewrites one run's report.html, or writes a comparison of several (default ./occam-report.html). */
function report(args: ParsedArgs): number {
  const runDirs = args.positionals;
  if (runDirs.length === 0) throw new UsageError('report needs at least one RUN_DIR');
  onlyFlags(args, 'report', ['out']);
  const out = args.flags.get('out');
  const path =
    runDirs.length === 1 && !out ? writeRunReport(runDirs[0]) : writeComparisonReport(runDirs, resolve(out ?? 'occam-report.html'));
  process.stdout.write(`${path}\n`);
  return 0;
}

/** `occam export RUN_DIR --format F [--out DIR]`: writes the files and lists them. */
function exportModel(args: ParsedArgs): number {
  const [runDir, ...extra] = args.positionals;
  if (!runDir || extra.length > 0) throw new UsageError('export needs exactly one RUN_DIR');
  onlyFlags(args, 'export', ['format', 'out']);
  const format = args.flags.get('format');
  if (!format) throw new UsageError(`export needs --format ${EXPORT_FORMATS.join('|')}`);
  if (!(EXPORT_FORMATS as readonly string[]).includes(format))
    throw new UsageError(`--format must be one of ${EXPORT_FORMATS.join(', ')} (got '${format}')`);
  const out = args.flags.get('out');
  for (const path of exportRun(runDir, format as ExportFormat, out ? resolve(out) : undefined)) process.stdout.write(`${path}\n`);
  return 0;
}

/** Flags of `occam evaluate`: the data to evaluate on, how much of it, and where. */
const EVALUATE_FLAGS = ['dataset', 'data-path', 'label-column', 'text', 'eval-limit', 'eval-batch-size', 'backend', 'json'];

/**
 * `occam evaluate RUN_DIR`: the best model on the run's data (or other data of the same layout).
 * Evaluated as the run's workers did it (the same shares, summed in rank order, on the same
 * backend), so on the run's own data the figures equal the summary's best round exactly.
 */
async function evaluate(args: ParsedArgs): Promise<number> {
  const [runDir, ...extra] = args.positionals;
  if (!runDir || extra.length > 0) throw new UsageError('evaluate needs exactly one RUN_DIR');
  onlyFlags(args, 'evaluate', EVALUATE_FLAGS);
  const config = resolveConfig(
    readRunConfig(runDir),
    configFlags({ ...args, flags: new Map([...args.flags].filter(([name]) => name !== 'json')) }),
  );
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
    process.stdout.write(
      `${JSON.stringify({ round: round + 1, data: data.description, workers: world, backend: engine.backend, ...result })}\n`,
    );
    return 0;
  }
  process.stdout.write(`best model of ${runDir} (round ${round + 1}) on ${data.description}, as ${world} worker(s) on ${engine.backend}\n`);
  for (const [split, r] of Object.entries(result)) {
    const loss = r.loss === null ? '–' : r.loss.toFixed(4);
    const acc = r.accuracy === null ? '–' : `${(100 * r.accuracy).toFixed(2)}%`;
    process.stdout.write(`  ${split.padEnd(9)} loss ${loss}  accuracy ${acc}  (${r.count} samples)\n`);
  }
  return 0;
}

/** `occam predict RUN_DIR FILE`: one CSV line (or JSON line) of class probabilities per input. */
async function predictFile(args: ParsedArgs): Promise<number> {
  const [runDir, file, ...extra] = args.positionals;
  if (!runDir || !file || extra.length > 0) throw new UsageError('predict needs RUN_DIR and FILE');
  onlyFlags(args, 'predict', ['json', 'backend']);
  const backend = args.flags.get('backend');
  await selectBackend(backend ? (parseConfigValue('backend', backend) as OccamConfig['backend']) : 'auto', quietLog());
  const trained = loadTrainedModel(runDir);
  const { x, count } = readInputs(trained, file);
  const { classes, probabilities } = await predict(trained, x, count, trained.config.evalBatchSize);
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

/** Refuses a flag the command does not take. */
function onlyFlags(args: ParsedArgs, command: string, known: string[]): void {
  const unknown = [...args.flags.keys()].find((name) => !known.includes(name) && name !== 'pretty-logs');
  if (unknown) throw new UsageError(`${command} does not take --${unknown}`);
}

/** `occam sample RUN_DIR`: text from the best model of a gpt run, on stdout. */
async function sample(args: ParsedArgs): Promise<number> {
  const [runDir, ...extra] = args.positionals;
  if (!runDir || extra.length > 0) throw new UsageError('sample needs exactly one RUN_DIR');
  const number = (name: string, fallback: number, valid: (n: number) => boolean, rule: string) => {
    const text = args.flags.get(name);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (text.trim() === '' || !valid(value)) throw new UsageError(`--${name} must be ${rule} (got '${text}')`);
    return value;
  };
  onlyFlags(args, 'sample', ['length', 'temperature', 'top-k', 'seed', 'prompt', 'backend']);
  const options: SampleOptions = {
    length: number('length', SAMPLE_DEFAULTS.length, (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0'),
    temperature: number('temperature', SAMPLE_DEFAULTS.temperature, (n) => Number.isFinite(n) && n >= 0, 'a number ≥ 0'),
    topK: number('top-k', SAMPLE_DEFAULTS.topK, (n) => Number.isInteger(n) && n >= 0, 'an integer ≥ 0 (0 = all tokens)'),
    seed: number('seed', SAMPLE_DEFAULTS.seed, (n) => Number.isInteger(n) && n >= 0 && n <= 4294967295, 'an integer in [0, 2^32)'),
    prompt: args.flags.get('prompt') ?? SAMPLE_DEFAULTS.prompt,
  };
  const backend = args.flags.get('backend');
  await selectBackend(backend ? (parseConfigValue('backend', backend) as OccamConfig['backend']) : 'auto', quietLog());
  const gpt = loadTrainedGpt(runDir);
  process.stdout.write(`${options.prompt + (await generate(gpt, options))}\n`);
  return 0;
}

function newRunId(config: OccamConfig): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return `${stamp}-${config.dataset}-${config.model}-${config.strategy}`;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    const known = error instanceof UsageError || error instanceof ConfigError || error.name === 'DataError' || error.name === 'RunDirError';
    process.stderr.write(`occam: ${error.message}\n${error instanceof UsageError ? "run 'occam --help' for usage\n" : ''}`);
    if (!known && process.env.OCCAM_DEBUG) process.stderr.write(`${error.stack}\n`);
    process.exit(known ? 2 : 1);
  },
);
