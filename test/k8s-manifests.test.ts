// The Kubernetes manifests (deploy/k8s), checked the way a cluster would find their faults: every
// overlay renders exactly as kustomize renders it, every object passes the API schemas (with no
// unknown fields), and the objects fit together — selectors, ports, volumes, the operator's token
// Secret, probes on the processes' health endpoints, stable DNS names, and the CLI's flags.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import type { IContainer, IPodSpec, IProbe, IService } from 'kubernetes-models/v1';
import type { IStatefulSet } from 'kubernetes-models/apps/v1';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { describe, expect, it } from 'vitest';
import { containerEnv, expandReferences, imageConfig, quantity } from '../deploy/kubelet.ts';
import { parseYamlDocuments, renderKustomization, type K8sObject } from '../deploy/render.ts';
import { validateObject } from '../deploy/validate.ts';
import { allFlags, commandFlags } from '../src/cli/help.ts';
import { CONFIG_KEYS, envName, resolveConfig } from '../src/config.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const K8S = join(ROOT, 'deploy', 'k8s');
const OVERLAYS = readdirSync(join(K8S, 'overlays')).sort();
const README = readFileSync(join(ROOT, 'deploy', 'README.md'), 'utf8');
const SOURCES = sourceText(join(ROOT, 'src'));

/** The Secret the operator creates (deploy/README.md) and the key holding the token. */
const TOKEN_SECRET = 'occam-token';
const TOKEN_KEY = 'token';
const COORDINATOR = 'occam-coordinator';
const WORKERS = 'occam-worker';

/** `kustomize build` or `kubectl kustomize`, where either is installed. */
const KUSTOMIZE = findKustomize();

describe('deploy/k8s renders as kustomize does', () => {
  // Without either binary this is skipped; the checks below still run on deploy/render.ts's output.
  it.skipIf(KUSTOMIZE === null).each(['base', ...OVERLAYS.map((o) => `overlays/${o}`)])('%s', (dir) => {
    const [command, ...args] = KUSTOMIZE ?? [];
    const theirs = parseYamlDocuments(execFileSync(command, [...args, join(K8S, dir)], { encoding: 'utf8' }), 'kustomize');
    const mine = JSON.parse(JSON.stringify(renderKustomization(join(K8S, dir)))) as unknown[];
    expect(mine.length).toBe(theirs.length);
    for (const [i, object] of mine.entries()) expect(object, `object ${i}`).toEqual(theirs[i]);
    expect(isDeepStrictEqual(mine, theirs)).toBe(true);
  });
});

