// A worker process: joins the coordinator, loads its data and model, joins the ring, and then
// does what the coordinator asks — train global steps (all-reducing the compacted gradient with
// its ring neighbours each step), evaluate, compute and apply pruning thresholds, and load or
// upload state. It reconnects with backoff when the coordinator goes away (each connection:
// control-connection.ts).
import { configHash, DEFAULT_CONFIG, validateConfig, type OccamConfig } from '../config.ts';
import { loadDataSource } from '../training/data/load.ts';
import { selectBackend, type BackendRequest } from '../training/engine.ts';
import { measureMatmulFlops } from '../training/flops.ts';
import { describeAdapter } from '../training/webgpu.ts';
import { setLogContext, type Logger } from '../common/log.ts';
import { createModel } from '../training/models/create.ts';
import { ProtocolError, type Envelope, type Messages, type MessageKind } from '../wire/protocol.ts';
import { Member, type MemberHooks } from '../training/member.ts';
import { Replica } from '../training/replica.ts';
import type { Collective } from '../common/collective.ts';
import { DEFAULT_CHUNK_FLOATS, RingError } from '../wire/ring.ts';
import type { TlsOptions } from '../wire/tls.ts';
import { closeReason, commandProblem } from '../wire/validate.ts';
import { ControlConnection, WorkerRefused } from './control-connection.ts';
import { RingLinkError } from './ring-links.ts';
import { ThreadedRingLinks } from './threaded-ring.ts';

export { WorkerRefused };

export interface WorkerOptions {
  coordinatorUrl: string;
  token: string;
  workerId: string;
  /** Address the ring server binds, and the one peers are told to connect to. */
  ringBindHost: string;
  ringAdvertiseHost: string;
  /** 0 picks a free port. */
  ringPort: number;
  /** Overrides the config's backend for this worker. */
  backend?: BackendRequest;
  /** webgpu: the GPU to use (--gpu); without, `localRank` picks one. */
  gpu?: number;
  /** This worker's index among the workers on its machine (`occam train` sets it). */
  localRank?: number;
  log: Logger;
  tls?: TlsOptions;
  /** Give up when the coordinator has been unreachable this long (0 = never). */
  reconnectGiveUpMs: number;
  /** Actions at named points of the replica's work (fault injection: faults.ts). */
  hooks?: MemberHooks;
  /** Largest control message accepted (state uploads are the big ones). */
  maxMessageBytes: number;
  /** Fault injection: a ring link that goes black (OCCAM_CUT_LINK). */
  cutLink?: { workerId: string; afterBytes: number };
  /** Fault injection: the control connection's uplink at this rate (OCCAM_PACE_KBPS). */
  paceBytesPerSecond?: number;
}

const PROGRESS_EVERY_MS = 1000;

class Aborted extends Error {}

export class Worker {
  private readonly links: ThreadedRingLinks;
  private connection: ControlConnection | null = null;
  private stopped = false;
  private config: OccamConfig | null = null;
  private configHash = '';
  private backend = '';
  /** The backend's measured matrix-product rate (FLOP/s), reported in ready for MFU. */
  private matmulFlops = 0;
  private member: Member | null = null;
  private ring: Collective | null = null;
  private generation = -1;
  /** Joined the coordinator and loaded the data in this connection: the /readyz probe's answer. */
  private ready = false;
  /** Asked the coordinator to be released (leave()); it does not rejoin. */
  private leaving = false;
  /** Why the last connection attempt failed, for the give-up message. */
  private lastProblem: string | null = null;

  constructor(private readonly options: WorkerOptions) {
    this.links = new ThreadedRingLinks({
      bindHost: options.ringBindHost,
      port: options.ringPort,
      token: options.token,
      log: options.log,
      chunkFloats: DEFAULT_CHUNK_FLOATS,
      timeoutMs: DEFAULT_CONFIG.peerTimeoutMs,
      tls: options.tls,
      onStall: (stall) => this.send('ringStall', stall),
      cut: options.cutLink,
    });
  }

  /** Runs until the coordinator says shutdown, or it stays unreachable past the give-up time. */
  async run(): Promise<void> {
    const ringPort = await this.links.listen();
    const log = this.options.log;
    log.info({ ringPort, coordinator: this.options.coordinatorUrl }, 'worker started');
    let backoffMs = 200;
    let unreachableSince = Date.now();
    try {
      while (!this.stopped) {
        const reached = await this.session(ringPort).catch((error: Error) => {
          if (error instanceof WorkerRefused) throw error;
          log.warn({ err: error.message }, 'connection to the coordinator failed');
          this.lastProblem = error.message;
          return false;
        });
        if (this.stopped || this.leaving) break;
        if (reached) {
          backoffMs = 200;
          unreachableSince = Date.now();
        }
        const giveUp = this.options.reconnectGiveUpMs;
        if (giveUp > 0 && Date.now() - unreachableSince > giveUp) {
          const why = this.lastProblem ? ` (last: ${this.lastProblem})` : '';
          throw new Error(`coordinator ${this.options.coordinatorUrl} unreachable for ${giveUp} ms${why}; giving up`);
        }
        log.info({ retryInMs: backoffMs }, 'reconnecting to the coordinator');
        await sleep(backoffMs);
        backoffMs = Math.min(5000, backoffMs * 2);
      }
    } finally {
      await this.links.close();
    }
  }

