// The command line's words: flags (with their environment variables), the config they build
// (defaults ← --config file ← OCCAM_* ← flags), the token, and the one error type for bad usage.
// Every command in cli.ts reads its input through these.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { parseArgs as parseArgsOf } from 'node:util';
import { CONFIG_KEYS, ConfigError, didYouMean, envName, flagName, parseConfigValue, resolveConfig, type OccamConfig } from '../config.ts';
import { allFlags } from './help.ts';

export interface ParsedArgs {
  command: string;
  flags: Map<string, string>;
  /** Arguments that are not flags: only `sample RUN_DIR` takes one. */
  positionals: string[];
}

/** How long a SIGTERM'd coordinator or worker may take to stop at a commit (OCCAM_STOP_GRACE_MS). */
export function stopGraceMs(): number {
  const raw = process.env.OCCAM_STOP_GRACE_MS ?? '25000';
  const ms = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(ms) || ms < 0)
    throw new UsageError(`OCCAM_STOP_GRACE_MS must be a number of milliseconds ≥ 0 (got '${raw}')`);
  return ms;
}

/** The config from defaults, --config FILE, OCCAM_* variables and flags, in rising precedence. */
export function readConfig(args: ParsedArgs): OccamConfig {
  const file = args.flags.get('config');
  let fromFile: Record<string, unknown> = {};
  if (file) {
    if (!existsSync(file)) throw new ConfigError('config', `config file ${file} not found`);
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch {
      throw new ConfigError('config', `config file ${file} is not valid JSON`);
    }
    if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile))
      throw new ConfigError('config', `config file ${file} must hold a JSON object`);
  }
  const layers = [fromFile, configFromEnv(), configFlags(args)];
  return resolveConfig(...layers, impliedDataset(layers));
}

/**
 * A gpt given a data path but no dataset trains on what the path is: a token folder from
 * `occam prepare` (--dataset tokens) or a text file (--dataset text).
 */
function impliedDataset(layers: Record<string, unknown>[]): Record<string, unknown> {
  const merged = Object.assign({}, ...layers) as Record<string, unknown>;
  const path = merged.dataPath;
  if (merged.dataset !== undefined || merged.model !== 'gpt' || typeof path !== 'string' || path === '') return {};
  return { dataset: existsSync(path) && statSync(path).isDirectory() ? 'tokens' : 'text' };
}

export function configFromEnv(): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) {
    const value = process.env[envName(key)];
    if (value !== undefined) settings[key] = parseConfigValue(key, value);
  }
  return settings;
}

/**
 * OCCAM_* variables the processes read besides the settings' own (OCCAM_<SETTING>). Kubernetes
 * manifests also use OCCAM_RUN_NAME (in args) and OCCAM_HEALTH_URL (the health check).
 */
const PROCESS_VARIABLES = [
  'TOKEN',
  'TOKEN_FILE',
  'COORDINATOR',
  'WORKER_ID',
  'RING_HOST',
  'RING_BIND_HOST',
  'RING_PORT',
  'GPU',
  'LOCAL_RANK',
  'HOST',
  'PORT',
  'RUN_DIR',
  'RUN_NAME',
  'LINGER',
  'TLS_CERT',
  'TLS_KEY',
  'TLS_CA',
  'MAX_MESSAGE_MB',
  'STOP_GRACE_MS',
  'LOG_LEVEL',
  'LOG_FORMAT',
  'DEBUG',
  'FAULTS',
  'BLAS',
  'HEALTH_URL',
].map((name) => `OCCAM_${name}`);

/** A mistyped variable (OCCAM_WORKER=3) would be ignored silently: say so on stderr. */
export function warnUnknownVariables(env: NodeJS.ProcessEnv = process.env, write = (line: string) => process.stderr.write(line)): void {
  const known = [...CONFIG_KEYS.map(envName), ...PROCESS_VARIABLES];
  for (const name of Object.keys(env)) {
    if (!name.startsWith('OCCAM_') || known.includes(name)) continue;
    const near = didYouMean(name, known);
    write(`occam: warning: ${name} is not a variable Occam reads${near ? ` (did you mean ${near}?)` : ''}; it is ignored\n`);
  }
}

/** The training settings among the flags (other flags are the command's own). */
export function configFlags(args: ParsedArgs): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const [name, value] of args.flags) {
    if (name === 'text') {
      // --text FILE: shorthand for --model gpt --dataset text --data-path FILE (a text trains the gpt).
      Object.assign(settings, { dataset: 'text', dataPath: value });
      if (!args.flags.has('model')) settings.model = 'gpt';
      continue;
    }
    const key = CONFIG_KEYS.find((k) => flagName(k) === name);
    if (key) settings[key] = parseConfigValue(key, value);
  }
  return settings;
}

export function readToken(args: ParsedArgs): string {
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

export function flag(args: ParsedArgs, name: string, env: string): string | undefined {
  return args.flags.get(name) ?? process.env[env];
}

/** A numeric process flag (or its variable), checked: a typo must not become NaN, which `ws` reads as "no limit". */
export function numberFlag(
  args: ParsedArgs,
  name: string,
  env: string,
  fallback: number,
  valid: (n: number) => boolean,
  rule: string,
): number {
  const text = flag(args, name, env);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !valid(value)) throw new UsageError(`--${name} (or ${env}) must be ${rule} (got '${text}')`);
  return value;
}

export function portFlag(args: ParsedArgs, name: string, env: string, fallback: number): number {
  return numberFlag(args, name, env, fallback, (n) => Number.isInteger(n) && n >= 0 && n <= 65535, 'a port number in [0, 65535]');
}

/** The bound on one control message (state uploads are the largest), from --max-message-mb. */
export function maxMessageBytes(args: ParsedArgs): number {
  const megabytes = numberFlag(
    args,
    'max-message-mb',
    'OCCAM_MAX_MESSAGE_MB',
    1024,
    (n) => Number.isFinite(n) && n >= 1 && n <= 4096,
    'a number of MiB in [1, 4096]',
  );
  return Math.floor(megabytes * 1024 * 1024);
}

export function parseArgs(argv: string[]): ParsedArgs {
  // `occam --help`, `occam -h`, `occam --version` (a flag where the command goes).
  const [command = 'help', ...rest] = argv[0]?.startsWith('-') ? ['help', ...argv] : argv;
  const switches = allFlags();
  const options = Object.fromEntries(
    [...switches].map(([name, isSwitch]) => [name, { type: isSwitch ? ('boolean' as const) : ('string' as const), ...SHORT[name] }]),
  );
  const { tokens } = parseArgsOf({ args: rest, options, strict: false, allowPositionals: true, tokens: true });
  const flags = new Map<string, string>();
  const positionals: string[] = [];
  for (const token of tokens) {
    if (token.kind === 'positional') positionals.push(token.value);
    if (token.kind !== 'option') continue;
    const name = token.name;
    if (name === 'token') throw new UsageError('--token would show the token in `ps`; use OCCAM_TOKEN or --token-file');
    if (!Object.hasOwn(options, name)) {
      const near = didYouMean(name, Object.keys(options));
      throw new ConfigError(name, `unknown flag --${name}${near ? ` (did you mean --${near}?)` : ''}`);
    }
    if (switches.get(name)) flags.set(name, 'true');
    else if (token.value === undefined) throw new UsageError(`--${name} needs a value`);
    else flags.set(name, token.value);
  }
  return { command, flags, positionals };
}

/** The one-letter forms people type: -h for help, -v for the version. */
const SHORT: Record<string, { short: string }> = { help: { short: 'h' }, version: { short: 'v' } };

export class UsageError extends Error {}