describe.each(OVERLAYS)('overlay %s', (overlay) => {
  const objects = renderKustomization(join(K8S, 'overlays', overlay));
  const namespace = objects.find((o) => o.kind === 'Namespace')?.metadata.name ?? '';
  const services = objects.filter((o) => o.kind === 'Service') as unknown as (IService & K8sObject)[];
  const statefulSets = objects.filter((o) => o.kind === 'StatefulSet') as unknown as (IStatefulSet & K8sObject)[];
  const configMaps = objects.filter((o) => o.kind === 'ConfigMap');
  const coordinator = podOf(statefulSets, COORDINATOR);
  const workers = podOf(statefulSets, WORKERS);
  const context = (podName: string) => ({
    podName,
    namespace,
    configMaps,
    secrets: { [TOKEN_SECRET]: { [TOKEN_KEY]: 'not-the-real-token' } },
  });
  const coordinatorArgs = expandedArgs(coordinator.container, context(`${COORDINATOR}-0`));
  const workerArgs = expandedArgs(workers.container, context(`${WORKERS}-1`));

  it('every object passes the Kubernetes schemas, with no unknown fields', () => {
    expect(objects.flatMap(validateObject)).toEqual([]);
  });

  it('holds one namespace with both StatefulSets, their Services, the config, a PDB — and no Secret', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'ConfigMap',
      'Namespace',
      'PodDisruptionBudget',
      'Service',
      'Service',
      'StatefulSet',
      'StatefulSet',
    ]);
    for (const object of objects.filter((o) => o.kind !== 'Namespace'))
      expect(object.metadata.namespace, `${object.kind}/${object.metadata.name}`).toBe(namespace);
    expect(coordinator.statefulSet.spec?.replicas).toBe(1);
    // The run directory is a claim per coordinator pod: checkpoints outlive the pod.
    const claims = coordinator.statefulSet.spec?.volumeClaimTemplates ?? [];
    expect(claims.map((c) => c.metadata?.name)).toEqual(['run']);
    expect(claims[0].spec?.accessModes).toEqual(['ReadWriteOnce']);
  });

  it('Services and the PDB select the pods they serve, on ports those pods open', () => {
    for (const { statefulSet, pod } of [coordinator, workers]) {
      const labels = statefulSet.spec?.template.metadata?.labels ?? {};
      expect(selects(statefulSet.spec?.selector.matchLabels, labels), `${statefulSet.metadata?.name} selects its own pods`).toBe(true);
      const governing = services.find((s) => s.metadata.name === statefulSet.spec?.serviceName);
      expect(governing, `serviceName of ${statefulSet.metadata?.name}`).toBeDefined();
      expect(selects(governing?.spec?.selector, labels)).toBe(true);
      for (const port of governing?.spec?.ports ?? [])
        expect(containerPort(pod.containers, port.targetPort ?? port.port), `${governing?.metadata.name} port ${port.name}`).toBe(
          port.port,
        );
    }
    // Each Service selects exactly one of the two workloads.
    for (const service of services) {
      const selected = [coordinator, workers].filter((w) =>
        selects(service.spec?.selector, w.statefulSet.spec?.template.metadata?.labels ?? {}),
      );
      expect(
        selected.map((w) => w.statefulSet.metadata?.name),
        service.metadata.name,
      ).toHaveLength(1);
    }
    const workerService = services.find((s) => s.metadata.name === workers.statefulSet.spec?.serviceName);
    expect(workerService?.spec?.clusterIP).toBe('None');
    // DNS names must resolve before a worker is Ready (its neighbours connect while it joins).
    expect(workerService?.spec?.publishNotReadyAddresses).toBe(true);
    expect(workers.statefulSet.spec?.podManagementPolicy).toBe('Parallel');
    const pdb = objects.find((o) => o.kind === 'PodDisruptionBudget') as unknown as IPodDisruptionBudget;
    expect(selects(pdb.spec?.selector?.matchLabels, workers.statefulSet.spec?.template.metadata?.labels ?? {})).toBe(true);
    expect(selects(pdb.spec?.selector?.matchLabels, coordinator.statefulSet.spec?.template.metadata?.labels ?? {})).toBe(false);
    expect(pdb.spec?.maxUnavailable).toBe(1);
  });

  it('volumes and ConfigMap references resolve; the token comes from the documented Secret, never from args or env values', () => {
    for (const { statefulSet, pod, container } of [coordinator, workers]) {
      const volumes = new Set([
        ...(pod.volumes ?? []).map((v) => v.name),
        ...(statefulSet.spec?.volumeClaimTemplates ?? []).map((c) => c.metadata?.name),
      ]);
      const mounted = new Set((container.volumeMounts ?? []).map((m) => m.name));
      for (const name of mounted) expect(volumes.has(name), `mount ${name} of ${statefulSet.metadata?.name}`).toBe(true);
      for (const name of volumes)
        expect(mounted.has(name as string), `volume ${name} of ${statefulSet.metadata?.name} is mounted`).toBe(true);
      for (const volume of pod.volumes ?? []) {
        if (volume.configMap) expect(configMaps.map((c) => c.metadata.name)).toContain(volume.configMap.name);
        if (volume.secret) expect(volume.secret.secretName).toBe(TOKEN_SECRET);
      }
      const secretVolume = (pod.volumes ?? []).find((v) => v.secret?.secretName === TOKEN_SECRET);
      const secretMount = (container.volumeMounts ?? []).find((m) => m.name === secretVolume?.name);
      expect(secretMount?.readOnly).toBe(true);
      const args = statefulSet === coordinator.statefulSet ? coordinatorArgs : workerArgs;
      expect(flagValue(args, '--token-file')).toBe(`${secretMount?.mountPath}/${TOKEN_KEY}`);
      expect(args.some((a) => a === '--token' || a.startsWith('--token='))).toBe(false);
      for (const variable of container.env ?? []) {
        expect(variable.name, 'the token is read from the mounted file').not.toBe('OCCAM_TOKEN');
        if (variable.valueFrom?.secretKeyRef) expect(variable.valueFrom.secretKeyRef.name).toBe(TOKEN_SECRET);
      }
      // The kubelet can resolve every variable (ConfigMap keys exist, resources are set).
      expect(() => containerEnv(container, context('x-0'))).not.toThrow();
    }
    expect(README).toContain(`create secret generic ${TOKEN_SECRET} --from-literal=${TOKEN_KEY}=`);
  });

  it('probes hit the health endpoints on the port the process listens on, with no token', () => {
    const paths = { coordinator: ['/healthz', '/readyz', '/status.json'], worker: ['/healthz', '/readyz'] };
    // The endpoints exist in the code that serves them.
    for (const path of paths.coordinator) expect(readFileSync(join(ROOT, 'src/coordinator/coordinator.ts'), 'utf8')).toContain(`'${path}'`);
    for (const path of paths.worker) expect(readFileSync(join(ROOT, 'src/worker/ring-links.ts'), 'utf8')).toContain(`'${path}'`);
    const listens = { coordinator: Number(flagValue(coordinatorArgs, '--port')), worker: Number(flagValue(workerArgs, '--ring-port')) };
    for (const [role, { container }] of [
      ['coordinator', coordinator],
      ['worker', workers],
    ] as const) {
      const probes = [container.readinessProbe, container.livenessProbe, container.startupProbe].filter(
        (p): p is IProbe => p !== undefined,
      );
      expect(probes.length, `${role} has readiness and liveness probes`).toBeGreaterThanOrEqual(2);
      expect(container.readinessProbe && container.livenessProbe).toBeTruthy();
      for (const probe of probes) {
        expect(probe.httpGet, `${role} probes are HTTP`).toBeDefined();
        expect(paths[role]).toContain(probe.httpGet?.path);
        expect(containerPort([container], probe.httpGet?.port ?? -1)).toBe(listens[role]);
        expect(probe.httpGet?.httpHeaders ?? []).toEqual([]);
      }
    }
    expect(workers.container.readinessProbe?.httpGet?.path).toBe('/readyz');
  });

  it('workers dial the coordinator Service and advertise their own stable DNS name', () => {
    const url = new URL(flagValue(workerArgs, '--coordinator') ?? '');
    expect(url.protocol).toBe('ws:');
    const [serviceName, serviceNamespace, ...rest] = url.hostname.split('.');
    expect(rest).toEqual(['svc', 'cluster', 'local']);
    expect(serviceNamespace).toBe(namespace);
    const service = services.find((s) => s.metadata.name === serviceName);
    expect(service?.spec?.type ?? 'ClusterIP').toBe('ClusterIP');
    expect(selects(service?.spec?.selector, coordinator.statefulSet.spec?.template.metadata?.labels ?? {})).toBe(true);
    const port = service?.spec?.ports?.find((p) => p.port === Number(url.port));
    expect(port, 'the URL port is a port of the Service').toBeDefined();
    expect(containerPort(coordinator.pod.containers, port?.targetPort ?? -1)).toBe(Number(flagValue(coordinatorArgs, '--port')));
    // The pod's own name, under the headless Service that governs the worker StatefulSet.
    const podName = `${WORKERS}-1`;
    expect(flagValue(workerArgs, '--worker-id')).toBe(podName);
    expect(flagValue(workerArgs, '--ring-host')).toBe(`${podName}.${workers.statefulSet.spec?.serviceName}.${namespace}.svc.cluster.local`);
    expect(containerPort(workers.pod.containers, 'ring')).toBe(Number(flagValue(workerArgs, '--ring-port')));
    // Service links would put OCCAM_COORDINATOR_PORT=tcp://… beside the OCCAM_* settings.
    expect(coordinator.pod.enableServiceLinks).toBe(false);
    expect(workers.pod.enableServiceLinks).toBe(false);
  });

  it('args and OCCAM_* variables are ones the CLI reads, and the config they carry is valid', () => {
    const switches = allFlags();
    const configEnv = new Set(CONFIG_KEYS.map(envName));
    for (const [role, { container }, args] of [
      ['coordinator', coordinator, coordinatorArgs],
      ['worker', workers, workerArgs],
    ] as const) {
      expect(args[0]).toBe(role);
      for (let i = 1; i < args.length; i++) {
        const name = args[i].replace(/^--/, '').split('=')[0];
        expect(args[i].startsWith('--'), `${role}: argument ${args[i]} is a flag`).toBe(true);
        expect(commandFlags(role).has(name), `${role}: --${name} is a flag of occam ${role}`).toBe(true);
        if (!switches.get(name) && !args[i].includes('=')) i++;
      }
      const raw = container.args ?? [];
      for (const variable of container.env ?? []) {
        if (!variable.name.startsWith('OCCAM_')) continue;
        const read = configEnv.has(variable.name) || SOURCES.includes(`'${variable.name}'`) || SOURCES.includes(`env.${variable.name}`);
        const usedInArgs = raw.some((a) => a.includes(`$(${variable.name})`));
        expect(read || usedInArgs, `${role}: ${variable.name} is read by the code or used in args`).toBe(true);
      }
      // Every $(VAR) in args is defined, or the process would get the literal text.
      for (const arg of args) expect(arg, `${role}: unresolved reference`).not.toMatch(/\$\([A-Za-z_]/);
    }
    const configMap = configMaps.find((c) => c.metadata.name === coordinator.pod.volumes?.find((v) => v.configMap)?.configMap?.name);
    const data = configMap?.data as Record<string, string>;
    const mount = coordinator.container.volumeMounts?.find((m) => m.name === coordinator.pod.volumes?.find((v) => v.configMap)?.name);
    const configPath = flagValue(coordinatorArgs, '--config') ?? '';
    expect(configPath.startsWith(`${mount?.mountPath}/`)).toBe(true);
    const config = resolveConfig(JSON.parse(data[configPath.slice((mount?.mountPath ?? '').length + 1)]) as object);
    // The first ring forms once `workers` are ready: the StatefulSet must start at least that many.
    expect(config.workers).toBeLessThanOrEqual(workers.statefulSet.spec?.replicas ?? 0);
    // Commits inside rounds bound what SIGTERM has to finish, and what a lost worker costs.
    expect(config.checkpointEverySteps).toBeGreaterThan(0);
    // 0 defers to OCCAM_BLAS_THREADS, which the pod sets from its CPU limit.
    expect(config.blasThreads).toBe(0);
    expect(containerEnv(workers.container, context('w-0')).OCCAM_BLAS_THREADS).toBe(
      String(Math.ceil(quantity(workers.container.resources?.limits?.cpu ?? 0))),
    );
    expect(
      flagValue(coordinatorArgs, '--run-dir')?.startsWith(
        `${coordinator.container.volumeMounts?.find((m) => m.name === 'run')?.mountPath}/`,
      ),
    ).toBe(true);
    expect(coordinatorArgs).toContain('--linger');
  });

  it('SIGTERM: the coordinator pod is given time to commit the segment in flight, a worker pod to be released at it', () => {
    for (const [{ pod, container }, name] of [
      [coordinator, 'c-0'],
      [workers, 'w-0'],
    ] as const) {
      const graceMs = Number(containerEnv(container, context(name)).OCCAM_STOP_GRACE_MS);
      expect(graceMs).toBeGreaterThan(0);
      // The process's own deadline comes first, with room left for the checkpoint write and the exit.
      expect(pod.terminationGracePeriodSeconds ?? 30).toBeGreaterThanOrEqual(graceMs / 1000 + 10);
    }
  });

  it('every container has requests and limits, runs as non-root, and only gpu workers ask for GPUs', () => {
    for (const { pod, container } of [coordinator, workers]) {
      for (const resource of ['cpu', 'memory']) {
        const request = container.resources?.requests?.[resource];
        const limit = container.resources?.limits?.[resource];
        expect(request !== undefined && limit !== undefined, `${container.name} ${resource}`).toBe(true);
        expect(quantity(request ?? 0)).toBeLessThanOrEqual(quantity(limit ?? 0));
      }
      expect(pod.securityContext?.runAsNonRoot).toBe(true);
      expect(container.securityContext?.allowPrivilegeEscalation).toBe(false);
      expect(container.image).toBe(`occam:${overlay === 'gpu' ? 'gpu' : 'cpu'}`);
    }
    expect(coordinator.container.resources?.limits?.['nvidia.com/gpu']).toBeUndefined();
    const gpus = workers.container.resources;
    if (overlay === 'gpu') {
      expect(gpus?.requests?.['nvidia.com/gpu']).toBe(1);
      expect(gpus?.limits?.['nvidia.com/gpu']).toBe(1);
    } else {
      expect(gpus?.limits?.['nvidia.com/gpu']).toBeUndefined();
    }
  });

  it('deploy/README.md tells how to apply it', () => {
    expect(README).toContain(`kubectl apply -k deploy/k8s/overlays/${overlay}`);
  });
});

