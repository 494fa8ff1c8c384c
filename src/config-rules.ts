// How one setting's value is checked against its schema: the rule a key's schema gives (type and
// range), the check itself, and ConfigError, the one error every bad setting becomes.
import type { TSchema } from '@sinclair/typebox';

export class ConfigError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`config: ${message}`);
    this.name = 'ConfigError';
  }
}

export type Rule =
  | { type: 'integer' | 'number'; min?: number; max?: number; above?: number; below?: number }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'string' }
  | { type: 'boolean' };

/** A key's schema as the checks (and the tests that walk every error path) read it. */
export function ruleOf(schema: TSchema): Rule {
  if (Array.isArray(schema.enum)) return { type: 'enum', values: schema.enum as string[] };
  if (schema.type === 'string') return { type: 'string' };
  if (schema.type === 'boolean') return { type: 'boolean' };
  const { minimum: min, maximum: max, exclusiveMinimum: above, exclusiveMaximum: below } = schema as Record<string, number | undefined>;
  return { type: schema.type === 'integer' ? 'integer' : 'number', min, max, above, below };
}

export function checkRule(key: string, value: unknown, rule: Rule): void {
  if (rule.type === 'string') {
    if (typeof value !== 'string') throw new ConfigError(key, `'${key}' must be a string (got ${describe(value)})`);
    return;
  }
  if (rule.type === 'boolean') {
    if (typeof value !== 'boolean') throw new ConfigError(key, `'${key}' must be true or false (got ${describe(value)})`);
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

export function describe(value: unknown): string {
  return typeof value === 'string' ? `'${value}'` : (JSON.stringify(value) ?? String(value));
}