  /**
   * Leaves the run without costing it steps (SIGTERM): asks the coordinator to release this worker
   * at its next commit and stops then, or after `graceMs`, whichever comes first. A worker in no
   * ring, or asked twice, stops at once.
   */
  leave(graceMs: number): void {
    if (this.leaving || !this.ready) return this.stop();
    this.leaving = true;
    this.options.log.info({ graceMs }, 'leaving: the coordinator releases this worker at its next commit');
    this.send('leave', { reason: 'worker stopping' });
    setTimeout(() => {
      if (this.stopped) return;
      this.options.log.warn({ graceMs }, 'not released within the grace time; leaving now');
      this.stop();
    }, graceMs).unref();
  }

  /** Stops the worker: closes the control connection and the ring. */
  stop(): void {
    this.stopped = true;
    this.connection?.close(1000, 'worker stopping');
  }

  /** One connection to the coordinator. Resolves when it closes: true when it got as far as a welcome. */
  private async session(ringPort: number): Promise<boolean> {
    const { coordinatorUrl: url, token, tls, maxMessageBytes, log, workerId, ringAdvertiseHost: ringHost } = this.options;
    const connection = new ControlConnection({
      url,
      token,
      tls,
      maxMessageBytes,
      log,
      join: { workerId, ringHost, ringPort },
      timing: () => this.config,
      ringCounters: () => this.links.counters(),
      onEnvelope: (envelope) => void this.handle(envelope),
      stopping: () => this.stopped,
      paceBytesPerSecond: this.options.paceBytesPerSecond,
    });
    this.connection = connection;
    try {
      const end = await connection.ended;
      if (end.welcomed) this.lastProblem = null;
      else if (end.problem) this.lastProblem = end.problem;
      return end.welcomed;
    } finally {
      this.connection = null;
      this.setReady(false);
      this.links.closeLinks(new RingError('lost the coordinator'));
      this.ring = null;
      this.generation = -1;
    }
  }

  /**
   * Dispatches one coordinator message; every failure becomes an error reply, never a crash. An
   * invalid command (wire/validate.ts) closes the connection before anything changes.
   */
  private async handle(envelope: Envelope): Promise<void> {
    const reply = <K extends MessageKind>(kind: K, message: Messages[K]) => this.send(kind, message, envelope.requestId);
    const problem = commandProblem(envelope, {
      workerId: this.options.workerId,
      generation: this.generation,
      step: this.member?.step ?? 0,
      prunableLayers: this.member?.replica.prunableLayers.length ?? null,
    });
    if (problem) {
      this.options.log.error({ command: envelope.kind, problem }, 'invalid command from the coordinator; closing the connection');
      this.connection?.close(1008, closeReason(problem));
      return;
    }
    try {
      switch (envelope.kind) {
        case 'welcome': {
          const ready = await this.prepare(envelope.message as Messages['welcome']);
          this.setReady(this.connection?.isOpen ?? false);
          return reply('ready', ready);
        }
        case 'formRing':
          await this.formRing(envelope.message as Messages['formRing']);
          return reply('ack', {});
        case 'loadState': {
          const { step, initialize, state } = envelope.message as Messages['loadState'];
          return reply('stateReport', await this.requireMember().load(step, initialize ? null : state));
        }
        case 'runSteps':
          return reply('stepsDone', await this.runSteps(envelope.message as Messages['runSteps']));
        case 'evaluate': {
          const result = await this.requireMember().evaluate();
          this.currentRing((envelope.message as Messages['evaluate']).generation);
          return reply('evalResult', result);
        }
        case 'computeThresholds': {
          const { p, layers } = envelope.message as Messages['computeThresholds'];
          return reply('thresholds', await this.requireMember().thresholds(p, layers));
        }
        case 'prune':
          return reply('stateReport', await this.requireMember().prune((envelope.message as Messages['prune']).thresholds));
        case 'uploadState':
          this.currentRing((envelope.message as Messages['uploadState']).generation);
          return reply('stateUpload', await this.requireMember().upload());
        case 'shutdown':
          this.options.log.info({ reason: (envelope.message as Messages['shutdown']).reason }, 'coordinator says shutdown');
          return this.stop();
        case 'heartbeat':
          return;
        case 'error':
          this.options.log.error(envelope.message, 'coordinator reported an error');
          return;
        default:
          throw new ProtocolError('unexpected', `unexpected message '${envelope.kind}' from the coordinator`);
      }
    } catch (error) {
      const aborted = error instanceof Aborted || error instanceof RingError;
      const message = (error as Error).message;
      // A neighbour this rank could not link with: the code names the side, so the coordinator can name the pair.
      const code = error instanceof RingLinkError ? `ring-${error.side}` : aborted ? 'aborted' : 'failed';
      this.options.log[aborted ? 'warn' : 'error'](
        { command: envelope.kind, err: message },
        aborted ? 'command abandoned' : 'command failed',
      );
      reply('error', { code, message });
    }
  }

