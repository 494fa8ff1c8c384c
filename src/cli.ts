// The `occam` command line: `train` (a local cluster, the main command), `coordinator` and
// `worker` (the processes of a real cluster). Every training setting is a --kebab-case flag, an
// OCCAM_* environment variable or a key of a --config JSON file; the token never travels on the
// command line, where `ps` would show it.
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { createServer } from 'node:net';
import { basename, join, resolve } from 'node:path';
import { ConfigError, didYouMean, parseConfigValue, resolveConfig, type OccamConfig } from './config.ts';
import { loadDataSource } from './training/data/load.ts';
import { saveModelInputs } from './training/trained.ts';
import { createLogger, setLogContext, type Logger } from './common/log.ts';
import { AuthenticatedServer, sendJson } from './wire/server.ts';
import { readTlsOptions } from './wire/tls.ts';
import { Coordinator, RunStopped } from './coordinator/coordinator.ts';
import { trainLocally } from './coordinator/local-cluster.ts';
import { withObservability } from './observe/observability.ts';
import { formatSummary, terminalMode, TerminalView } from './observe/terminal.ts';
import { readRunConfig, readSummary, RunDir, type RunSummary } from './storage/run-dir.ts';
import { formatPlan, planRun } from './observe/plan.ts';
import { writeRunReport } from './observe/report.ts';
import { cutLink, faultHooks, paceBytesPerSecond } from './worker/faults.ts';
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
  warnUnknownVariables,
  type ParsedArgs,
} from './cli/args.ts';
import { type CommandName, COMMANDS, commandFlags, commandHelp, EXIT_CODES, overview } from './cli/help.ts';
import { OCCAM_VERSION } from './common/version.ts';
import { evaluate, exportModel, predictFile, prepare, report, sample } from './cli/tools.ts';

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.flags.has('version')) {
    process.stdout.write(`occam ${OCCAM_VERSION}\n`);
    return EXIT_CODES.done;
  }
  // `occam help train` and `occam train --help` both give train's help; `occam --help` the overview.
  const helpFor = args.command === 'help' ? args.positionals[0] : args.flags.has('help') ? args.command : undefined;
  if (args.command === 'help' || args.flags.has('help')) {
    if (helpFor !== undefined && !Object.hasOwn(COMMANDS, helpFor)) throw new UsageError(`unknown command '${helpFor}'`);
    process.stdout.write(`${helpFor ? commandHelp(helpFor as CommandName) : overview()}\n`);
    return EXIT_CODES.done;
  }
  if (!Object.hasOwn(COMMANDS, args.command)) {
    const near = didYouMean(args.command, Object.keys(COMMANDS));
    throw new UsageError(`unknown command '${args.command}'${near ? ` (did you mean '${near}'?)` : ''}`);
  }
  const command = args.command as CommandName;
  const known = commandFlags(command);
  const unknown = [...args.flags.keys()].find((name) => !known.has(name));
  if (unknown) throw new UsageError(`${command} does not take --${unknown} (see occam ${command} --help)`);
  warnUnknownVariables();
  const pretty = args.flags.has('pretty-logs') || undefined;
  const log = createLogger({ role: command === 'worker' ? 'worker' : 'coordinator', pretty });
  if (['train', 'coordinator', 'worker'].includes(command) && args.positionals.length > 0)
    throw new UsageError(`unexpected argument '${args.positionals[0]}'`);
  switch (command) {
    case 'train':
      return train(args, pretty);
    case 'coordinator':
      return runCoordinator(args, log);
    case 'worker':
      return runWorker(args, log);
    case 'sample':
      return sample(args);
    case 'prepare':
      return prepare(args);
    case 'report':
      return report(args);
    case 'export':
      return exportModel(args);
    case 'evaluate':
      return evaluate(args);
    case 'predict':
      return predictFile(args);
  }
}

