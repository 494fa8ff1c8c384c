// Checks rendered Kubernetes objects the way an API server would, without one: types, required
// fields and enums with the OpenAPI-generated validators of `kubernetes-models`, and unknown
// fields (a typo such as `readinesProbe`, which `kubectl apply` refuses under strict field
// validation but those validators let through) by walking the models' type declarations.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import type { K8sObject } from './render.ts';

interface Validatable {
  validate(): void;
}

const MODELS: Record<string, new (data: never) => Validatable> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/StatefulSet': StatefulSet,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

/** Every problem with one object, as `Kind/name: path: problem` lines; empty when it is valid. */
export function validateObject(object: K8sObject): string[] {
  const id = `${object.kind}/${object.metadata?.name}`;
  const key = `${object.apiVersion}/${object.kind}`;
  const Model = MODELS[key];
  if (!Model) return [`${id}: no schema for ${key} here (add it to deploy/validate.ts)`];
  const problems: string[] = [];
  try {
    new Model(object as never).validate();
  } catch (error) {
    problems.push(`${id}: ${(error as Error).message}`);
  }
  const [group, version] = object.apiVersion.includes('/') ? object.apiVersion.split('/') : ['', object.apiVersion];
  const file = join(MODELS_DIR, group, version, `${object.kind}.d.ts`);
  for (const problem of unknownFields(object, { kind: 'ref', file, name: `I${object.kind}` }, '')) problems.push(`${id}: ${problem}`);
  return problems;
}

// ─── unknown fields, from the .d.ts of kubernetes-models ──────────────────────────────────────

type TypeNode =
  | { kind: 'object'; props: Map<string, TypeNode>; index: TypeNode | null }
  | { kind: 'array'; of: TypeNode }
  | { kind: 'ref'; file: string; name: string }
  | { kind: 'any' };

const require = createRequire(import.meta.url);
const MODELS_DIR = dirname(require.resolve('kubernetes-models/package.json'));
const APIMACHINERY_DIR = dirname(require.resolve('@kubernetes-models/apimachinery/package.json'));

function unknownFields(value: unknown, type: TypeNode, path: string): string[] {
  if (type.kind === 'ref') return unknownFields(value, resolveRef(type), path);
  if (type.kind === 'array') return Array.isArray(value) ? value.flatMap((item, i) => unknownFields(item, type.of, `${path}[${i}]`)) : [];
  if (type.kind !== 'object' || typeof value !== 'object' || value === null || Array.isArray(value)) return [];
  return Object.entries(value).flatMap(([key, item]) => {
    const at = path ? `${path}.${key}` : key;
    const field = type.props.get(key) ?? type.index;
    return field ? unknownFields(item, field, at) : [`${at}: unknown field`];
  });
}

const declarations = new Map<string, Map<string, TypeNode>>();

/** The interface or type alias a name stands for in a declaration file (or one it imports). */
function resolveRef(ref: { file: string; name: string }): TypeNode {
  let types = declarations.get(ref.file);
  if (!types) {
    types = parseDeclarations(ref.file);
    declarations.set(ref.file, types);
  }
  const type = types.get(ref.name);
  if (!type) throw new Error(`${ref.file}: no type ${ref.name}`);
  return type;
}

/**
 * The types of one generated .d.ts: `export interface I<Name> {…}`, `export type I<Name> = …`,
 * imports (`import { IIoK8s… } from "./X.js"`) and re-export aliases (`export type { IX as IIoK8s… }`).
 */
function parseDeclarations(file: string): Map<string, TypeNode> {
  const text = readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '');
  const types = new Map<string, TypeNode>();
  for (const [, names, from] of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
    const target = importedFile(file, from);
    if (!target) continue;
    for (const name of names
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean))
      types.set(name, { kind: 'ref', file: target, name });
  }
  for (const match of text.matchAll(/export interface (\w+)(?:\s+extends\s+[\w, ]+)?\s*\{/g)) {
    const parser = new TypeParser(text, (match.index ?? 0) + match[0].length - 1, file, types);
    types.set(match[1], parser.parseType());
  }
  for (const match of text.matchAll(/export type (\w+)\s*=/g)) {
    const parser = new TypeParser(text, (match.index ?? 0) + match[0].length, file, types);
    types.set(match[1], parser.parseType());
  }
  for (const [, list] of text.matchAll(/export type \{([^}]*)\}/g)) {
    for (const [, local, alias] of list.matchAll(/(\w+)\s+as\s+(\w+)/g)) types.set(alias, { kind: 'ref', file, name: local });
  }
  return types;
}

