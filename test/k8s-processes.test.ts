// The cpu-small overlay's pods, started as a node would start them but on loopback: command from
// the image's ENTRYPOINT (deploy/Dockerfile) and the container args, environment from the pod
// spec (downward API, ConfigMap keys, resource fields), volumes as temporary folders (the token
// Secret as a file), cluster DNS names as 127.0.0.1. Only the training config is shrunk. Then a
// run completes with every probe answering; and SIGTERM to the coordinator mid-round leaves a
// valid checkpoint of the round so far, from which a restarted coordinator on the same volume
// resumes and finishes.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IContainer, IPodSpec, IService } from 'kubernetes-models/v1';
import { afterEach, describe, expect, it } from 'vitest';
import { containerEnv, expandReferences, imageConfig, workload, type ImageConfig } from '../deploy/kubelet.ts';
import { renderKustomization, type K8sObject } from '../deploy/render.ts';
import { checkpointNames, readCheckpoint } from '../src/storage/checkpoint.ts';
import type { OccamConfig } from '../src/config.ts';
import type { RunState } from '../src/coordinator/run-state.ts';
import { readMetrics, type RunSummary } from '../src/storage/run-dir.ts';
import { exitOf, freePort, waitFor } from './helpers/processes.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OVERLAY = join(ROOT, 'deploy', 'k8s', 'overlays', 'cpu-small');
const COORDINATOR = 'occam-coordinator';
const WORKERS = 'occam-worker';

/** Small enough for a 2-core machine; everything else is the overlay's own config. */
const TINY: Partial<OccamConfig> = { units: 32, trainLimit: 900, evalLimit: 300, batchSize: 60, checkpointEverySteps: 3 };

/** One running "pod": its process and where its log goes. */
interface Pod {
  name: string;
  child: ChildProcess;
  log: string;
}

/** The pods of one rendered overlay on this machine, with their volumes under one temp folder. */
class LoopbackCluster {
  readonly objects: K8sObject[];
  readonly namespace: string;
  private readonly image: ImageConfig;
  private readonly root = mkdtempSync(join(tmpdir(), 'occam-k8s-'));
  private readonly token = randomBytes(24).toString('hex');
  /** containerPort → loopback port, per pod; kept across restarts, as a Service address is. */
  private readonly ports = new Map<string, Map<number, number>>();
  readonly pods: Pod[] = [];
  /** `kubectl scale`: replica counts that differ from the rendered ones. */
  private readonly scaled = new Map<string, number>();

  constructor(private readonly configOverrides: Partial<OccamConfig>) {
    this.objects = renderKustomization(OVERLAY);
    this.namespace = this.objects.find((o) => o.kind === 'Namespace')?.metadata.name ?? 'default';
    this.image = imageConfig(readFileSync(join(ROOT, 'deploy', 'Dockerfile'), 'utf8'), { VARIANT: 'cpu' });
  }

  replicas(statefulSet: string): number {
    return this.scaled.get(statefulSet) ?? workload(this.objects, statefulSet).statefulSet.spec?.replicas ?? 1;
  }

  scale(statefulSet: string, replicas: number): void {
    this.scaled.set(statefulSet, replicas);
  }

  /** The coordinator's run directory on its volume (args and env resolved as in the pod). */
  runDir(): string {
    const { argv } = this.launch(COORDINATOR, 0);
    return argv[argv.indexOf('--run-dir') + 1];
  }

  /** The loopback URL of a pod's probe (readiness or liveness). */
  probeUrl(statefulSet: string, ordinal: number, probe: 'readinessProbe' | 'livenessProbe'): string {
    const { container } = workload(this.objects, statefulSet);
    const get = container[probe]?.httpGet;
    if (!get) throw new Error(`${statefulSet} has no ${probe}`);
    const containerPort = typeof get.port === 'number' ? get.port : container.ports?.find((p) => p.name === get.port)?.containerPort;
    return `http://127.0.0.1:${this.portOf(`${statefulSet}-${ordinal}`, containerPort ?? -1)}${get.path}`;
  }

  async start(statefulSet: string, ordinal: number): Promise<Pod> {
    await this.allocatePorts();
    const { argv, env } = this.launch(statefulSet, ordinal);
    const name = `${statefulSet}-${ordinal}`;
    const log = join(this.root, `${name}.log`);
    const fd = openSync(log, 'a');
    const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const pod = { name, child, log };
    this.pods.push(pod);
    return pod;
  }

