// The training configuration: one schema (TypeBox) declares every setting's type, range, default
// and meaning; the OccamConfig type, the defaults, the checks and the flag and variable names
// derive from it. A bad value gets one error that names the key.
import { createHash } from 'node:crypto';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { didYouMean } from './common/did-you-mean.ts';
import { checkRule, ConfigError, type Rule, ruleOf } from './config-rules.ts';

export { ConfigError, didYouMean, type Rule };

/** A string setting that takes one of `values`; the type is their union. */
function oneOf<const T extends readonly string[]>(values: T, options: { default: T[number]; description: string }) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: values, ...options });
}

type Described<T> = { default: T; description: string };
type Bounds = { minimum?: number; maximum?: number; exclusiveMinimum?: number; exclusiveMaximum?: number };
const integer = (options: Described<number> & Bounds) => Type.Integer(options);
const number = (options: Described<number> & Bounds) => Type.Number(options);
const text = (options: Described<string>) => Type.String(options);
const flag = (options: Described<boolean>) => Type.Boolean(options);

/** evalBatchSize 0: batches of this many samples, or of text windows holding this many tokens (a GPT's cost is per token). */
const EVAL_BATCH_SAMPLES = 1000;
const EVAL_BATCH_TOKENS = 8192;

/** Every setting: its type, range, default and meaning, declared once. */
export const CONFIG_SCHEMA = Type.Object({
  seed: integer({
    default: 1,
    minimum: 0,
    maximum: 4294967295,
    description: 'Seed of every random stream: initial weights, data order, dropout, holdback split.',
  }),
  backend: oneOf(['auto', 'tensorflow', 'webgpu', 'blas', 'wasm', 'cpu'], {
    default: 'auto',
    description: 'TensorFlow.js backend; auto tries tensorflow, webgpu (a hardware GPU), blas, wasm, cpu in that order.',
  }),
  blasThreads: integer({
    default: 0,
    minimum: 0,
    maximum: 1024,
    description: 'Threads for the BLAS backend per worker; 0 = cores divided by local workers.',
  }),

  dataset: oneOf(['mnist', 'fashion-mnist', 'idx', 'csv', 'iris', 'text', 'moby-dick', 'tokens'], {
    default: 'mnist',
    description:
      'The data set: mnist (10,000 digits, embedded), fashion-mnist (Debian dataset-fashion-mnist), idx (an MNIST-format folder at dataPath), csv (dataPath, labelColumn), iris, moby-dick (embedded), text (dataPath), tokens (a folder from `occam prepare` at dataPath).',
  }),
  dataPath: text({
    default: '',
    description: 'IDX folder, CSV file, text file or token folder (train.bin, val.bin, meta.json); empty for the embedded data sets.',
  }),
  labelColumn: text({ default: 'label', description: 'CSV: the column that holds the class label.' }),
  testFraction: number({
    default: 0.2,
    exclusiveMinimum: 0,
    exclusiveMaximum: 1,
    description: 'Fraction held out as the test split when the data set has none of its own.',
  }),
  trainLimit: integer({
    default: 0,
    minimum: 0,
    description: 'Train on a seeded random subset of this many samples (0 = all; text: the first window starts).',
  }),
  holdback: number({
    default: 0.1,
    minimum: 0,
    exclusiveMaximum: 1,
    description: 'Fraction of the training data kept out of training to measure the holdback loss.',
  }),

  model: oneOf(['mlp', 'cnn', 'gpt'], {
    default: 'mlp',
    description:
      'The network: mlp (input → units ReLU + dropout → classes), cnn (conv u → pool → conv 2u → pool → conv 2u → dense 2u → classes), gpt (layers, heads, width, blockSize).',
  }),
  units: integer({
    default: 1024,
    minimum: 1,
    maximum: 65536,
    description: 'MLP hidden width; CNN base width u (the layers have u, 2u, 2u channels, dense 2u).',
  }),
  dropout: number({
    default: 0.2,
    minimum: 0,
    exclusiveMaximum: 1,
    description: 'Dropout rate, seeded per sample and step (gpt: after the embeddings, on attention weights, on both residual branches).',
  }),
  layers: integer({ default: 2, minimum: 1, maximum: 128, description: 'GPT: transformer blocks.' }),
  heads: integer({ default: 4, minimum: 1, maximum: 128, description: 'GPT: attention heads (must divide width).' }),
  width: integer({ default: 128, minimum: 1, maximum: 65536, description: 'GPT: embedding width.' }),
  blockSize: integer({ default: 64, minimum: 2, maximum: 65536, description: 'GPT: context length in tokens.' }),
  bias: flag({ default: true, description: 'GPT: biases in the linear layers and LayerNorms (false as in nanoGPT’s recipe).' }),
  tieEmbeddings: flag({ default: false, description: 'GPT: the LM head is the token embedding transposed (weight tying).' }),

  rounds: integer({
    default: 12,
    minimum: 1,
    maximum: 100000,
    description: 'Rounds of training, each followed by evaluation and pruning.',
  }),
  roundSteps: integer({
    default: 0,
    minimum: 0,
    description: 'Steps per round; 0 = one epoch over the training data (gpt: 0 = GPT_ROUND_STEPS).',
  }),
  batchSize: integer({
    default: 128,
    minimum: 1,
    maximum: 1048576,
    description: 'Global batch: split over the workers, so each takes batchSize / workers samples.',
  }),
  accumulateSteps: integer({
    default: 1,
    minimum: 1,
    maximum: 65536,
    description: 'Micro-batches per step: each worker sums this many gradients before the one all-reduce of the step.',
  }),
  learningRate: number({ default: 0.001, exclusiveMinimum: 0, maximum: 10, description: 'Adam(W) peak learning rate.' }),
  weightDecay: number({
    default: 0,
    minimum: 0,
    maximum: 10,
    description: 'AdamW decoupled weight decay, on weight matrices only (not biases, norms, embeddings); 0 = Adam.',
  }),
  beta1: number({ default: 0.9, minimum: 0, exclusiveMaximum: 1, description: 'Adam(W) β1: decay of the first moment.' }),
  beta2: number({ default: 0.999, minimum: 0, exclusiveMaximum: 1, description: 'Adam(W) β2: decay of the second moment.' }),
  epsilon: number({ default: 1e-7, exclusiveMinimum: 0, maximum: 1, description: 'Adam(W) ε (Keras’s default 1e-7; PyTorch’s is 1e-8).' }),
  gradClip: number({
    default: 0,
    minimum: 0,
    description: 'Clip the all-reduced gradient to this global L2 norm (0 = no clipping).',
  }),
  warmupSteps: integer({ default: 0, minimum: 0, description: 'Learning rate: linear warmup over this many steps.' }),
  lrDecaySteps: integer({
    default: 0,
    minimum: 0,
    description: 'Learning rate: cosine decay to minLearningRate, ending at this step (0 = constant after warmup).',
  }),
  minLearningRate: number({ default: 0, minimum: 0, description: 'Learning rate: the floor of the cosine decay.' }),
  evalBatchSize: integer({
    default: 0,
    minimum: 0,
    description: `Samples per evaluation batch; 0 = auto: ${EVAL_BATCH_SAMPLES} samples, or text windows of ${EVAL_BATCH_TOKENS} tokens in all.`,
  }),
  evalLimit: integer({ default: 0, minimum: 0, description: 'Evaluate on at most this many holdback/test samples (0 = all).' }),
  patience: integer({
    default: 0,
    minimum: 0,
    description: 'Early stopping: end the run after this many rounds without a lower holdback loss (0 = never).',
  }),

  strategy: oneOf(['occam', 'none', 'posttrain', 'gradual'], {
    default: 'occam',
    description: 'Pruning: Occam, none (plain training), one-shot after training, or gradual (Zhu & Gupta).',
  }),
  p0: number({
    default: 0.4,
    exclusiveMinimum: 0,
    exclusiveMaximum: 1,
    description: 'Occam: the first pruning fraction, and the standard bound of p.',
  }),
  bound: oneOf(['auto', 'standard', 'transformer'], {
    default: 'auto',
    description: 'Upper bound of p: standard p0, transformer min(1.5 p, p0); auto picks by model.',
  }),
  targetDensity: number({
    default: 0.1,
    exclusiveMinimum: 0,
    maximum: 1,
    description: 'posttrain and gradual: the fraction of prunable weights to keep in the end.',
  }),
  fineTuneRounds: integer({ default: 0, minimum: 0, description: 'posttrain: rounds of training after the one-shot prune.' }),
  initialSparsity: number({ default: 0, minimum: 0, exclusiveMaximum: 1, description: 'gradual: sparsity at the start.' }),
  beginRound: integer({ default: 0, minimum: 0, description: 'gradual: the first round that prunes.' }),
  endRound: integer({ default: -1, minimum: -1, description: 'gradual: the last round that prunes; -1 = rounds - 3.' }),

  workers: integer({
    default: 2,
    minimum: 1,
    maximum: 1024,
    description: 'Workers in the ring (occam train starts this many; a coordinator waits for them).',
  }),
  minWorkers: integer({
    default: 1,
    minimum: 1,
    maximum: 1024,
    description: 'Fewest workers a re-formed ring may have (after losses and exclusions); below it the run waits.',
  }),
  wireFormat: oneOf(['f32', 'bf16'], {
    default: 'f32',
    description: 'How gradients travel on the ring: float32, or bf16 with float32 sums (half the bytes).',
  }),
  bucketBytes: integer({
    default: 25 * 1024 * 1024,
    minimum: 0,
    description:
      'Gradient bucket size, as bucket_cap_mb in DDP: buckets of whole parameters, last layer first, each all-reduced and applied as soon as it is summed (0 = one all-reduce per step); the same bits for any size.',
  }),
  checkpointEverySteps: integer({
    default: 0,
    minimum: 0,
    description: 'Commit a checkpoint every this many steps inside a round too (0 = at round ends only).',
  }),
  keepCheckpoints: integer({ default: 3, minimum: 1, maximum: 1000, description: 'Checkpoints kept in the run directory (the newest).' }),
  heartbeatMs: integer({
    default: 1000,
    minimum: 10,
    maximum: 600000,
    description: 'Interval of heartbeats between the coordinator and its workers.',
  }),
  peerTimeoutMs: integer({
    default: 15000,
    minimum: 100,
    maximum: 86400000,
    description:
      'A worker silent this long is lost; a ring wait this long is judged (slow peer, lost peer or cut link). Every ring timeout is this.',
  }),
});