describe('deploy/Dockerfile', () => {
  const text = readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
  for (const variant of ['gpu', 'cpu']) {
    it(`${variant}: runs the CLI as a non-root user, with a health check, and bakes in no secret`, () => {
      const image = imageConfig(text, { VARIANT: variant });
      expect(image.user).not.toMatch(/^(root|0)(:|$)/);
      expect(image.healthcheck).not.toBeNull();
      // The entrypoint's script and the health check ship in the image, from this repository.
      const scripts = [...image.entrypoint, ...(image.healthcheck ?? [])].filter((a) => a.startsWith(`${image.workdir}/`));
      expect(scripts).toEqual([`${image.workdir}/bin/occam.mjs`, `${image.workdir}/deploy/healthcheck.mjs`]);
      for (const script of scripts) {
        const relative = script.slice(image.workdir.length + 1);
        expect(
          image.copies.some((c) => c.stage === null && (relative === c.from || relative.startsWith(`${c.from}/`))),
          `${relative} is copied in`,
        ).toBe(true);
        expect(existsSync(join(ROOT, relative))).toBe(true);
      }
      expect(image.declaredNames.filter((n) => /TOKEN|SECRET|PASSWORD|KEY/i.test(n))).toEqual([]);
      expect(image.exposed.sort()).toEqual([7070, 7071]);
      expect(image.env.OCCAM_TOKEN).toBeUndefined();
    });
  }

  it('builds on CUDA 11.x with cuDNN 8, which libtensorflow 2.9 (tfjs-node-gpu 4.x) is built for', () => {
    expect(text).toMatch(/FROM nvidia\/cuda:11\.\d+\.\d+-cudnn8-runtime-ubuntu22\.04 AS os-gpu/);
    const ignore = readFileSync(join(ROOT, 'deploy', 'Dockerfile.dockerignore'), 'utf8');
    expect(ignore.split('\n')[0].startsWith('#') && ignore.includes('\n*\n')).toBe(true);
  });
});