  /** Kills what still runs (after a failure) and removes the volumes; failures carry the logs' tails. */
  async dispose(): Promise<void> {
    for (const { child } of this.pods) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all(this.pods.map((pod) => exitOf(pod.child)));
    rmSync(this.root, { recursive: true, force: true });
  }

  /** Every pod of the overlay gets a loopback port for each port its container opens. */
  private async allocatePorts(): Promise<void> {
    for (const statefulSet of [COORDINATOR, WORKERS]) {
      const { container } = workload(this.objects, statefulSet);
      for (let ordinal = 0; ordinal < this.replicas(statefulSet); ordinal++) {
        const pod = `${statefulSet}-${ordinal}`;
        if (this.ports.has(pod)) continue;
        const ports = new Map<number, number>();
        for (const port of container.ports ?? []) ports.set(port.containerPort, await freePort());
        this.ports.set(pod, ports);
      }
    }
  }

  private portOf(pod: string, containerPort: number): number {
    const port = this.ports.get(pod)?.get(containerPort);
    if (port === undefined) throw new Error(`pod ${pod} opens no port ${containerPort}`);
    return port;
  }

  /** The command line and environment of a pod's container, translated to this machine. */
  private launch(statefulSet: string, ordinal: number): { argv: string[]; env: Record<string, string> } {
    const { pod, container } = workload(this.objects, statefulSet);
    const podName = `${statefulSet}-${ordinal}`;
    const configMaps = this.objects.filter((o) => o.kind === 'ConfigMap');
    const env = containerEnv(container, { podName, namespace: this.namespace, configMaps, secrets: this.secrets() });
    const mounts = this.mounts(pod, container, podName);
    const ownPorts = new Set((container.ports ?? []).map((p) => String(p.containerPort)));
    // What the pod runs: the image's ENTRYPOINT (tini execs the rest) followed by the container's args.
    const entrypoint = container.command ?? this.image.entrypoint;
    const raw = [...entrypoint, ...(container.args ?? [])].map((a) => expandReferences(a, env));
    const program = raw[0] === '/usr/bin/tini' ? raw.slice(raw.indexOf('--') + 1) : raw;
    const argv = program.map((arg, i) => {
      if (i === 0 && arg === 'node') return process.execPath;
      if (ownPorts.has(arg)) return String(this.portOf(podName, Number(arg)));
      return this.translate(arg, mounts);
    });
    const tmp = mounts.find(([path]) => path === '/tmp')?.[1] ?? tmpdir();
    const translatedEnv = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, this.translate(v, mounts)]));
    // Nothing of this test process's environment leaks in: only the image's and the pod's.
    return { argv, env: { PATH: process.env.PATH ?? '', TMPDIR: tmp, ...this.image.env, ...translatedEnv } };
  }

  /** Image paths → this repository, mount paths → their folders, cluster DNS → loopback. */
  private translate(value: string, mounts: [string, string][]): string {
    const mount = mounts.find(([path]) => value === path || value.startsWith(`${path}/`));
    if (mount) return mount[1] + value.slice(mount[0].length);
    if (value.startsWith(`${this.image.workdir}/`)) return join(ROOT, value.slice(this.image.workdir.length + 1));
    if (value === '0.0.0.0') return '127.0.0.1';
    return value.replace(/([a-z0-9.-]+)\.svc\.cluster\.local(?::(\d+))?/g, (_, name: string, port: string | undefined) => {
      const labels = name.split('.');
      if (labels[labels.length - 1] !== this.namespace) throw new Error(`${name}: not in namespace ${this.namespace}`);
      if (port === undefined) return '127.0.0.1';
      if (labels.length === 3) return `127.0.0.1:${this.portOf(labels[0], Number(port))}`; // pod.service.ns
      // service.ns: the Service's port → its targetPort → the selected pod's container port.
      const service = this.objects.find((o) => o.kind === 'Service' && o.metadata.name === labels[0]) as unknown as IService | undefined;
      const servicePort = service?.spec?.ports?.find((p) => p.port === Number(port));
      if (!servicePort) throw new Error(`Service ${labels[0]} has no port ${port}`);
      const target = [COORDINATOR, WORKERS].find((s) =>
        Object.entries(service?.spec?.selector ?? {}).every(
          ([k, v]) => workload(this.objects, s).statefulSet.spec?.template.metadata?.labels?.[k] === v,
        ),
      );
      if (!target) throw new Error(`Service ${labels[0]} selects no workload`);
      const { container } = workload(this.objects, target);
      const targetPort = servicePort.targetPort ?? servicePort.port;
      const containerPort =
        typeof targetPort === 'number' ? targetPort : container.ports?.find((p) => p.name === targetPort)?.containerPort;
      return `127.0.0.1:${this.portOf(`${target}-0`, containerPort ?? -1)}`;
    });
  }

  /** Each volumeMount as [mountPath, folder], longest path first. */
  private mounts(pod: IPodSpec, container: IContainer, podName: string): [string, string][] {
    const claims = new Set(
      (workload(this.objects, podName.replace(/-\d+$/, '')).statefulSet.spec?.volumeClaimTemplates ?? []).map((c) => c.metadata?.name),
    );
    const out: [string, string][] = [];
    for (const mount of container.volumeMounts ?? []) {
      const volume = pod.volumes?.find((v) => v.name === mount.name);
      let dir: string;
      if (claims.has(mount.name)) {
        dir = join(this.root, 'volumes', `${mount.name}-${podName}`); // a claim outlives the pod
      } else if (volume?.configMap) {
        dir = join(this.root, 'pods', podName, mount.name);
        const data = this.objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume.configMap?.name)?.data as Record<
          string,
          string
        >;
        mkdirSync(dir, { recursive: true });
        for (const [key, value] of Object.entries(data)) writeFileSync(join(dir, key), key === 'config.json' ? this.shrink(value) : value);
      } else if (volume?.secret) {
        dir = join(this.root, 'pods', podName, mount.name);
        mkdirSync(dir, { recursive: true });
        for (const [key, value] of Object.entries(this.secrets()[volume.secret.secretName ?? ''] ?? {}))
          writeFileSync(join(dir, key), value, { mode: 0o440 });
      } else if (volume?.emptyDir) {
        dir = join(this.root, 'pods', podName, mount.name);
      } else {
        throw new Error(`${podName}: volume ${mount.name} is of a kind this test cannot provide`);
      }
      mkdirSync(dir, { recursive: true });
      out.push([mount.mountPath, dir]);
    }
    return out.sort((a, b) => b[0].length - a[0].length);
  }

  /** The Secret the operator creates (deploy/README.md). */
  private secrets(): Record<string, Record<string, string>> {
    return { 'occam-token': { token: this.token } };
  }

  private shrink(configJson: string): string {
    return JSON.stringify({ ...(JSON.parse(configJson) as object), ...this.configOverrides }, null, 2);
  }
}

