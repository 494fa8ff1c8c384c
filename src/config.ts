// The training configuration: one flat record, its defaults, and its validation. Every setting
// can come from a JSON file, an OCCAM_* environment variable or a --kebab-case flag; a bad
// value gets one error that names the key.
import { createHash } from 'node:crypto';

export interface OccamConfig {
  seed: number;
  backend: 'auto' | 'tensorflow' | 'blas' | 'wasm' | 'cpu';
  /** Threads for the BLAS backend per worker; 0 = cores divided by local workers. */
  blasThreads: number;

  dataset: 'mnist' | 'fashion-mnist' | 'idx' | 'csv' | 'iris' | 'text' | 'moby-dick';
  /** IDX folder, CSV file or text file; empty for the embedded data sets. */
  dataPath: string;
  /** CSV: the column that holds the class label. */
  labelColumn: string;
  /** Fraction held out as the test split when the data set has none of its own. */
  testFraction: number;
  /** Train on a seeded random subset of this many samples (0 = all; text: the first window starts). */
  trainLimit: number;
  /** Fraction of the training data kept out of training to measure the holdback loss. */
  holdback: number;

  model: 'mlp' | 'cnn' | 'gpt';
  /** MLP hidden width; CNN base width u (the layers have u, 2u, 2u channels, dense 2u). */
  units: number;
  dropout: number;
  /** GPT: blocks, attention heads, embedding width and context length. */
  layers: number;
  heads: number;
  width: number;
  blockSize: number;

  rounds: number;
  /** Steps per round; 0 = one epoch over the training data (gpt: 0 = GPT_ROUND_STEPS). */
  roundSteps: number;
  /** Global batch: split over the workers, so each takes batchSize / workers samples. */
  batchSize: number;
  learningRate: number;
  evalBatchSize: number;
  /** Evaluate on at most this many holdback/test samples (0 = all). */
  evalLimit: number;

  strategy: 'occam' | 'none' | 'posttrain' | 'gradual';
  p0: number;
  /** Upper bound of p: `standard` p0, `transformer` min(1.5 p, p0); `auto` picks by model. */
  bound: 'auto' | 'standard' | 'transformer';
  /** posttrain and gradual: the fraction of prunable weights to keep in the end. */
  targetDensity: number;
  /** posttrain: rounds of training after the one-shot prune. */
  fineTuneRounds: number;
  /** gradual: sparsity at the start, and the rounds after which the schedule prunes. */
  initialSparsity: number;
  beginRound: number;
  /** gradual: last pruning round; -1 = rounds - 3. */
  endRound: number;

  workers: number;
  /** How gradients travel on the ring: float32, or bf16 with float32 sums (half the bytes). */
  wireFormat: 'f32' | 'bf16';
  /** Commit a checkpoint every this many steps inside a round too (0 = at round ends only). */
  checkpointEverySteps: number;
  keepCheckpoints: number;
  heartbeatMs: number;
  /** A worker or peer that says nothing for this long is declared lost. */
  peerTimeoutMs: number;
}

/** A GPT's round length when roundSteps is 0: transformers prune every fixed number of steps (DESIGN.md §1). */
export const GPT_ROUND_STEPS = 200;

export const DEFAULT_CONFIG: Readonly<OccamConfig> = {
  seed: 1,
  backend: 'auto',
  blasThreads: 0,
  dataset: 'mnist',
  dataPath: '',
  labelColumn: 'label',
  testFraction: 0.2,
  trainLimit: 0,
  holdback: 0.1,
  model: 'mlp',
  units: 1024,
  dropout: 0.2,
  layers: 2,
  heads: 4,
  width: 128,
  blockSize: 64,
  rounds: 12,
  roundSteps: 0,
  batchSize: 128,
  learningRate: 0.001,
  evalBatchSize: 1000,
  evalLimit: 0,
  strategy: 'occam',
  p0: 0.4,
  bound: 'auto',
  targetDensity: 0.1,
  fineTuneRounds: 0,
  initialSparsity: 0,
  beginRound: 0,
  endRound: -1,
  workers: 2,
  wireFormat: 'f32',
  checkpointEverySteps: 0,
  keepCheckpoints: 3,
  heartbeatMs: 1000,
  peerTimeoutMs: 15000,
};

export type Rule =
  | { type: 'integer' | 'number'; min?: number; max?: number; above?: number; below?: number }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'string' };

