// What `occam --help` and `occam <command> --help` print, and the one declaration of which flags
// each command takes: the parser, the per-command checks and the help text all read COMMANDS.
// Training settings are listed from the config schema, with their defaults, so help cannot drift.
import { OCCAM_VERSION } from '../common/version.ts';
import { CONFIG_KEYS, CONFIG_SCHEMA, DEFAULT_CONFIG, envName, flagName } from '../config.ts';

interface Flag {
  name: string;
  /** Placeholder of the value; absent for a switch. */
  value?: string;
  text: string;
}

interface CommandHelp {
  usage: string;
  summary: string;
  flags: Flag[];
  /** Takes every training setting as a flag too. */
  settings: boolean;
}

const TLS: Flag[] = [
  { name: 'token-file', value: 'FILE', text: 'the cluster token (else OCCAM_TOKEN); never a flag value, which `ps` shows' },
  { name: 'tls-cert', value: 'FILE', text: 'TLS certificate (PEM); with --tls-key and --tls-ca every connection is mutual TLS' },
  { name: 'tls-key', value: 'FILE', text: 'TLS private key (PEM)' },
  { name: 'tls-ca', value: 'FILE', text: 'CA that signed every peer certificate (PEM)' },
  { name: 'max-message-mb', value: 'MB', text: 'largest control message accepted (default 1024)' },
];
const CONFIG_FILE: Flag = {
  name: 'config',
  value: 'FILE.json',
  text: 'settings from a JSON file (flags win over OCCAM_* variables, variables over the file)',
};
const TEXT: Flag = { name: 'text', value: 'FILE', text: 'train the gpt on any UTF-8 file (= --model gpt --dataset text --data-path FILE)' };
const BACKEND: Flag = { name: 'backend', value: 'NAME', text: 'auto, tensorflow, webgpu, blas, wasm or cpu' };
const JSON_OUT: Flag = { name: 'json', text: 'machine-readable output: JSON lines on stdout' };