let cluster: LoopbackCluster | null = null;

afterEach(async () => {
  await cluster?.dispose();
  cluster = null;
});

describe('the cpu-small pods, started as the manifests start them', () => {
  it('train a run to the end; probes answer on the ports the manifests name', async () => {
    cluster = new LoopbackCluster({ ...TINY, rounds: 2 });
    const k8s = cluster;
    const workerCount = k8s.replicas(WORKERS);
    // Parallel pod management: the workers may well start before the coordinator.
    const workers = await Promise.all(Array.from({ length: workerCount }, (_, i) => k8s.start(WORKERS, i)));
    for (let i = 0; i < workerCount; i++) {
      await waitForStatus(k8s.probeUrl(WORKERS, i, 'livenessProbe'), 200, 30000, workers[i]);
      expect(await status(k8s.probeUrl(WORKERS, i, 'readinessProbe')), 'not ready before it has joined').toBe(503);
    }
    const readySeen = workers.map(() => false);
    const watch = setInterval(() => {
      workers.forEach((_, i) => void status(k8s.probeUrl(WORKERS, i, 'readinessProbe')).then((s) => (readySeen[i] ||= s === 200)));
    }, 50);
    try {
      const coordinator = await k8s.start(COORDINATOR, 0);
      await waitForStatus(k8s.probeUrl(COORDINATOR, 0, 'readinessProbe'), 200, 30000, coordinator);
      const runDir = k8s.runDir();
      await waitFor(() => existsSync(join(runDir, 'summary.json')) || coordinator.child.exitCode !== null, 120000, 'the run to finish');
      expect(existsSync(join(runDir, 'summary.json')), tail(coordinator)).toBe(true);
      expect(readySeen, 'every worker was Ready while it trained').toEqual(workers.map(() => true));
      // --linger: the finished coordinator stays up for the probes and the operator; workers are told to stop.
      await waitForStatus(k8s.probeUrl(COORDINATOR, 0, 'livenessProbe'), 200, 10000, coordinator);
      const page = (await fetchJson(k8s.probeUrl(COORDINATOR, 0, 'livenessProbe').replace(/\/[^/]*$/, '/status.json'))) as {
        phase: string;
        summary: RunSummary;
      };
      expect(page.phase).toBe('done');
      expect(page.summary.rounds).toBe(2);
      for (const worker of workers) expect(await exitOf(worker.child), tail(worker)).toBe(0);
      coordinator.child.kill('SIGTERM');
      expect(await exitOf(coordinator.child), tail(coordinator)).toBe(0);

      expect(readMetrics(runDir)).toHaveLength(2);
      expect(existsSync(join(runDir, 'model'))).toBe(true);
      const names = checkpointNames(join(runDir, 'checkpoints'));
      const { manifest } = readCheckpoint<RunState>(join(runDir, 'checkpoints', names[names.length - 1]));
      expect(manifest.round).toBe(2);
      expect(manifest.config.units).toBe(TINY.units);
    } finally {
      clearInterval(watch);
    }
  });

  it('SIGTERM mid-round commits the round so far; the restarted coordinator resumes from it and finishes', async () => {
    // One segment per round (no commit inside it): only the SIGTERM path can leave a mid-round checkpoint.
    cluster = new LoopbackCluster({ ...TINY, rounds: 2, trainLimit: 3000, checkpointEverySteps: 1000 });
    const k8s = cluster;
    const workers = await Promise.all(Array.from({ length: k8s.replicas(WORKERS) }, (_, i) => k8s.start(WORKERS, i)));
    const first = await k8s.start(COORDINATOR, 0);
    const runDir = k8s.runDir();
    const statusUrl = k8s.probeUrl(COORDINATOR, 0, 'livenessProbe').replace(/\/[^/]*$/, '/status.json');
    await waitForAsync(
      async () => ((await fetchJson(statusUrl).catch(() => null)) as { phase?: string } | null)?.phase === 'training',
      90000,
      'training',
      first,
    );
    first.child.kill('SIGTERM'); // what the kubelet sends when the pod is deleted, evicted or drained
    expect(await exitOf(first.child), tail(first)).toBe(0);
    const stopped = /"step":(\d+)[^\n]*stopped after a commit/.exec(readFileSync(first.log, 'utf8'));
    expect(stopped, tail(first)).not.toBeNull();

    const names = checkpointNames(join(runDir, 'checkpoints'));
    const { manifest } = readCheckpoint<RunState>(join(runDir, 'checkpoints', names[names.length - 1]));
    expect(manifest.step).toBe(Number(stopped?.[1]));
    expect(manifest.round, 'the round was still going: its training is in the checkpoint, its evaluation is not').toBe(0);
    expect(manifest.step).toBeGreaterThan(0);
    expect(manifest.progress.roundSamples).toBeGreaterThan(0);
    expect(existsSync(join(runDir, 'summary.json'))).toBe(false);
    // The workers were not told to stop: they wait for the coordinator's next incarnation.
    for (const worker of workers) expect(worker.child.exitCode, tail(worker)).toBeNull();

    const second = await k8s.start(COORDINATOR, 0); // the StatefulSet's replacement pod, same volume
    await waitFor(() => existsSync(join(runDir, 'summary.json')) || second.child.exitCode !== null, 120000, 'the resumed run to finish');
    expect(readFileSync(second.log, 'utf8')).toMatch(new RegExp(`"step":${manifest.step}[^\\n]*resuming from checkpoint`));
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8')) as RunSummary;
    expect(summary.rounds).toBe(2);
    expect(readMetrics(runDir).map((m) => m.round)).toEqual([1, 2]);
    second.child.kill('SIGTERM');
    expect(await exitOf(second.child), tail(second)).toBe(0);
    for (const worker of workers) expect(await exitOf(worker.child), tail(worker)).toBe(0);
  });

  it('scaling the worker StatefulSet up and down re-forms the ring: elastic membership', async () => {
    cluster = new LoopbackCluster({ ...TINY, rounds: 1000 });
    const k8s = cluster; // outlasts the test: it stops it
    const initial = k8s.replicas(WORKERS);
    const workers = await Promise.all(Array.from({ length: initial }, (_, i) => k8s.start(WORKERS, i)));
    const coordinator = await k8s.start(COORDINATOR, 0);
    const statusUrl = k8s.probeUrl(COORDINATOR, 0, 'livenessProbe').replace(/\/[^/]*$/, '/status.json');
    const page = async () =>
      ((await fetchJson(statusUrl).catch(() => null)) ?? { phase: '', generation: 0, committedStep: null, workers: [] }) as StatusPage;
    const ring = (p: StatusPage) =>
      p.workers
        .filter((w) => w.inRing)
        .map((w) => w.id)
        .sort();
    await waitForAsync(async () => (await page()).phase === 'training', 90000, 'training', coordinator);

    k8s.scale(WORKERS, initial + 1); // kubectl scale statefulset occam-worker --replicas=3
    const added = await k8s.start(WORKERS, initial);
    await waitForAsync(async () => ring(await page()).length === initial + 1, 90000, 'the new pod in the ring', coordinator);
    expect(ring(await page())).toContain(added.name);
    const joined = await page();
    // Training with it: a commit after the ring formed.
    await waitForAsync(
      async () => ((await page()).committedStep ?? 0) > (joined.committedStep ?? 0),
      90000,
      'a commit with the new pod',
      coordinator,
    );
    const grown = await page();

    k8s.scale(WORKERS, initial); // back down: the StatefulSet stops the highest ordinal
    added.child.kill('SIGTERM');
    expect(await exitOf(added.child), tail(added)).toBe(0);
    // It asked to leave and was released at a commit, so the ring re-formed without redoing a step.
    expect(readFileSync(added.log, 'utf8')).toMatch(
      /coordinator says shutdown[^\n]*leave granted|leave granted[^\n]*coordinator says shutdown/,
    );
    await waitForAsync(
      async () => new RegExp(`worker\\(s\\) ${added.name} left at step \\d+, a commit`).test(readFileSync(coordinator.log, 'utf8')),
      30000,
      'the release in the coordinator log',
      coordinator,
    );
    await waitForAsync(
      async () => {
        const p = await page();
        return p.generation > grown.generation && p.phase === 'training' && ring(p).length === initial;
      },
      90000,
      'the ring without it',
      coordinator,
    );
    const shrunk = await page();
    expect(ring(shrunk)).toEqual(workers.map((w) => w.name).sort());
    await waitForAsync(
      async () => ((await page()).committedStep ?? 0) > (shrunk.committedStep ?? 0),
      90000,
      'training to go on',
      coordinator,
    );

    coordinator.child.kill('SIGTERM');
    expect(await exitOf(coordinator.child), tail(coordinator)).toBe(0);
    for (const worker of workers) expect(worker.child.exitCode, tail(worker)).toBeNull();
  });
});

/** What the tests read of the coordinator's /status.json. */
interface StatusPage {
  phase: string;
  generation: number;
  committedStep: number | null;
  workers: { id: string; inRing: boolean }[];
}

// ─── helpers ────────────────────────────────────────────────────────────────────────────────────

async function status(url: string): Promise<number> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.status;
  } catch {
    return 0;
  }
}

async function fetchJson(url: string): Promise<unknown> {
  const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
  return response.json();
}

async function waitForStatus(url: string, expected: number, timeoutMs: number, pod: Pod): Promise<void> {
  await waitForAsync(async () => (await status(url)) === expected, timeoutMs, `${url} to answer ${expected}`, pod);
}

async function waitForAsync(condition: () => Promise<boolean>, timeoutMs: number, what: string, pod: Pod): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (pod.child.exitCode !== null) throw new Error(`${pod.name} exited (${pod.child.exitCode}) while waiting for ${what}:\n${tail(pod)}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${tail(pod)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function tail(pod: Pod, lines = 20): string {
  try {
    return `${pod.name}:\n${readFileSync(pod.log, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')}`;
  } catch {
    return `${pod.name}: (no log)`;
  }
}