/** Every key's type and range; exported so tests can walk every error path. */
export const CONFIG_RULES: { readonly [K in keyof OccamConfig]: Rule } = {
  seed: { type: 'integer', min: 0, max: 4294967295 },
  backend: { type: 'enum', values: ['auto', 'tensorflow', 'blas', 'wasm', 'cpu'] },
  blasThreads: { type: 'integer', min: 0, max: 1024 },
  dataset: { type: 'enum', values: ['mnist', 'fashion-mnist', 'idx', 'csv', 'iris', 'text', 'moby-dick'] },
  dataPath: { type: 'string' },
  labelColumn: { type: 'string' },
  testFraction: { type: 'number', above: 0, below: 1 },
  trainLimit: { type: 'integer', min: 0 },
  holdback: { type: 'number', min: 0, below: 1 },
  model: { type: 'enum', values: ['mlp', 'cnn', 'gpt'] },
  units: { type: 'integer', min: 1, max: 65536 },
  dropout: { type: 'number', min: 0, below: 1 },
  layers: { type: 'integer', min: 1, max: 128 },
  heads: { type: 'integer', min: 1, max: 128 },
  width: { type: 'integer', min: 1, max: 65536 },
  blockSize: { type: 'integer', min: 2, max: 65536 },
  rounds: { type: 'integer', min: 1, max: 100000 },
  roundSteps: { type: 'integer', min: 0 },
  batchSize: { type: 'integer', min: 1, max: 1048576 },
  learningRate: { type: 'number', above: 0, max: 10 },
  evalBatchSize: { type: 'integer', min: 1 },
  evalLimit: { type: 'integer', min: 0 },
  strategy: { type: 'enum', values: ['occam', 'none', 'posttrain', 'gradual'] },
  p0: { type: 'number', above: 0, below: 1 },
  bound: { type: 'enum', values: ['auto', 'standard', 'transformer'] },
  targetDensity: { type: 'number', above: 0, max: 1 },
  fineTuneRounds: { type: 'integer', min: 0 },
  initialSparsity: { type: 'number', min: 0, below: 1 },
  beginRound: { type: 'integer', min: 0 },
  endRound: { type: 'integer', min: -1 },
  workers: { type: 'integer', min: 1, max: 1024 },
  wireFormat: { type: 'enum', values: ['f32', 'bf16'] },
  checkpointEverySteps: { type: 'integer', min: 0 },
  keepCheckpoints: { type: 'integer', min: 1, max: 1000 },
  heartbeatMs: { type: 'integer', min: 10, max: 600000 },
  peerTimeoutMs: { type: 'integer', min: 100, max: 86400000 },
};

const RULES = CONFIG_RULES;

export const CONFIG_KEYS = Object.keys(RULES) as (keyof OccamConfig)[];

/** Own keys only: 'toString' or '__proto__' in a config file are unknown keys, not inherited ones. */
function isConfigKey(key: string): key is keyof OccamConfig {
  return Object.hasOwn(RULES, key);
}

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`config: ${message}`);
    this.name = 'ConfigError';
  }
}

/** Merges partial settings over the defaults and validates the result; throws ConfigError. */
export function resolveConfig(...layers: object[]): OccamConfig {
  // No prototype: a '__proto__' key in a config file stays an ordinary (unknown) key.
  const merged: Record<string, unknown> = Object.assign(Object.create(null) as Record<string, unknown>, DEFAULT_CONFIG);
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (value !== undefined) merged[key] = value;
    }
  }
  return validateConfig(merged);
}

/** Checks every key of a complete config: unknown keys, types, ranges and combinations. */
export function validateConfig(raw: Record<string, unknown>): OccamConfig {
  for (const key of Object.keys(raw)) {
    if (!isConfigKey(key)) throw new ConfigError(key, `unknown key '${key}'${suggest(key)}`);
  }
  for (const key of CONFIG_KEYS) {
    if (!Object.hasOwn(raw, key)) throw new ConfigError(key, `missing key '${key}'`);
    checkRule(key, raw[key], RULES[key]);
  }
  const config = Object.fromEntries(CONFIG_KEYS.map((key) => [key, raw[key]])) as unknown as OccamConfig;
  checkCombinations(config);
  // Settled here, so config.json records the round length the run really used.
  if (config.model === 'gpt' && config.roundSteps === 0) return { ...config, roundSteps: GPT_ROUND_STEPS };
  return config;
}

/** Parses a string from a flag or environment variable into the type the key expects. */
export function parseConfigValue(key: string, text: string): unknown {
  if (!isConfigKey(key)) throw new ConfigError(key, `unknown key '${key}'${suggest(key)}`);
  const rule = RULES[key];
  if (rule.type === 'integer' || rule.type === 'number') {
    const value = Number(text);
    if (text.trim() === '' || Number.isNaN(value)) {
      throw new ConfigError(key, `'${key}' must be a number (got '${text}')`);
    }
    return value;
  }
  return text;
}