export type OccamConfig = Static<typeof CONFIG_SCHEMA>;

/** A GPT's round length when roundSteps is 0: transformers prune every fixed number of steps (docs/ALGORITHM.md). */
export const GPT_ROUND_STEPS = 200;

const PROPERTIES = CONFIG_SCHEMA.properties as Record<keyof OccamConfig, TSchema>;

/** Every key's type and range, from the schema; exported so tests can walk every error path. */
export const CONFIG_RULES = Object.fromEntries(Object.entries(PROPERTIES).map(([key, schema]) => [key, ruleOf(schema)])) as {
  readonly [K in keyof OccamConfig]: Rule;
};

export const DEFAULT_CONFIG: Readonly<OccamConfig> = Object.freeze(
  Object.fromEntries(Object.entries(PROPERTIES).map(([key, schema]) => [key, schema.default])) as OccamConfig,
);

/** The --kebab-case flag that sets a key. */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The OCCAM_SNAKE_CASE environment variable that sets a key. */
export function envName(key: string): string {
  return `OCCAM_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

export const CONFIG_KEYS = Object.keys(CONFIG_RULES) as (keyof OccamConfig)[];

/** Own keys only: 'toString' or '__proto__' in a config file are unknown keys, not inherited ones. */
function isConfigKey(key: string): key is keyof OccamConfig {
  return Object.hasOwn(CONFIG_RULES, key);
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
    checkRule(key, raw[key], CONFIG_RULES[key]);
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
  const rule = CONFIG_RULES[key];
  if (rule.type === 'integer' || rule.type === 'number') {
    const value = Number(text);
    if (text.trim() === '' || Number.isNaN(value)) {
      throw new ConfigError(key, `'${key}' must be a number (got '${text}')`);
    }
    return value;
  }
  if (rule.type === 'boolean') {
    if (text === 'true' || text === 'false') return text === 'true';
    throw new ConfigError(key, `'${key}' must be true or false (got '${text}')`);
  }
  return text;
}

/** A short stable hash of the settings that change the training result. */
export function configHash(config: OccamConfig): string {
  const { backend: _b, blasThreads: _t, workers: _w, minWorkers: _m, heartbeatMs: _h, peerTimeoutMs: _p, ...result } = config;
  const ordered = Object.fromEntries(Object.entries(result).sort(([a], [b]) => a.localeCompare(b)));
  return createHash('sha256').update(JSON.stringify(ordered)).digest('hex').slice(0, 16);
}

/** Settings a resumed run may change: how long it runs, not what it trains. */
export const EXTENSIBLE_KEYS = ['rounds', 'patience'] as const;

/** The hash a run directory and its checkpoints keep: configHash without the extensible settings. */
export function runHash(config: OccamConfig): string {
  const { rounds: _r, patience: _p, ...fixed } = config;
  return configHash({ ...DEFAULT_CONFIG, ...fixed });
}

/** The data sets a GPT trains on: token streams. */
export function isTextDataset(dataset: OccamConfig['dataset']): boolean {
  return dataset === 'text' || dataset === 'moby-dick' || dataset === 'tokens';
}

/** Samples per evaluation batch after resolving evalBatchSize 0. */
export function evalBatchSamples(config: Pick<OccamConfig, 'evalBatchSize' | 'model' | 'blockSize'>): number {
  if (config.evalBatchSize > 0) return config.evalBatchSize;
  return config.model === 'gpt' ? Math.max(1, Math.floor(EVAL_BATCH_TOKENS / config.blockSize)) : EVAL_BATCH_SAMPLES;
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

function checkCombinations(config: OccamConfig): void {
  const needsPath = ['idx', 'csv', 'text', 'tokens'].includes(config.dataset);
  if (needsPath && config.dataPath === '') {
    throw new ConfigError('dataPath', `'dataPath' is required for dataset '${config.dataset}'`);
  }
  if (isTextDataset(config.dataset) !== (config.model === 'gpt')) {
    throw new ConfigError(
      'model',
      `'model' ${config.model} cannot train on dataset '${config.dataset}' (gpt goes with text, tokens and moby-dick)`,
    );
  }
  if (config.lrDecaySteps > 0 && config.lrDecaySteps < config.warmupSteps) {
    throw new ConfigError('lrDecaySteps', `'lrDecaySteps' (${config.lrDecaySteps}) must be ≥ 'warmupSteps' (${config.warmupSteps}), or 0`);
  }
  if (config.minLearningRate > config.learningRate) {
    throw new ConfigError(
      'minLearningRate',
      `'minLearningRate' (${config.minLearningRate}) must be ≤ 'learningRate' (${config.learningRate})`,
    );
  }
  if (config.batchSize < config.workers) {
    throw new ConfigError(
      'batchSize',
      `'batchSize' (${config.batchSize}) must be ≥ 'workers' (${config.workers}): the global batch is split over the workers`,
    );
  }
  if (config.batchSize < config.workers * config.accumulateSteps) {
    throw new ConfigError(
      'accumulateSteps',
      `'batchSize' (${config.batchSize}) must be ≥ 'workers' × 'accumulateSteps' (${config.workers} × ${config.accumulateSteps}): each micro-batch needs a sample`,
    );
  }
  if (config.peerTimeoutMs < 2 * config.heartbeatMs) {
    throw new ConfigError(
      'peerTimeoutMs',
      `'peerTimeoutMs' (${config.peerTimeoutMs}) must be ≥ 2 × 'heartbeatMs' (${config.heartbeatMs}), or healthy workers would be declared lost between heartbeats`,
    );
  }
  if (config.minWorkers > config.workers) {
    throw new ConfigError('minWorkers', `'minWorkers' (${config.minWorkers}) must be ≤ 'workers' (${config.workers})`);
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