async function train(args: ParsedArgs, pretty: boolean | undefined): Promise<number> {
  const resumeDir = args.flags.get('resume');
  if (resumeDir && args.flags.has('run-dir')) throw new UsageError('--resume names the run directory already; leave out --run-dir');
  const config = resumeDir ? resolveConfig(readRunConfig(resumeDir), configFlags(args)) : readConfig(args);
  const port = portFlag(args, 'port', 'OCCAM_PORT', 0);
  // Fail fast, in this process, on a data problem: one clear error before any worker starts.
  const data = loadDataSource(config);
  const plan = planRun(config, data);
  const json = args.flags.has('json');
  if (args.flags.has('print-config')) {
    process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
    return EXIT_CODES.done;
  }
  if (args.flags.has('dry-run')) {
    process.stdout.write(
      json
        ? `${JSON.stringify({ type: 'plan', plan, config })}\n`
        : `${formatPlan(config, data, plan)}\n\n${JSON.stringify(config, null, 2)}\n`,
    );
    return EXIT_CODES.done;
  }
  const runDir = resolve(resumeDir ?? args.flags.get('run-dir') ?? join('runs', newRunId(config)));
  // One run id for the life of a run: its directory's name.
  const runId = basename(runDir);
  if (resumeDir) {
    new RunDir(runDir).checkSameRun(config);
    const finished = finishedRun(runDir);
    if (finished && finished.rounds >= plan.rounds) {
      process.stdout.write(
        `occam: ${runDir} has finished all ${finished.rounds} rounds; nothing to do (--rounds N, N > ${finished.rounds}, extends it)\n`,
      );
      return EXIT_CODES.done;
    }
    if (finished?.stopReason && finished.patience === config.patience) {
      process.stdout.write(`occam: ${runDir} ${finished.stopReason}; nothing to do (a larger --patience continues it)\n`);
      return EXIT_CODES.done;
    }
  }
  // Before anything is written: a busy --port would leave a run directory of a run that never started.
  if (port !== 0) await checkPortFree(port);
  saveModelInputs(runDir, data);
  const view = new TerminalView(terminalMode({ json, quiet: args.flags.has('quiet') }, process.stderr));
  view.setBatchSize(config.batchSize);
  // The terminal shows progress; the coordinator's structured log goes to the run directory.
  mkdirSync(runDir, { recursive: true });
  const log = createLogger({
    role: 'coordinator',
    pretty,
    destination: createWriteStream(join(runDir, 'coordinator.log'), { flags: 'a' }),
    context: { runId },
  });
  if (json) process.stdout.write(`${JSON.stringify({ type: 'plan', plan, runDir })}\n`);
  else process.stderr.write(`occam: ${resumeDir ? 'resuming' : 'training'}; run directory ${runDir}\n${formatPlan(config, data, plan)}\n`);
  // Ctrl-C: the last commit stands; say how to continue from it (exit 130, as shells expect).
  process.once('SIGINT', () => {
    process.stderr.write(`\noccam: interrupted; the last checkpoint stands. Resume with: occam train --resume ${runDir}\n`);
    process.exit(EXIT_CODES.interrupted);
  });
  const onListening = (listening: number) =>
    process.stderr.write(`occam: status page http://127.0.0.1:${listening}/ · metrics http://127.0.0.1:${listening}/metrics\n`);
  let summary: RunSummary;
  try {
    summary = await trainLocally({ config, runDir, runId, log, port, onListening, onEvent: (e) => view.handle(e) });
  } catch (error) {
    // The run failed: summary.json and report.html say so and why.
    new RunDir(runDir).writeFailure(runId, config, (error as Error).message);
    writeRunReport(runDir);
    throw error;
  }
  if (json) process.stdout.write(`${JSON.stringify({ type: 'summary', summary })}\n`);
  else process.stdout.write(`\n${formatSummary(summary)}\n\nrun directory: ${runDir}\n`);
  return EXIT_CODES.done;
}

/** An address a worker can never reach stops it at once, rather than after endless retries. */
function checkCoordinatorUrl(text: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--coordinator must be a URL like ws://HOST:7070 (got '${text}')`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:')
    throw new UsageError(`--coordinator must be a ws:// or wss:// URL (got '${text}'; the coordinator speaks WebSocket)`);
}

/** What a finished run's summary.json says (null for a run that has not finished, or failed). */
function finishedRun(runDir: string): { rounds: number; stopReason: string | null; patience: number } | null {
  const summary = readSummary(runDir);
  if (!summary || summary.failure || typeof summary.rounds !== 'number') return null;
  return { rounds: summary.rounds, stopReason: summary.stopReason ?? null, patience: readRunConfig(runDir).patience ?? 0 };
}

/** Refuses a --port another process holds, naming the flag (rather than a bare EADDRINUSE later). */
function checkPortFree(port: number): Promise<void> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new UsageError(`--port ${port} is not free (${error.code}); pick another or leave --port out for any free one`)),
    );
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePort()));
  });
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
  checkCoordinatorUrl(coordinatorUrl);
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
    cutLink: cutLink(process.env.OCCAM_CUT_LINK),
    paceBytesPerSecond: paceBytesPerSecond(process.env.OCCAM_PACE_KBPS),
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

function newRunId(config: OccamConfig): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return `${stamp}-${config.dataset}-${config.model}-${config.strategy}`;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    // Bad input (exit 2) is the user's to fix and needs no stack; anything else is a failed run (exit 1).
    const badInput =
      error instanceof UsageError || error instanceof ConfigError || ['DataError', 'RunDirError', 'WorkerRefused'].includes(error.name);
    process.stderr.write(`occam: ${error.message}\n${error instanceof UsageError ? "run 'occam --help' for usage\n" : ''}`);
    if (!badInput && process.env.OCCAM_DEBUG) process.stderr.write(`${error.stack}\n`);
    process.exit(badInput ? EXIT_CODES.badInput : EXIT_CODES.failed);
  },
);