/** A short stable hash of the settings that change the training result. */
export function configHash(config: OccamConfig): string {
  const { backend: _b, blasThreads: _t, workers: _w, heartbeatMs: _h, peerTimeoutMs: _p, ...result } = config;
  const ordered = Object.fromEntries(Object.entries(result).sort(([a], [b]) => a.localeCompare(b)));
  return createHash('sha256').update(JSON.stringify(ordered)).digest('hex').slice(0, 16);
}

/** The schedule's upper-bound variant after resolving `auto`. */
export function boundVariant(config: OccamConfig): 'standard' | 'transformer' {
  if (config.bound !== 'auto') return config.bound;
  return config.model === 'gpt' ? 'transformer' : 'standard';
}

/** gradual: the last round that prunes, after resolving -1. */
export function gradualEndRound(config: OccamConfig): number {
  return config.endRound >= 0 ? config.endRound : Math.max(config.beginRound, config.rounds - 3);
}

function checkRule(key: string, value: unknown, rule: Rule): void {
  if (rule.type === 'string') {
    if (typeof value !== 'string') throw new ConfigError(key, `'${key}' must be a string (got ${describe(value)})`);
    return;
  }
  if (rule.type === 'enum') {
    if (typeof value !== 'string' || !rule.values.includes(value)) {
      throw new ConfigError(key, `'${key}' must be one of ${rule.values.join(', ')} (got ${describe(value)})`);
    }
    return;
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new ConfigError(key, `'${key}' must be a finite number (got ${describe(value)})`);
  }
  if (rule.type === 'integer' && !Number.isSafeInteger(value)) {
    throw new ConfigError(key, `'${key}' must be an integer below 2^53 (got ${value})`);
  }
  if (rule.min !== undefined && value < rule.min) throw new ConfigError(key, `'${key}' must be ≥ ${rule.min} (got ${value})`);
  if (rule.max !== undefined && value > rule.max) throw new ConfigError(key, `'${key}' must be ≤ ${rule.max} (got ${value})`);
  if (rule.above !== undefined && value <= rule.above) throw new ConfigError(key, `'${key}' must be > ${rule.above} (got ${value})`);
  if (rule.below !== undefined && value >= rule.below) throw new ConfigError(key, `'${key}' must be < ${rule.below} (got ${value})`);
}

function checkCombinations(config: OccamConfig): void {
  const needsPath = config.dataset === 'idx' || config.dataset === 'csv' || config.dataset === 'text';
  if (needsPath && config.dataPath === '') {
    throw new ConfigError('dataPath', `'dataPath' is required for dataset '${config.dataset}'`);
  }
  const textData = config.dataset === 'text' || config.dataset === 'moby-dick';
  if (textData !== (config.model === 'gpt')) {
    throw new ConfigError(
      'model',
      `'model' ${config.model} cannot train on dataset '${config.dataset}' (gpt goes with text and moby-dick)`,
    );
  }
  if (config.batchSize < config.workers) {
    throw new ConfigError(
      'batchSize',
      `'batchSize' (${config.batchSize}) must be ≥ 'workers' (${config.workers}): the global batch is split over the workers`,
    );
  }
  if (config.peerTimeoutMs < 2 * config.heartbeatMs) {
    throw new ConfigError(
      'peerTimeoutMs',
      `'peerTimeoutMs' (${config.peerTimeoutMs}) must be ≥ 2 × 'heartbeatMs' (${config.heartbeatMs}), or healthy workers would be declared lost between heartbeats`,
    );
  }
  if (config.model === 'gpt' && config.width % config.heads !== 0) {
    throw new ConfigError('heads', `'heads' (${config.heads}) must divide 'width' (${config.width})`);
  }
  if (config.strategy === 'gradual') {
    const end = gradualEndRound(config);
    if (end < config.beginRound) throw new ConfigError('endRound', `'endRound' (${end}) must be ≥ 'beginRound' (${config.beginRound})`);
    if (end >= config.rounds) throw new ConfigError('endRound', `'endRound' (${end}) must be < 'rounds' (${config.rounds})`);
    if (1 - config.targetDensity < config.initialSparsity) {
      throw new ConfigError(
        'targetDensity',
        `'targetDensity' (${config.targetDensity}) leaves less sparsity than 'initialSparsity' (${config.initialSparsity})`,
      );
    }
  }
}

function suggest(key: string): string {
  const match = didYouMean(key, CONFIG_KEYS);
  return match ? ` (did you mean '${match}'?)` : '';
}

/** The candidate nearest to a mistyped name (case, dashes and underscores ignored), if one is close enough to be meant. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const plain = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(plain(word), plain(candidate));
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return bestDistance <= Math.max(1, Math.floor(plain(word).length / 4)) ? best : undefined;
}

/** Levenshtein distance. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length];
}

function describe(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : (JSON.stringify(value) ?? String(value));
}