function importedFile(from: string, specifier: string): string | null {
  if (specifier.startsWith('.')) return join(dirname(from), specifier.replace(/\.js$/, '.d.ts'));
  const apimachinery = '@kubernetes-models/apimachinery/';
  if (specifier.startsWith(apimachinery)) return join(APIMACHINERY_DIR, `${specifier.slice(apimachinery.length)}.d.ts`);
  return null; // @kubernetes-models/base: Model, TypeMeta — no fields of an object
}

/** Just enough of TypeScript's type syntax for the generated declarations. */
class TypeParser {
  constructor(
    private readonly text: string,
    private at: number,
    private readonly file: string,
    private readonly scope: Map<string, TypeNode>,
  ) {}

  parseType(): TypeNode {
    const options = [this.parsePrimary()];
    while (this.peek() === '|') {
      this.at++;
      options.push(this.parsePrimary());
    }
    if (options.length === 1) return options[0];
    // A union of an object type with anything else does not occur in these files; of scalars it is "any".
    return options.find((o) => o.kind !== 'any') ?? { kind: 'any' };
  }

  private parsePrimary(): TypeNode {
    const c = this.peek();
    if (c === '{') return this.parseObject();
    if (c === '"' || c === "'") {
      this.readString();
      return { kind: 'any' };
    }
    const word = this.readWord();
    if (word === 'Array' && this.peek() === '<') {
      this.at++;
      const of = this.parseType();
      this.expect('>');
      return { kind: 'array', of };
    }
    if (word === 'import' && this.peek() === '(') throw new Error(`${this.file}: unexpected import() type`);
    if (['string', 'number', 'boolean', 'any', 'unknown', 'object', 'null', 'true', 'false'].includes(word)) return { kind: 'any' };
    if (this.peek() === '[') {
      // IStatefulSet["apiVersion"]: an indexed access, only ever to a literal.
      this.at++;
      this.readString();
      this.expect(']');
      return { kind: 'any' };
    }
    if (!word) throw new Error(`${this.file}: cannot parse a type at …${this.text.slice(this.at, this.at + 40)}`);
    return this.scope.get(word) ?? { kind: 'ref', file: this.file, name: word };
  }

  private parseObject(): TypeNode {
    this.expect('{');
    const props = new Map<string, TypeNode>();
    let index: TypeNode | null = null;
    while (this.peek() !== '}') {
      if (this.peek() === '[') {
        // [key: string]: T;
        this.at++;
        this.readWord();
        this.expect(':');
        this.readWord();
        this.expect(']');
        this.expect(':');
        index = this.parseType();
      } else {
        const name = this.peek() === '"' ? this.readString() : this.readWord();
        if (this.peek() === '?') this.at++;
        this.expect(':');
        props.set(name, this.parseType());
      }
      if (this.peek() === ';' || this.peek() === ',') this.at++;
    }
    this.expect('}');
    return { kind: 'object', props, index };
  }

  private peek(): string {
    while (/\s/.test(this.text[this.at] ?? '')) this.at++;
    return this.text[this.at] ?? '';
  }

  private expect(c: string): void {
    if (this.peek() !== c) throw new Error(`${this.file}: expected '${c}' at …${this.text.slice(this.at, this.at + 40)}`);
    this.at++;
  }

  private readWord(): string {
    this.peek();
    const match = /^[\w$.]+/.exec(this.text.slice(this.at, this.at + 200));
    const word = match?.[0] ?? '';
    this.at += word.length;
    return word;
  }

  private readString(): string {
    const quote = this.peek();
    const end = this.text.indexOf(quote, this.at + 1);
    const value = this.text.slice(this.at + 1, end);
    this.at = end + 1;
    return value;
  }
}