export const COMMANDS = {
  train: {
    usage: 'occam train [settings] [--run-dir DIR] | occam train --resume RUN_DIR [--rounds N]',
    summary: 'train with a local coordinator and --workers N worker processes on this machine',
    settings: true,
    flags: [
      CONFIG_FILE,
      TEXT,
      { name: 'run-dir', value: 'DIR', text: 'where the run is written (default runs/<run id>)' },
      { name: 'resume', value: 'RUN_DIR', text: 'continue a run from its last valid checkpoint; --rounds N extends a finished one' },
      { name: 'dry-run', text: 'print the plan (batches, steps, evaluation) and the resolved settings, then stop' },
      { name: 'print-config', text: 'print the resolved settings as JSON (a --config file), then stop' },
      { name: 'port', value: 'P', text: 'status page and /metrics on 127.0.0.1:P (default: any free port)' },
      JSON_OUT,
      { name: 'quiet', text: 'no progress on the terminal, only the summary' },
    ],
  },
  coordinator: {
    usage: 'occam coordinator --run-dir DIR [settings]',
    summary: "run a cluster's coordinator: waits for --workers workers, runs the rounds, commits checkpoints",
    settings: true,
    flags: [
      CONFIG_FILE,
      TEXT,
      { name: 'run-dir', value: 'DIR', text: 'checkpoints, metrics and the model go here (or OCCAM_RUN_DIR); a restart resumes from it' },
      { name: 'host', value: 'H', text: 'address to listen on (default 0.0.0.0)' },
      { name: 'port', value: 'P', text: 'control, status and /metrics port (default 7070)' },
      { name: 'linger', text: 'after the run, keep serving /status.json until SIGTERM (as a pod must)' },
      ...TLS,
    ],
  },
  worker: {
    usage: 'occam worker --coordinator ws://HOST:PORT [options]',
    summary: 'run one worker: joins the coordinator, trains its shard, all-reduces with its ring neighbours',
    settings: false,
    flags: [
      { name: 'coordinator', value: 'URL', text: "the coordinator's ws:// (or wss://, with TLS) URL (or OCCAM_COORDINATOR)" },
      { name: 'worker-id', value: 'ID', text: 'a stable name (default host-pid)' },
      { name: 'ring-host', value: 'H', text: 'the address ring neighbours connect to (default the host name)' },
      { name: 'ring-bind-host', value: 'H', text: 'the address the ring port listens on' },
      { name: 'ring-port', value: 'P', text: 'the ring port (default any free one)' },
      { name: 'gpu', value: 'INDEX', text: 'the GPU adapter to use (webgpu backend)' },
      BACKEND,
      { name: 'exit-with-parent', text: 'exit when the parent process does (occam train sets it)' },
      ...TLS,
    ],
  },
  sample: {
    usage: 'occam sample RUN_DIR [--prompt TEXT] [--length N] [--temperature T] [--top-k K] [--seed S]',
    summary: "generate text from a gpt run's best model",
    settings: false,
    flags: [
      { name: 'prompt', value: 'TEXT', text: 'text to continue (default: a newline)' },
      { name: 'length', value: 'N', text: 'tokens to generate (default 500)' },
      { name: 'temperature', value: 'T', text: 'divides the logits; 0 always picks the likeliest (default 0.8)' },
      { name: 'top-k', value: 'K', text: 'draw from the K likeliest tokens only; 0 = all (default 0)' },
      { name: 'seed', value: 'S', text: 'seed of the draws (default 1)' },
      BACKEND,
    ],
  },
  prepare: {
    usage: 'occam prepare INPUT --out DIR [--tokenizer char|gpt2] [--val-fraction F]',
    summary: 'tokenize a text file or a folder of them into train.bin, val.bin and meta.json (nanoGPT’s layout) for --dataset tokens',
    settings: false,
    flags: [
      { name: 'out', value: 'DIR', text: 'the token folder to write' },
      {
        name: 'tokenizer',
        value: 'T',
        text: 'char (one token per character) or gpt2 (GPT-2’s byte-level BPE, 50,257 tokens); default char',
      },
      { name: 'val-fraction', value: 'F', text: 'fraction of the tokens (the end) in val.bin, the test split (default 0.1)' },
    ],
  },
  report: {
    usage: 'occam report RUN_DIR [RUN_DIR…] [--out FILE]',
    summary: "one run's report.html again, or several runs compared on the same axes",
    settings: false,
    flags: [{ name: 'out', value: 'FILE', text: 'where a comparison goes (default ./occam-report.html)' }],
  },
  export: {
    usage: 'occam export RUN_DIR --format onnx|tfjs|safetensors-torch [--out DIR]',
    summary: 'the best model for onnxruntime, TF.js or PyTorch',
    settings: false,
    flags: [
      { name: 'format', value: 'F', text: 'onnx (MLP, CNN, GPT), tfjs (LayersModel: MLP, CNN) or safetensors-torch (with occam_torch.py)' },
      { name: 'out', value: 'DIR', text: 'where the files go (default RUN_DIR/export/FORMAT)' },
    ],
  },
  evaluate: {
    usage: 'occam evaluate RUN_DIR [--dataset D --data-path P --label-column C] [--eval-limit N] [--json]',
    summary: "loss and accuracy of the best model on the run's data (exactly the summary's figures) or other data",
    settings: false,
    flags: [
      { name: 'dataset', value: 'D', text: 'another data set of the same input layout' },
      { name: 'data-path', value: 'P', text: 'its file or folder' },
      { name: 'label-column', value: 'C', text: "a CSV's label column" },
      TEXT,
      { name: 'eval-limit', value: 'N', text: 'at most N samples per split (0 = all)' },
      { name: 'eval-batch-size', value: 'N', text: 'samples per batch (0 = auto)' },
      BACKEND,
      JSON_OUT,
    ],
  },
  predict: {
    usage: 'occam predict RUN_DIR FILE [--json]',
    summary: 'class probabilities for a CSV of rows (columns found by name) or an IDX file of images, as CSV',
    settings: false,
    flags: [BACKEND, JSON_OUT],
  },
} satisfies Record<string, CommandHelp>;

export type CommandName = keyof typeof COMMANDS;

/** Flags every command takes. */
const EVERYWHERE: Flag[] = [
  { name: 'help', text: 'this help (also -h)' },
  { name: 'pretty-logs', text: 'human-readable logs instead of JSON lines' },
];

