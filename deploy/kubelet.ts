// What a node does with a rendered pod template and the image, without a node: the container's
// environment (values, downward API, ConfigMap keys, resource fields), `$(VAR)` expansion in
// args, and the image's ENTRYPOINT/WORKDIR/ENV/USER read from deploy/Dockerfile. The tests use
// it to start the coordinator and workers exactly as their pods would be started.
import type { IContainer, IPodSpec } from 'kubernetes-models/v1';
import type { IStatefulSet } from 'kubernetes-models/apps/v1';
import type { K8sObject } from './render.ts';

export interface PodContext {
  podName: string;
  namespace: string;
  /** Rendered ConfigMaps, for configMapKeyRef. */
  configMaps: K8sObject[];
  /** Secret data by name (the operator creates them), for secretKeyRef. */
  secrets?: Record<string, Record<string, string>>;
  podIP?: string;
}

/** The StatefulSet `name` and its pod template's spec and first container (or the one named). */
export function workload(
  objects: K8sObject[],
  name: string,
  containerName?: string,
): { statefulSet: IStatefulSet; pod: IPodSpec; container: IContainer } {
  const object = objects.find((o) => o.kind === 'StatefulSet' && o.metadata.name === name);
  if (!object) throw new Error(`no StatefulSet ${name} in the rendered objects`);
  // Rendered objects are validated against the schemas by the manifest test; here they are read as such.
  const statefulSet = object as unknown as IStatefulSet;
  const pod = statefulSet.spec?.template.spec;
  if (!pod) throw new Error(`StatefulSet ${name} has no pod template spec`);
  const container = containerName ? pod.containers.find((c) => c.name === containerName) : pod.containers[0];
  if (!container) throw new Error(`StatefulSet ${name} has no container ${containerName ?? ''}`);
  return { statefulSet, pod, container };
}

/** The container's environment as the kubelet computes it, in declaration order. */
export function containerEnv(container: IContainer, context: PodContext): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    const source = variable.valueFrom;
    if (!source) {
      env[variable.name] = expandReferences(variable.value ?? '', env);
    } else if (source.fieldRef) {
      env[variable.name] = fieldValue(source.fieldRef.fieldPath, context);
    } else if (source.configMapKeyRef) {
      const { name, key } = source.configMapKeyRef;
      const configMap = context.configMaps.find((c) => c.metadata.name === name);
      const data = configMap?.data as Record<string, string> | undefined;
      if (data?.[key] === undefined) throw new Error(`env ${variable.name}: ConfigMap ${name} has no key ${key}`);
      env[variable.name] = data[key];
    } else if (source.secretKeyRef) {
      const { name, key } = source.secretKeyRef;
      const value = context.secrets?.[name ?? '']?.[key];
      if (value === undefined) throw new Error(`env ${variable.name}: Secret ${name} has no key ${key}`);
      env[variable.name] = value;
    } else if (source.resourceFieldRef) {
      const { resource, divisor } = source.resourceFieldRef;
      const [kind, what] = resource.split('.');
      const amount = (kind === 'limits' ? container.resources?.limits : container.resources?.requests)?.[what];
      if (amount === undefined) throw new Error(`env ${variable.name}: the container sets no ${resource}`);
      // The kubelet divides and rounds up (a 500m limit with divisor 1 gives "1").
      env[variable.name] = String(Math.ceil(quantity(amount) / quantity(divisor ?? '1')));
    } else {
      throw new Error(`env ${variable.name}: unsupported valueFrom`);
    }
  }
  return env;
}

/** `$(VAR)` → its value when VAR is defined, `$$` → `$`; unknown references stay as written. */
export function expandReferences(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match: string, name: string | undefined) => {
    if (name === undefined) return '$';
    return env[name] ?? match;
  });
}

/** A Kubernetes quantity as a number (cores for CPU, bytes for memory). */
export function quantity(value: string | number): number {
  if (typeof value === 'number') return value;
  const match = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(value);
  if (!match) throw new Error(`not a quantity: ${value}`);
  const scale: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(match[1]) * (match[2] ? scale[match[2]] : 1);
}

