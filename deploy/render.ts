// Renders a kustomization the way `kustomize build` (and `kubectl kustomize`) does, for the subset
// of kustomize that deploy/k8s uses — so tests and operators without the binary get the same
// objects. Anything outside the subset is refused by name rather than rendered differently.
//   node --import tsx deploy/render.ts deploy/k8s/overlays/gpu > occam-gpu.yaml
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';

/** A Kubernetes object as plain JSON data. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: K8sMetadata;
  [field: string]: unknown;
}

export interface K8sMetadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonMap = { [key: string]: Json };

/** One object in the build, with what kustomize tracks beside it. */
interface Resource {
  object: K8sObject;
  /** The name before a content-hash suffix; how patches and generators find it. */
  originalName: string;
  /** A generated ConfigMap whose name gets the content-hash suffix at the end of the build. */
  needsHash: boolean;
}

interface ConfigMapGeneratorArgs {
  name: string;
  behavior?: 'create' | 'replace' | 'merge';
  files?: string[];
  literals?: string[];
  options?: { disableNameSuffixHash?: boolean };
}

interface Kustomization {
  apiVersion?: string;
  kind?: string;
  namespace?: string;
  resources?: string[];
  labels?: { pairs: Record<string, string>; includeSelectors?: boolean; includeTemplates?: boolean }[];
  configMapGenerator?: ConfigMapGeneratorArgs[];
  generatorOptions?: { disableNameSuffixHash?: boolean };
  patches?: { path?: string; patch?: string; target?: unknown }[];
  images?: { name: string; newName?: string; newTag?: string; digest?: string }[];
  replicas?: { name: string; count: number }[];
}

const SUPPORTED_FIELDS = new Set([
  'apiVersion',
  'kind',
  'namespace',
  'resources',
  'labels',
  'configMapGenerator',
  'generatorOptions',
  'patches',
  'images',
  'replicas',
]);

export class RenderError extends Error {
  constructor(dir: string, problem: string) {
    super(`${dir}: ${problem}`);
    this.name = 'RenderError';
  }
}

/** The objects `kustomize build DIR` prints, in the order it prints them. */
export function renderKustomization(dir: string): K8sObject[] {
  const resources = build(resolve(dir));
  finishNames(resources);
  return sortLegacy(resources.map((r) => r.object));
}

/** YAML as kustomize prints it: documents separated by `---`. */
export function toYaml(objects: K8sObject[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0 })).join('---\n');
}

/** Parses every document of a YAML file (or text) into objects. */
export function parseYamlDocuments(text: string, where: string): unknown[] {
  return parseAllDocuments(text).flatMap((doc) => {
    if (doc.errors.length > 0) throw new RenderError(where, doc.errors[0].message);
    const value: unknown = doc.toJS();
    return value === null || value === undefined ? [] : [value];
  });
}

// ─── one kustomization level ────────────────────────────────────────────────────────────────────

function build(dir: string): Resource[] {
  const k = readKustomization(dir);
  // 1. resources: files, or directories holding a kustomization (built fully first).
  const resources: Resource[] = [];
  for (const entry of k.resources ?? []) {
    const path = join(dir, entry);
    if (!existsSync(path)) throw new RenderError(dir, `resource ${entry} does not exist`);
    if (statSync(path).isDirectory()) resources.push(...build(path));
    else for (const object of readObjects(path)) resources.push({ object, originalName: object.metadata.name, needsHash: false });
  }
  // 2. generators.
  for (const args of k.configMapGenerator ?? []) generateConfigMap(dir, k, args, resources);
  // 3. transformers, in kustomize's order: patches, namespace, labels, replicas, images.
  for (const patch of k.patches ?? []) applyPatch(dir, patch, resources);
  if (k.namespace) for (const r of resources) setNamespace(r.object, k.namespace);
  for (const label of k.labels ?? []) {
    if (label.includeSelectors || label.includeTemplates)
      throw new RenderError(dir, 'labels with includeSelectors/includeTemplates are not supported by render.ts');
    for (const r of resources) r.object.metadata.labels = { ...r.object.metadata.labels, ...label.pairs };
  }
  for (const { name, count } of k.replicas ?? []) {
    const targets = resources.filter((r) => REPLICATED_KINDS.has(r.object.kind) && r.object.metadata.name === name);
    if (targets.length === 0) throw new RenderError(dir, `replicas: no workload named ${name}`);
    for (const r of targets) (r.object.spec as JsonMap).replicas = count;
  }
  for (const image of k.images ?? []) for (const r of resources) setImage(r.object, image);
  return resources;
}