/** Exit codes, the same for every command. */
export const EXIT_CODES = { done: 0, failed: 1, badInput: 2, interrupted: 130 } as const;

const EXIT_TEXT = `exit codes: 0 done · 1 the run failed · 2 bad input (a flag, setting, file or run directory; one line says which) · 130 interrupted (Ctrl-C; the line printed says how to resume)`;

/** `occam --help`. */
export function overview(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const commands = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    `occam ${OCCAM_VERSION} — distributed sparse training with Occam Gradient Descent`,
    '',
    'usage: occam <command> [options]     occam <command> --help     occam --version',
    '',
    'commands:',
    ...commands,
    '',
    'Start with `occam train` (MNIST, an MLP, 2 workers, about a minute). Every training setting is a',
    '--kebab-case flag, an OCCAM_UPPER_SNAKE variable or a key of --config FILE.json: `occam train --help`.',
    '',
    EXIT_TEXT,
  ].join('\n');
}

/** `occam <command> --help`: its usage, its flags, and (train, coordinator) every setting with its default. */
export function commandHelp(command: CommandName): string {
  const c: CommandHelp = COMMANDS[command];
  const flags = [...c.flags, ...EVERYWHERE].map((f) => [`--${f.name}${f.value ? ` ${f.value}` : ''}`, f.text]);
  const lines = [`usage: ${c.usage}`, '', c.summary, '', 'options:', ...table(flags)];
  if (c.settings)
    lines.push('', 'training settings (flag, default, meaning; also OCCAM_<NAME> variables and --config keys):', ...table(settingRows()));
  lines.push('', EXIT_TEXT);
  return lines.join('\n');
}

/** The flags a command takes, by name (without the dashes). */
export function commandFlags(command: CommandName): Set<string> {
  const c: CommandHelp = COMMANDS[command];
  const names = [...c.flags, ...EVERYWHERE].map((f) => f.name);
  return new Set(c.settings ? [...names, ...CONFIG_KEYS.map(flagName)] : names);
}

/** Every flag of every command, and whether it is a switch: what the parser accepts. */
export function allFlags(): Map<string, boolean> {
  const flags = new Map<string, boolean>(CONFIG_KEYS.map((k) => [flagName(k), false]));
  for (const c of Object.values(COMMANDS) as CommandHelp[])
    for (const f of [...c.flags, ...EVERYWHERE]) flags.set(f.name, f.value === undefined);
  flags.set('version', true);
  return flags;
}

/** One row per training setting: flag and values, default, description — from the schema. */
export function settingRows(): string[][] {
  const properties = CONFIG_SCHEMA.properties as Record<string, { enum?: string[]; description?: string }>;
  return CONFIG_KEYS.map((key) => {
    const schema = properties[key];
    const value = schema.enum ? 'NAME' : typeof DEFAULT_CONFIG[key] === 'string' ? 'TEXT' : 'N';
    const fallback = DEFAULT_CONFIG[key] === '' ? "''" : String(DEFAULT_CONFIG[key]);
    const values = schema.enum ? ` One of: ${schema.enum.join(', ')}.` : '';
    return [`--${flagName(key)} ${value}`, fallback, `${schema.description ?? ''}${values}`];
  });
}

/** The README's settings table (markdown), generated by `npm run gen:readme`; a test checks it is current. */
export function settingsMarkdown(): string {
  const properties = CONFIG_SCHEMA.properties as Record<string, { description?: string }>;
  const cell = (text: string) => text.replaceAll('|', '\\|');
  const rows = CONFIG_KEYS.map((key) => {
    const fallback = DEFAULT_CONFIG[key] === '' ? "''" : String(DEFAULT_CONFIG[key]);
    return `| \`${key}\` | \`--${flagName(key)}\` · \`${envName(key)}\` | \`${fallback}\` | ${cell(properties[key].description ?? '')} |`;
  });
  return ['| setting | flag · variable | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (c < r.length - 1 ? r[c].length : 0))));
  return rows.map((r) => `  ${r.map((cell, c) => (c < r.length - 1 ? cell.padEnd(widths[c]) : cell)).join('  ')}`);
}
