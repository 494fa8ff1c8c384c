// The `occam` command line: `train` (a local cluster, the main command), `coordinator` and
// `worker` (the processes of a real cluster). Every training setting is a --kebab-case flag, an
// OCCAM_* environment variable or a key of a --config JSON file; the token never travels on the
// command line, where `ps` would show it.
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { CONFIG_KEYS, ConfigError, parseConfigValue, resolveConfig, type OccamConfig } from './core/config.ts';
import { loadDataSource } from './core/data/load.ts';
import { createLogger, type Logger } from './core/log.ts';
import { readTlsOptions } from './core/tls.ts';
import { Coordinator, RunStopped } from './coordinator/coordinator.ts';
import { trainLocally } from './coordinator/local-cluster.ts';
import { formatSummary, progressMode, ProgressView } from './coordinator/progress.ts';
import { readRunConfig } from './coordinator/run-dir.ts';
import { FaultPlan } from './worker/faults.ts';
import { Worker } from './worker/worker.ts';

const USAGE = `occam — distributed sparse training with Occam Gradient Descent

usage:
  occam train [options]                 train with a local coordinator and --workers N worker processes
  occam train --resume RUN_DIR          continue a run from its last valid checkpoint
  occam coordinator [options]           run a cluster's coordinator (token: OCCAM_TOKEN or --token-file)
  occam worker --coordinator URL        run one worker (token: OCCAM_TOKEN or --token-file)

training settings (flags, OCCAM_<NAME> variables, or keys of --config FILE.json):
  --dataset mnist|fashion-mnist|idx|csv|iris   --data-path PATH   --label-column NAME
  --model mlp|cnn   --units N   --rounds N   --batch-size N (global)   --learning-rate X
  --strategy occam|none|posttrain|gradual   --p0 X   --target-density X   --holdback X
  --workers N   --seed N   --backend auto|tensorflow|blas|wasm|cpu   (and every key of DEFAULT_CONFIG)

output: --run-dir DIR (default runs/<run id>)   --json (events as JSON lines)   --quiet   --pretty-logs
cluster: --host H --port P (coordinator)   --ring-host H --ring-port P --worker-id ID (worker)
         --token-file FILE   --tls-cert FILE --tls-key FILE --tls-ca FILE`;

/** Flags that are not training settings. */
const PROCESS_FLAGS = new Set(['config', 'run-dir', 'resume', 'json', 'quiet', 'pretty-logs', 'help', 'host', 'port', 'coordinator', 'worker-id', 'ring-host', 'ring-bind-host', 'ring-port', 'token-file', 'tls-cert', 'tls-key', 'tls-ca', 'exit-with-parent', 'max-message-mb']);
const BOOLEAN_FLAGS = new Set(['json', 'quiet', 'pretty-logs', 'help', 'exit-with-parent']);

interface ParsedArgs {
  command: string;
  flags: Map<string, string>;
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.flags.has('help') || args.command === 'help') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const pretty = args.flags.has('pretty-logs') || undefined;
  const log = createLogger({ role: args.command === 'worker' ? 'worker' : 'coordinator', pretty });
  switch (args.command) {
    case 'train':
      return train(args, pretty);
    case 'coordinator':
      return runCoordinator(args, log);
    case 'worker':
      return runWorker(args, log);
    default:
      throw new UsageError(`unknown command '${args.command}'`);
  }
}

async function train(args: ParsedArgs, pretty: boolean | undefined): Promise<number> {
  const resumeDir = args.flags.get('resume');
  const config = resumeDir ? resolveConfig(readRunConfig(resumeDir), configFlags(args)) : readConfig(args);
  // Fail fast, in this process, on a data problem: one clear error before any worker starts.
  loadDataSource(config);
  const runId = resumeDir ? resolve(resumeDir).split('/').pop() ?? 'run' : newRunId(config);
  const runDir = resolve(resumeDir ?? args.flags.get('run-dir') ?? join('runs', runId));
  const view = new ProgressView(progressMode({ json: args.flags.has('json'), quiet: args.flags.has('quiet') }, process.stderr));
  view.setBatchSize(config.batchSize);
  // The terminal shows progress; the coordinator's structured log goes to the run directory.
  mkdirSync(runDir, { recursive: true });
  const log = createLogger({ role: 'coordinator', pretty, destination: createWriteStream(join(runDir, 'coordinator.log'), { flags: 'a' }) });
  process.stderr.write(`occam: training ${config.model} on ${config.dataset} with ${config.workers} worker(s), strategy ${config.strategy}; run directory ${runDir}\n`);
  const summary = await trainLocally({ config, runDir, runId, log, onEvent: (e) => view.handle(e) });
  if (args.flags.has('json')) process.stdout.write(JSON.stringify({ type: 'summary', summary }) + '\n');
  else process.stdout.write(`\n${formatSummary(summary)}\n\nrun directory: ${runDir}\n`);
  return 0;
}