function readKustomization(dir: string): Kustomization {
  const file = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'].map((f) => join(dir, f)).find((f) => existsSync(f));
  if (!file) throw new RenderError(dir, 'no kustomization.yaml');
  const [doc] = parseYamlDocuments(readFileSync(file, 'utf8'), file);
  if (!isMap(doc)) throw new RenderError(file, 'not a mapping');
  for (const key of Object.keys(doc)) {
    if (!SUPPORTED_FIELDS.has(key)) throw new RenderError(file, `field '${key}' is not supported by render.ts (use kustomize)`);
  }
  return doc as unknown as Kustomization;
}

function readObjects(path: string): K8sObject[] {
  return parseYamlDocuments(readFileSync(path, 'utf8'), path).map((doc) => {
    if (
      !isMap(doc) ||
      typeof doc.kind !== 'string' ||
      typeof doc.apiVersion !== 'string' ||
      !isMap(doc.metadata) ||
      typeof doc.metadata.name !== 'string'
    ) {
      throw new RenderError(path, 'every document must be a Kubernetes object with apiVersion, kind and metadata.name');
    }
    return doc as unknown as K8sObject;
  });
}

// ─── configMapGenerator ─────────────────────────────────────────────────────────────────────────

function generateConfigMap(dir: string, k: Kustomization, args: ConfigMapGeneratorArgs, resources: Resource[]): void {
  const data: Record<string, string> = {};
  for (const file of args.files ?? []) {
    if (file.includes('=')) throw new RenderError(dir, `configMapGenerator: 'key=file' entries are not supported (${file})`);
    data[basename(file)] = readFileSync(join(dir, file), 'utf8');
  }
  for (const literal of args.literals ?? []) {
    const at = literal.indexOf('=');
    if (at <= 0) throw new RenderError(dir, `configMapGenerator: literal '${literal}' is not key=value`);
    const value = literal.slice(at + 1);
    if (/^["']/.test(value)) throw new RenderError(dir, `configMapGenerator: quoted literal values are not supported (${literal})`);
    data[literal.slice(0, at)] = value;
  }
  const needsHash = !(args.options?.disableNameSuffixHash ?? k.generatorOptions?.disableNameSuffixHash ?? false);
  const object: K8sObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: args.name }, data };
  const behavior = args.behavior ?? 'create';
  const existing = resources.find((r) => r.object.kind === 'ConfigMap' && r.originalName === args.name);
  if (behavior === 'create') {
    if (existing) throw new RenderError(dir, `configMapGenerator: ConfigMap ${args.name} already exists (use behavior: replace or merge)`);
    resources.push({ object, originalName: args.name, needsHash });
    return;
  }
  if (!existing) throw new RenderError(dir, `configMapGenerator: no ConfigMap ${args.name} to ${behavior}`);
  // The base's identity (namespace) and metadata stay; this level's labels and data win.
  const old = existing.object;
  const metadata: K8sMetadata = { ...old.metadata, name: args.name };
  existing.object = { ...old, metadata, data: behavior === 'merge' ? { ...(old.data as Record<string, string>), ...data } : data };
  existing.needsHash = needsHash;
}

/**
 * kustomize's content hash for a ConfigMap name suffix (api/hasher): sha256 of Go's JSON of
 * {data, kind, name}, 10 hex characters re-lettered. Its name lookup (`metadata/name` as one path
 * element) finds nothing, so the name enters as "": only the data decides.
 */
export function configMapHash(object: K8sObject): string {
  const encoded = goJson({ data: (object.data ?? {}) as Json, kind: 'ConfigMap', name: '' });
  const hex = createHash('sha256').update(encoded).digest('hex');
  const swap: Record<string, string> = { '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' };
  return [...hex.slice(0, 10)].map((c) => swap[c] ?? c).join('');
}

/** encoding/json.Marshal: map keys sorted, and <, >, &, U+2028, U+2029 escaped. */
function goJson(value: Json): string {
  if (Array.isArray(value)) return `[${value.map(goJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((key) => `${goJson(key)}:${goJson(value[key])}`).join(',')}}`;
  }
  const text = JSON.stringify(value);
  return typeof value === 'string'
    ? text.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    : text;
}