  /** Loads the data and builds the model for the run's config (kept across reconnects). */
  private async prepare(welcome: Messages['welcome']): Promise<Messages['ready']> {
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(welcome.configJson) as Record<string, unknown>;
    } catch {
      throw new Error('the coordinator sent a config that is not JSON');
    }
    const config = validateConfig(raw);
    if (configHash(config) !== welcome.configHash) throw new Error('the config the coordinator sent does not match its hash');
    setLogContext(this.options.log, { runId: welcome.runId });
    // Loading the data and building the model may block this thread for long: heartbeats move off it first.
    this.connection?.startLiveness(welcome.livenessKey, config.heartbeatMs);
    if (this.configHash !== welcome.configHash || !this.member) {
      const data = loadDataSource(config);
      const model = createModel(config, data);
      if (!this.backend) {
        const { gpu, localRank } = this.options;
        const options = { blasThreads: config.blasThreads, requiredKernels: model.requiredKernels, gpu, localRank };
        const choice = await selectBackend(this.options.backend ?? config.backend, this.options.log, options);
        // What the coordinator compares when replicas disagree: the backend and, on a GPU, which one.
        this.backend = choice.adapter ? `${choice.backend} on ${describeAdapter(choice.adapter)}` : choice.backend;
        this.matmulFlops = await measureMatmulFlops();
      }
      this.member = new Member(new Replica(model, data, config), config, this.options.hooks);
      this.config = config;
      this.configHash = welcome.configHash;
      this.options.log.info({ runId: welcome.runId, data: data.description, params: model.params.length }, 'data loaded and model built');
    }
    // A step that blocks this thread before the liveness thread is connected would read as silence.
    if (this.connection && !(await this.connection.livenessUp(config.peerTimeoutMs)))
      this.options.log.warn({ waitedMs: config.peerTimeoutMs }, 'liveness connection not up yet; a long step may read as silence');
    const replica = this.member.replica;
    const data = replica.data;
    return {
      data: {
        description: data.description,
        trainCount: data.trainCount,
        holdbackCount: data.holdbackCount,
        testCount: data.testCount,
        stepsPerEpoch: data.stepsPerEpoch(this.requireConfig().batchSize),
      },
      layers: replica.params.map((p) => ({ name: p.name, shape: p.shape, prunable: p.prunable })),
      backend: this.backend,
      matmulFlops: this.matmulFlops,
    };
  }

  private async formRing(message: Messages['formRing']): Promise<void> {
    const { generation, rank, members, ringKey } = message;
    if (rank >= members.length) throw new Error(`rank ${rank} is outside a ring of ${members.length}`);
    this.generation = generation;
    setLogContext(this.options.log, { rank });
    this.ring = null;
    const ring = await this.links.form({ generation, rank, members, ringKey }, this.config?.wireFormat, this.config?.peerTimeoutMs);
    if (this.generation === generation) {
      this.ring = ring;
      this.requireMember().join(rank, members.length, ring);
    }
    this.options.log.info({ generation, rank, world: members.length }, 'ring formed');
  }

  /** Trains the asked steps, reporting progress about once a second. */
  private async runSteps(message: Messages['runSteps']): Promise<Messages['stepsDone']> {
    const { generation, fromStep, toStep } = message;
    let lastProgressMs = performance.now();
    return this.requireMember().train(fromStep, toStep, {
      check: () => this.currentRing(generation),
      onStep: (step, loss, sofar) => {
        if (performance.now() - lastProgressMs < PROGRESS_EVERY_MS) return;
        lastProgressMs = performance.now();
        this.send('stepProgress', { step, loss, times: sofar.times, bytesSent: sofar.bytesSent });
      },
    });
  }

  /** Whether the worker is ready, for the coordinator's checks and the ring server's /readyz probe. */
  private setReady(ready: boolean): void {
    this.ready = ready;
    this.links.setReady(ready);
  }

  /** The ring of `generation`; throws Aborted once a newer generation (or a lost coordinator) replaced it. */
  private currentRing(generation: number): Collective {
    if (generation !== this.generation || !this.ring) throw new Aborted(`generation ${generation} was superseded`);
    return this.ring;
  }

  private requireMember(): Member {
    if (!this.member) throw new Error('no model yet: the coordinator has not sent a welcome');
    return this.member;
  }

  private requireConfig(): OccamConfig {
    if (!this.config) throw new Error('no config yet: the coordinator has not sent a welcome');
    return this.config;
  }

  private send<K extends MessageKind>(kind: K, message: Messages[K], requestId = 0): void {
    this.connection?.send(kind, message, requestId);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