async function runCoordinator(args: ParsedArgs, log: Logger): Promise<number> {
  const runDirFlag = args.flags.get('run-dir') ?? process.env.OCCAM_RUN_DIR;
  if (!runDirFlag) throw new UsageError('coordinator needs --run-dir (or OCCAM_RUN_DIR): checkpoints and metrics go there');
  const runDir = resolve(runDirFlag);
  // A restarted coordinator continues the run its run directory holds.
  const config = existsSync(join(runDir, 'config.json')) ? resolveConfig(readRunConfig(runDir), configFlags(args)) : readConfig(args);
  const coordinator = new Coordinator({
    config,
    runDir,
    runId: runDir.split('/').pop() ?? 'run',
    host: flag(args, 'host', 'OCCAM_HOST') ?? '0.0.0.0',
    port: Number(flag(args, 'port', 'OCCAM_PORT') ?? 7070),
    token: readToken(args),
    log,
    tls: readTlsOptions(flag(args, 'tls-cert', 'OCCAM_TLS_CERT'), flag(args, 'tls-key', 'OCCAM_TLS_KEY'), flag(args, 'tls-ca', 'OCCAM_TLS_CA')),
    maxMessageBytes: Number(flag(args, 'max-message-mb', 'OCCAM_MAX_MESSAGE_MB') ?? 1024) * 1024 * 1024,
  });
  await coordinator.listen();
  // SIGTERM (Kubernetes stopping the pod): finish the current segment, commit, and exit; the
  // workers keep reconnecting, to the restarted coordinator. A hung segment cannot hold the pod
  // past the grace time: then the previous commit stands.
  const graceMs = Number(process.env.OCCAM_STOP_GRACE_MS ?? 25000);
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
  } catch (error) {
    if (!(error instanceof RunStopped)) throw error;
    log.info({ step: error.step }, 'stopped after a commit; a restarted coordinator resumes from it');
    await coordinator.close('coordinator stopping', false);
  }
  return 0;
}

async function runWorker(args: ParsedArgs, log: Logger): Promise<number> {
  const coordinatorUrl = flag(args, 'coordinator', 'OCCAM_COORDINATOR');
  if (!coordinatorUrl) throw new UsageError('worker needs --coordinator ws://HOST:PORT (or OCCAM_COORDINATOR)');
  const ringHost = flag(args, 'ring-host', 'OCCAM_RING_HOST') ?? hostname();
  const backend = args.flags.get('backend') ?? process.env.OCCAM_BACKEND;
  const worker = new Worker({
    coordinatorUrl,
    token: readToken(args),
    workerId: flag(args, 'worker-id', 'OCCAM_WORKER_ID') ?? `${hostname()}-${process.pid}`,
    ringBindHost: flag(args, 'ring-bind-host', 'OCCAM_RING_BIND_HOST') ?? (ringHost === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0'),
    ringAdvertiseHost: ringHost,
    ringPort: Number(flag(args, 'ring-port', 'OCCAM_RING_PORT') ?? 0),
    backend: backend ? (parseConfigValue('backend', backend) as OccamConfig['backend']) : undefined,
    log,
    tls: readTlsOptions(flag(args, 'tls-cert', 'OCCAM_TLS_CERT'), flag(args, 'tls-key', 'OCCAM_TLS_KEY'), flag(args, 'tls-ca', 'OCCAM_TLS_CA')),
    reconnectGiveUpMs: args.flags.has('exit-with-parent') ? 30000 : 0,
    faults: new FaultPlan(process.env.OCCAM_FAULTS),
    maxMessageBytes: Number(flag(args, 'max-message-mb', 'OCCAM_MAX_MESSAGE_MB') ?? 1024) * 1024 * 1024,
  });
  if (args.flags.has('exit-with-parent')) process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => worker.stop());
  await worker.run();
  return 0;
}

/** The config from defaults, --config FILE, OCCAM_* variables and flags, in rising precedence. */
function readConfig(args: ParsedArgs): OccamConfig {
  const file = args.flags.get('config');
  let fromFile: Record<string, unknown> = {};
  if (file) {
    if (!existsSync(file)) throw new ConfigError('config', `config file ${file} not found`);
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch {
      throw new ConfigError('config', `config file ${file} is not valid JSON`);
    }
    if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) throw new ConfigError('config', `config file ${file} must hold a JSON object`);
  }
  return resolveConfig(fromFile, configFromEnv(), configFlags(args));
}

function configFromEnv(): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    const value = process.env[`OCCAM_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`];
    if (value !== undefined) settings[key] = parseConfigValue(key, value);
  }
  return settings;
}

function configFlags(args: ParsedArgs): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const [name, value] of args.flags) {
    if (PROCESS_FLAGS.has(name)) continue;
    const key = name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    settings[key] = parseConfigValue(key, value);
  }
  return settings;
}

function readToken(args: ParsedArgs): string {
  const file = flag(args, 'token-file', 'OCCAM_TOKEN_FILE');
  if (file) {
    if (!existsSync(file)) throw new UsageError(`token file ${file} not found`);
    const token = readFileSync(file, 'utf8').trim();
    if (!token) throw new UsageError(`token file ${file} is empty`);
    return token;
  }
  const token = process.env.OCCAM_TOKEN;
  if (!token) throw new UsageError('no cluster token: set OCCAM_TOKEN or pass --token-file FILE');
  return token;
}

function flag(args: ParsedArgs, name: string, env: string): string | undefined {
  return args.flags.get(name) ?? process.env[env];
}

function parseArgs(argv: string[]): ParsedArgs {
  const [command = 'help', ...rest] = argv;
  const flags = new Map<string, string>();
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument '${arg}'`);
    const [name, inline] = arg.slice(2).split(/=(.*)/s, 2);
    if (name === 'token') throw new UsageError('--token would show the token in `ps`; use OCCAM_TOKEN or --token-file');
    if (BOOLEAN_FLAGS.has(name)) {
      flags.set(name, 'true');
      continue;
    }
    const value = inline ?? rest[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    flags.set(name, value);
  }
  return { command, flags };
}

function newRunId(config: OccamConfig): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return `${stamp}-${config.dataset}-${config.model}-${config.strategy}`;
}

class UsageError extends Error {}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    const known = error instanceof UsageError || error instanceof ConfigError || error.name === 'DataError';
    process.stderr.write(`occam: ${error.message}\n${error instanceof UsageError ? "run 'occam --help' for usage\n" : ''}`);
    if (!known && process.env.OCCAM_DEBUG) process.stderr.write(`${error.stack}\n`);
    process.exit(known ? 2 : 1);
  },
);