/** End of the build: hash-suffixed names, and every reference to them updated (nameReference). */
function finishNames(resources: Resource[]): void {
  for (const r of resources) {
    if (!r.needsHash) continue;
    const oldName = r.object.metadata.name;
    const newName = `${oldName}-${configMapHash(r.object)}`;
    r.object.metadata.name = newName;
    for (const other of resources) {
      if ((other.object.metadata.namespace ?? '') !== (r.object.metadata.namespace ?? '')) continue;
      for (const podSpec of podSpecs(other.object)) renameConfigMapRefs(podSpec, oldName, newName);
    }
  }
}

function renameConfigMapRefs(podSpec: JsonMap, from: string, to: string): void {
  const rename = (ref: Json | undefined) => {
    if (isMap(ref) && ref.name === from) ref.name = to;
  };
  for (const volume of listOf(podSpec.volumes)) {
    rename(volume.configMap);
    if (isMap(volume.projected)) for (const source of listOf(volume.projected.sources)) rename(source.configMap);
  }
  for (const container of [...listOf(podSpec.containers), ...listOf(podSpec.initContainers)]) {
    for (const env of listOf(container.env)) if (isMap(env.valueFrom)) rename(env.valueFrom.configMapKeyRef);
    for (const from of listOf(container.envFrom)) rename(from.configMapRef);
  }
}

// ─── patches (strategic merge) ──────────────────────────────────────────────────────────────────

function applyPatch(dir: string, spec: { path?: string; patch?: string; target?: unknown }, resources: Resource[]): void {
  if (spec.target !== undefined) throw new RenderError(dir, 'patches with a target are not supported by render.ts');
  const text = spec.path ? readFileSync(join(dir, spec.path), 'utf8') : spec.patch;
  if (text === undefined) throw new RenderError(dir, 'a patch needs path or patch');
  for (const patch of parseYamlDocuments(text, spec.path ?? 'inline patch')) {
    const name = isMap(patch) && isMap(patch.metadata) ? patch.metadata.name : undefined;
    if (!isMap(patch) || typeof name !== 'string')
      throw new RenderError(dir, 'a strategic-merge patch must be an object with metadata.name');
    const target = resources.find(
      (r) =>
        r.object.kind === patch.kind &&
        r.object.apiVersion === patch.apiVersion &&
        (r.originalName === name || r.object.metadata.name === name),
    );
    if (!target) throw new RenderError(dir, `patch target ${String(patch.kind)} ${name} not found`);
    const { apiVersion: _a, kind: _k, ...body } = patch;
    const { name: _n, ...metadataPatch } = body.metadata as JsonMap;
    const merged = mergeMap(target.object as unknown as JsonMap, { ...body, metadata: metadataPatch }, [target.object.kind]);
    target.object = merged as unknown as K8sObject;
  }
}

/** Merge keys of the lists the patches touch (Kubernetes' patchMergeKey); other lists are replaced. */
function mergeKey(path: string[], field: string): string | null {
  switch (field) {
    case 'containers':
    case 'initContainers':
    case 'env':
    case 'volumes':
    case 'imagePullSecrets':
      return 'name';
    case 'volumeMounts':
      return 'mountPath';
    case 'ports':
      return path[0] === 'Service' ? 'port' : 'containerPort';
    default:
      return null;
  }
}

function mergeMap(target: JsonMap, patch: JsonMap, path: string[]): JsonMap {
  const out: JsonMap = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith('$')) throw new RenderError(path.join('.'), `patch directive ${key} is not supported by render.ts`);
    if (value === null) {
      delete out[key];
      continue;
    }
    const current = out[key];
    if (isMap(value) && isMap(current)) out[key] = mergeMap(current, value, [...path, key]);
    else if (Array.isArray(value) && Array.isArray(current) && mergeKey(path, key))
      out[key] = mergeList(current, value, mergeKey(path, key) as string, [...path, key]);
    else out[key] = structuredClone(value);
  }
  return out;
}

/**
 * An associative list as kyaml merges it: the patch's items first, in patch order (merged into
 * the target's item with the same key where there is one), then the target's other items.
 */
function mergeList(target: Json[], patch: Json[], key: string, path: string[]): Json[] {
  const patched = patch.map((item) => {
    if (!isMap(item)) throw new RenderError(path.join('.'), `list item without ${key}`);
    const existing = target.find((t) => isMap(t) && t[key] === item[key]);
    return isMap(existing) ? mergeMap(existing, item, path) : structuredClone(item);
  });
  const keys = new Set(patch.map((item) => (isMap(item) ? item[key] : undefined)));
  return [...patched, ...target.filter((t) => !(isMap(t) && keys.has(t[key]))).map((t) => structuredClone(t))];
}