function fieldValue(path: string, context: PodContext): string {
  switch (path) {
    case 'metadata.name':
      return context.podName;
    case 'metadata.namespace':
      return context.namespace;
    case 'status.podIP':
      return context.podIP ?? '127.0.0.1';
    default:
      throw new Error(`unsupported fieldRef ${path}`);
  }
}

// ─── the image, from its Dockerfile ──────────────────────────────────────────────────────────────

export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  workdir: string;
  user: string;
  env: Record<string, string>;
  exposed: number[];
  healthcheck: string[] | null;
  /** Every `ARG`/`ENV` name, for checking that no secret is baked in. */
  declaredNames: string[];
  /** Sources copied into the final stage: [from, to] (from the build context unless --from). */
  copies: { from: string; to: string; stage: string | null }[];
}

/**
 * The configuration of the Dockerfile's final stage, with ENV, WORKDIR and USER inherited through
 * the stages it is built on; `args` overrides the global ARG defaults (e.g. { VARIANT: 'cpu' }).
 */
export function imageConfig(dockerfile: string, args: Record<string, string> = {}): ImageConfig {
  const lines = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const globals: Record<string, string> = {};
  const stages: { name: string | null; base: string; lines: string[] }[] = [];
  for (const line of lines) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    const globalArg = stages.length === 0 ? /^ARG\s+(\w+)(?:=(\S*))?/i.exec(line) : null;
    if (globalArg) globals[globalArg[1]] = args[globalArg[1]] ?? globalArg[2] ?? '';
    if (from)
      stages.push({ base: from[1].replace(/\$\{(\w+)\}/g, (_, name: string) => globals[name] ?? ''), name: from[2] ?? null, lines: [] });
    else stages[stages.length - 1]?.lines.push(line);
  }
  // The chain of stages the final one is built on (FROM <stage>), oldest first.
  const chain: typeof stages = [];
  let stage: (typeof stages)[number] | undefined = stages[stages.length - 1];
  while (stage && !chain.includes(stage)) {
    chain.unshift(stage);
    const base: string = stage.base;
    stage = stages.find((s) => s.name === base);
  }
  const config: ImageConfig = {
    entrypoint: [],
    cmd: [],
    workdir: '/',
    user: 'root',
    env: {},
    exposed: [],
    healthcheck: null,
    declaredNames: Object.keys(globals),
    copies: [],
  };
  for (const stage of stages)
    for (const line of stage.lines) {
      const arg = /^(ARG|ENV)\s+(.*)$/i.exec(line);
      if (arg) for (const [, name] of arg[2].matchAll(/(\w+)=/g)) config.declaredNames.push(name);
      if (/^ARG\s+\w+$/i.test(line)) config.declaredNames.push(line.split(/\s+/)[1]);
    }
  for (const stage of chain)
    for (const line of stage.lines) {
      const [instruction, ...rest] = line.split(/\s+/);
      const argument = rest.join(' ');
      switch (instruction.toUpperCase()) {
        case 'ENV':
          for (const [, name, value] of argument.matchAll(/(\w+)=("[^"]*"|\S*)/g)) config.env[name] = value.replace(/^"|"$/g, '');
          break;
        case 'WORKDIR':
          config.workdir = argument.startsWith('/') ? argument : `${config.workdir}/${argument}`;
          break;
        case 'USER':
          config.user = argument;
          break;
        case 'EXPOSE':
          config.exposed.push(...rest.map(Number));
          break;
        case 'ENTRYPOINT':
          config.entrypoint = JSON.parse(argument) as string[];
          break;
        case 'CMD':
          config.cmd = JSON.parse(argument) as string[];
          break;
        case 'HEALTHCHECK': {
          const at = argument.indexOf('CMD ');
          config.healthcheck = at >= 0 ? (JSON.parse(argument.slice(at + 4)) as string[]) : null;
          break;
        }
        case 'COPY': {
          const stageFlag = rest.find((r) => r.startsWith('--from='));
          const paths = rest.filter((r) => !r.startsWith('--'));
          const to = paths[paths.length - 1];
          for (const from of paths.slice(0, -1)) config.copies.push({ from, to, stage: stageFlag ? stageFlag.slice(7) : null });
          break;
        }
      }
    }
  return config;
}
