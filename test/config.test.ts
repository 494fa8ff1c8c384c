// Every way a configuration can be wrong gets one ConfigError that names the offending key: each
// key's type and range (walked from CONFIG_RULES, so a new key is covered when it is added),
// unknown keys with a did-you-mean, impossible combinations, and — through the real `occam`
// command — a bad --config file, a bad environment value, unknown flags and --token.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CONFIG_KEYS,
  CONFIG_RULES,
  ConfigError,
  DEFAULT_CONFIG,
  parseConfigValue,
  resolveConfig,
  type OccamConfig,
  type Rule,
} from '../src/config.ts';
import { OCCAM_BIN } from '../src/coordinator/local-cluster.ts';

/** The ConfigError resolveConfig throws for these settings (fails the test when there is none). */
function configError(settings: Record<string, unknown>): ConfigError {
  try {
    resolveConfig(settings);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`no error for ${JSON.stringify(settings)}`);
}

/** Values that break a rule, each with the message it must produce. */
function badValues(rule: Rule): [unknown, RegExp][] {
  if (rule.type === 'string')
    return [
      [5, /must be a string/],
      [null, /must be a string/],
    ];
  if (rule.type === 'enum')
    return [
      ['bogus', /must be one of/],
      [1, /must be one of/],
    ];
  if (rule.type === 'boolean')
    return [
      ['true', /must be true or false/],
      [1, /must be true or false/],
    ];
  const bad: [unknown, RegExp][] = [
    ['12', /must be a finite number/],
    [NaN, /must be a finite number/],
    [Infinity, /must be a finite number/],
    [true, /must be a finite number/],
  ];
  if (rule.type === 'integer') bad.push([1.5, /must be an integer/], [2 ** 53, /must be an integer/]);
  if (rule.min !== undefined) bad.push([rule.min - 1, /must be ≥/]);
  if (rule.max !== undefined) bad.push([rule.max + 1, /must be ≤/]);
  if (rule.above !== undefined) bad.push([rule.above, /must be >/]);
  if (rule.below !== undefined) bad.push([rule.below, /must be </]);
  return bad;
}

describe('every key: its type and its range', () => {
  for (const key of CONFIG_KEYS) {
    it(key, () => {
      for (const [value, message] of badValues(CONFIG_RULES[key])) {
        const error = configError({ [key]: value });
        expect(error.key, `${key} = ${String(value)}`).toBe(key);
        expect(error.message).toContain(`'${key}'`);
        expect(error.message).toMatch(message);
      }
    });
  }

  it('the defaults are valid, and the ranges the paper needs hold: holdback in [0, 1), p0 in (0, 1)', () => {
    expect(resolveConfig({})).toEqual({ ...DEFAULT_CONFIG });
    expect(configError({ holdback: 1 }).message).toMatch(/'holdback' must be < 1/);
    expect(configError({ holdback: -0.1 }).message).toMatch(/'holdback' must be ≥ 0/);
    expect(configError({ p0: 0 }).message).toMatch(/'p0' must be > 0/);
    expect(configError({ p0: 1 }).message).toMatch(/'p0' must be < 1/);
  });
});

describe('unknown keys', () => {
  it.each([
    ['batch_size', 'batchSize'],
    ['batch-size', 'batchSize'],
    ['BatchSize', 'batchSize'],
    ['lerningRate', 'learningRate'],
    ['unit', 'units'],
    ['peerTimeout', 'peerTimeoutMs'],
  ])("'%s' suggests '%s'", (typo, meant) => {
    const error = configError({ [typo]: 1 });
    expect(error.key).toBe(typo);
    expect(error.message).toBe(`config: unknown key '${typo}' (did you mean '${meant}'?)`);
  });

  it('without a near key there is no guess; inherited names are unknown too', () => {
    expect(configError({ token: 'secret' }).message).toBe("config: unknown key 'token'");
    expect(configError({ toString: 1 }).key).toBe('toString');
    expect(configError(JSON.parse('{"__proto__": {"units": 3}}') as Record<string, unknown>).key).toBe('__proto__');
  });
});

describe('combinations', () => {
  it.each<[Partial<Record<keyof OccamConfig, unknown>>, keyof OccamConfig, RegExp]>([
    [{ dataset: 'csv' }, 'dataPath', /'dataPath' is required for dataset 'csv'/],
    [{ dataset: 'idx' }, 'dataPath', /required/],
    [{ dataset: 'moby-dick' }, 'model', /'model' mlp cannot train on dataset 'moby-dick'/],
    [{ model: 'gpt' }, 'model', /gpt goes with text/],
    [{ model: 'gpt', dataset: 'moby-dick', width: 100, heads: 3 }, 'heads', /'heads' \(3\) must divide 'width' \(100\)/],
    [{ strategy: 'gradual', rounds: 10, beginRound: 5, endRound: 4 }, 'endRound', /'endRound' \(4\) must be ≥ 'beginRound' \(5\)/],
    [{ strategy: 'gradual', rounds: 10, endRound: 10 }, 'endRound', /must be < 'rounds'/],
    [{ strategy: 'gradual', targetDensity: 0.5, initialSparsity: 0.6 }, 'targetDensity', /leaves less sparsity than 'initialSparsity'/],
    [{ batchSize: 3, workers: 4 }, 'batchSize', /'batchSize' \(3\) must be ≥ 'workers' \(4\)/],
    [{ heartbeatMs: 1000, peerTimeoutMs: 1500 }, 'peerTimeoutMs', /'peerTimeoutMs' \(1500\) must be ≥ 2 × 'heartbeatMs' \(1000\)/],
  ])('%j', (settings, key, message) => {
    const error = configError(settings);
    expect(error.key).toBe(key);
    expect(error.message).toMatch(message);
  });
});