// ─── namespace, images ──────────────────────────────────────────────────────────────────────────

const CLUSTER_SCOPED = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'PersistentVolume',
  'StorageClass',
  'PriorityClass',
  'IngressClass',
  'RuntimeClass',
  'ValidatingWebhookConfiguration',
  'MutatingWebhookConfiguration',
  'APIService',
]);
const REPLICATED_KINDS = new Set(['Deployment', 'ReplicaSet', 'ReplicationController', 'StatefulSet']);

function setNamespace(object: K8sObject, namespace: string): void {
  // As kustomize does: a Namespace object becomes the namespace everything else moves into.
  if (object.kind === 'Namespace') object.metadata.name = namespace;
  else if (!CLUSTER_SCOPED.has(object.kind)) object.metadata.namespace = namespace;
}

function setImage(object: K8sObject, image: { name: string; newName?: string; newTag?: string; digest?: string }): void {
  for (const podSpec of podSpecs(object)) {
    for (const container of [...listOf(podSpec.containers), ...listOf(podSpec.initContainers)]) {
      if (typeof container.image !== 'string') continue;
      const { name, tag } = splitImage(container.image);
      if (name !== image.name) continue;
      const suffix = image.digest ? `@${image.digest}` : image.newTag ? `:${image.newTag}` : tag;
      container.image = `${image.newName ?? name}${suffix}`;
    }
  }
}

/** `registry:5000/app:tag@sha256:…` → name `registry:5000/app`, tag `:tag@sha256:…` (a port is not a tag). */
function splitImage(image: string): { name: string; tag: string } {
  const digestAt = image.indexOf('@');
  const withoutDigest = digestAt >= 0 ? image.slice(0, digestAt) : image;
  const colon = withoutDigest.lastIndexOf(':');
  const end = colon > withoutDigest.lastIndexOf('/') ? colon : digestAt >= 0 ? digestAt : image.length;
  return { name: image.slice(0, end), tag: image.slice(end) };
}

function podSpecs(object: K8sObject): JsonMap[] {
  const spec = object.spec;
  if (!isMap(spec)) return [];
  if (object.kind === 'Pod') return [spec];
  if (object.kind === 'CronJob') {
    const job = isMap(spec.jobTemplate) && isMap(spec.jobTemplate.spec) ? spec.jobTemplate.spec : null;
    return job && isMap(job.template) && isMap(job.template.spec) ? [job.template.spec] : [];
  }
  return isMap(spec.template) && isMap(spec.template.spec) ? [spec.template.spec] : [];
}

// ─── output order (kustomize's default "legacy" sort) ───────────────────────────────────────────

const ORDER_FIRST = [
  'Namespace',
  'ResourceQuota',
  'StorageClass',
  'CustomResourceDefinition',
  'ServiceAccount',
  'PodSecurityPolicy',
  'Role',
  'ClusterRole',
  'RoleBinding',
  'ClusterRoleBinding',
  'ConfigMap',
  'Secret',
  'Endpoints',
  'Service',
  'LimitRange',
  'PriorityClass',
  'PersistentVolume',
  'PersistentVolumeClaim',
  'Deployment',
  'StatefulSet',
  'CronJob',
  'PodDisruptionBudget',
];
const ORDER_LAST = ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'];

function sortLegacy(objects: K8sObject[]): K8sObject[] {
  const rank = (kind: string) =>
    ORDER_FIRST.includes(kind)
      ? ORDER_FIRST.indexOf(kind) - ORDER_FIRST.length
      : ORDER_LAST.includes(kind)
        ? ORDER_LAST.indexOf(kind) + 1
        : 0;
  const gvk = (o: K8sObject) => `${o.apiVersion}_${o.kind}`;
  const id = (o: K8sObject) => `${o.metadata.namespace ?? ''}|${o.metadata.name}`;
  return [...objects].sort((a, b) => rank(a.kind) - rank(b.kind) || compare(gvk(a), gvk(b)) || compare(id(a), id(b)));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isMap(value: unknown): value is JsonMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function listOf(value: Json | undefined): JsonMap[] {
  return Array.isArray(value) ? value.filter(isMap) : [];
}

// ─── command line ───────────────────────────────────────────────────────────────────────────────

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: node --import tsx deploy/render.ts KUSTOMIZATION_DIR\n');
    process.exit(2);
  }
  try {
    process.stdout.write(toYaml(renderKustomization(dir)));
  } catch (error) {
    process.stderr.write(`render: ${(error as Error).message}\n`);
    process.exit(1);
  }
}