// ─── helpers ────────────────────────────────────────────────────────────────────────────────────

function podOf(statefulSets: IStatefulSet[], name: string): { statefulSet: IStatefulSet; pod: IPodSpec; container: IContainer } {
  const statefulSet = statefulSets.find((s) => s.metadata?.name === name);
  const pod = statefulSet?.spec?.template.spec;
  if (!statefulSet || !pod) throw new Error(`no StatefulSet ${name}`);
  return { statefulSet, pod, container: pod.containers[0] };
}

function expandedArgs(container: IContainer, context: Parameters<typeof containerEnv>[1]): string[] {
  const env = containerEnv(container, context);
  return (container.args ?? []).map((a) => expandReferences(a, env));
}

function flagValue(args: string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at >= 0 ? args[at + 1] : args.find((a) => a.startsWith(`${flag}=`))?.slice(flag.length + 1);
}

/** A selector matches labels when every pair it names is among them. */
function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  return selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** The containerPort a Service or probe port (name or number) refers to, or undefined. */
function containerPort(containers: IContainer[], port: string | number): number | undefined {
  const ports = containers.flatMap((c) => c.ports ?? []);
  return typeof port === 'number'
    ? ports.find((p) => p.containerPort === port)?.containerPort
    : ports.find((p) => p.name === port)?.containerPort;
}

function sourceText(dir: string): string {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('\n');
}

function findKustomize(): string[] | null {
  for (const candidate of [
    ['kustomize', 'build'],
    ['kubectl', 'kustomize'],
  ]) {
    try {
      execFileSync(candidate[0], [...candidate.slice(1), join(K8S, 'base')], { stdio: 'ignore', timeout: 20000 });
      return candidate;
    } catch {
      // not installed, or too old for these files
    }
  }
  return null;
}