describe('values from flags and environment variables', () => {
  it('a number that does not parse names its key', () => {
    expect(() => parseConfigValue('units', 'lots')).toThrow("config: 'units' must be a number (got 'lots')");
    expect(() => parseConfigValue('p0', ' ')).toThrow(/'p0' must be a number/);
    expect(() => parseConfigValue('unitz', '3')).toThrow("config: unknown key 'unitz' (did you mean 'units'?)");
    expect(parseConfigValue('learningRate', '1e-3')).toBe(0.001);
  });
});

/** Runs the real `occam` command; resolves with its exit code and stderr. */
function occam(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [OCCAM_BIN, ...args], {
      env: { ...process.env, OCCAM_TOKEN: 'test-token', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

describe('the command line (each case runs `occam` and must fail before any training)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'occam-config-'));
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    [
      '--token on the command line',
      ['train', '--token', 'secret'],
      {},
      /--token would show the token in `ps`; use OCCAM_TOKEN or --token-file/,
    ],
    ['--token=… on the command line', ['worker', '--token=secret', '--coordinator', 'ws://x:1'], {}, /--token would show the token/],
    ['a --config file that does not exist', ['train', '--config', join(dir, 'missing.json')], {}, /config file .*missing.json not found/],
    ['a --config file that is not JSON', ['train', '--config', file('broken.json', '{"units": 3,')], {}, /is not valid JSON/],
    ['a --config file that is not an object', ['train', '--config', file('array.json', '[1, 2]')], {}, /must hold a JSON object/],
    [
      'a --config file with a typo',
      ['train', '--config', file('typo.json', '{"learning_rate": 0.1}')],
      {},
      /unknown key 'learning_rate' \(did you mean 'learningRate'\?\)/,
    ],
    [
      'a --config file with an impossible value',
      ['train', '--config', file('range.json', '{"holdback": 1}')],
      {},
      /'holdback' must be < 1/,
    ],
    ['a bad environment value', ['train'], { OCCAM_UNITS: 'lots' }, /'units' must be a number \(got 'lots'\)/],
    ['an environment value out of range', ['train'], { OCCAM_P0: '1.5' }, /'p0' must be < 1/],
    ['a bad flag value', ['train', '--rounds', '0'], {}, /'rounds' must be ≥ 1/],
    ['an unknown flag', ['train', '--batch-sise', '64'], {}, /unknown flag --batch-sise \(did you mean --batch-size\?\)/],
    [
      'a port that is not one',
      ['worker', '--coordinator', 'ws://x:1', '--ring-port', '99999'],
      {},
      /--ring-port \(or OCCAM_RING_PORT\) must be a port number/,
    ],
    [
      'a message bound that is not a number',
      ['coordinator', '--run-dir', join(dir, 'run'), '--max-message-mb', 'big'],
      {},
      /--max-message-mb \(or OCCAM_MAX_MESSAGE_MB\) must be a number of MiB/,
    ],
    [
      'a CA without a certificate',
      ['worker', '--coordinator', 'wss://x:1', '--tls-ca', join(dir, 'ca.pem')],
      {},
      /--tls-ca needs --tls-cert and --tls-key/,
    ],
    [
      'TLS with a ws:// coordinator',
      ['worker', '--coordinator', 'ws://x:1', '--tls-cert', file('c.pem', 'x'), '--tls-key', file('k.pem', 'x')],
      {},
      /--coordinator must be a wss:\/\/ URL/,
    ],
    [
      'no token at all',
      ['coordinator', '--run-dir', join(dir, 'run')],
      { OCCAM_TOKEN: '' },
      /no cluster token: set OCCAM_TOKEN or pass --token-file/,
    ],
    ['an empty token file', ['worker', '--coordinator', 'ws://x:1', '--token-file', file('token', '\n')], {}, /token file .* is empty/],
  ];

  it('refuses each with one clear message and a non-zero exit', async () => {
    // In parallel: each is a process start, not a computation.
    const results = await Promise.all(cases.map(([, args, env]) => occam(args, env)));
    for (const [i, [name, , , message]] of cases.entries()) {
      expect(results[i].code, `${name}: ${results[i].stderr}`).not.toBe(0);
      expect(results[i].stderr, name).toMatch(message);
      expect(results[i].stderr.trim().split('\n').length, `${name}: one message`).toBeLessThanOrEqual(2);
    }
  });
});
