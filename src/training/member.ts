// One rank of a ring generation: a replica, the collective that joins it to the others, and the
// global step it has reached. Each method is one command of the run loop (load, train, evaluate,
// thresholds, prune, upload); a worker process and the in-process group both call exactly these.
// Hooks let a test or a fault plan act at named points, each with the facts it declares.
import { SOLO, type Collective } from '../common/collective.ts';
import type { OccamConfig } from '../config.ts';
import type { EvalSums } from './evaluate.ts';
import { Replica } from './replica.ts';
import { trainSteps, type StepsResult } from './step-loop.ts';

/** The facts each hook point knows; a fault filter may name only these. */
export const HOOK_FACTS = {
  compute: ['step', 'rank'],
  allreduce: ['step', 'rank'],
  evaluate: ['round', 'rank', 'step'],
  thresholds: ['round', 'rank'],
  prune: ['round', 'rank'],
  upload: ['step', 'rank'],
} as const;
export type HookPoint = keyof typeof HOOK_FACTS;
export type HookFacts<P extends HookPoint> = Record<(typeof HOOK_FACTS)[P][number], number>;

/** Called at each point with its facts; `round` counts how often this member did it, from 0. */
export type MemberHooks = {
  [P in HookPoint]?: (facts: HookFacts<P>, replica: Replica) => void;
};

export interface StateReport {
  stateDigest: string;
  activePerLayer: number[];
  activeParams: number;
  step: number;
}

export interface TrainOptions {
  /** Throws when the steps must stop (the ring was superseded). */
  check?(): void;
  /** After each step, with the step reached and the work so far. */
  onStep?(step: number, loss: number, sofar: StepsResult): void;
}

export class Member {
  replica: Replica;
  rank = 0;
  world = 1;
  collective: Collective = SOLO;
  /** The next global step this replica will train. */
  step = 0;
  private readonly rounds = { evaluate: 0, thresholds: 0, prune: 0 };

  constructor(
    replica: Replica,
    private readonly config: OccamConfig,
    private readonly hooks: MemberHooks = {},
  ) {
    this.replica = replica;
  }

  /** Joins a ring generation: this member's rank, the ring's size and its collective. */
  join(rank: number, world: number, collective: Collective): void {
    this.rank = rank;
    this.world = world;
    this.collective = collective;
  }

  /** Takes a committed state (safetensors bytes), or initialises from the seed, at `step`. */
  load(step: number, state: Uint8Array | null): Promise<StateReport> {
    if (state) this.replica.loadState(state);
    else {
      this.replica.dispose(); // its variables hold device memory
      this.replica = new Replica(this.replica.model, this.replica.data, this.config);
    }
    this.step = step;
    return this.report();
  }

  async train(fromStep: number, toStep: number, options: TrainOptions = {}): Promise<StepsResult & { stateDigest: string }> {
    if (fromStep !== this.step) throw new Error(`asked to train from step ${fromStep}, this replica is at step ${this.step}`);
    const result = await trainSteps(this.replica, {
      fromStep,
      toStep,
      rank: this.rank,
      world: this.world,
      collective: this.collective,
      check: options.check,
      duringCompute: (step) => this.hooks.compute?.({ step, rank: this.rank }, this.replica),
      duringAllReduce: (step) => this.hooks.allreduce?.({ step, rank: this.rank }, this.replica),
      afterStep: (step, loss, sofar) => {
        this.step = step + 1;
        options.onStep?.(this.step, loss, sofar);
      },
    });
    return { ...result, stateDigest: await this.replica.stateDigest() };
  }

  /** This rank's partial sums over the holdback and test splits. */
  async evaluate(): Promise<{ holdback: EvalSums; test: EvalSums }> {
    this.hooks.evaluate?.({ round: this.rounds.evaluate++, rank: this.rank, step: this.step }, this.replica);
    const holdback = await this.replica.evaluate('holdback', this.rank, this.world);
    const test = await this.replica.evaluate('test', this.rank, this.world);
    return { holdback, test };
  }

  /** The pruning thresholds of the given prunable layers (indices into prunableLayers) for fraction p. */
  async thresholds(p: number, layers: number[]): Promise<{ layers: number[]; values: number[] }> {
    this.hooks.thresholds?.({ round: this.rounds.thresholds++, rank: this.rank }, this.replica);
    const prunable = this.replica.prunableLayers;
    const unknown = layers.find((layer) => layer >= prunable.length);
    if (unknown !== undefined) throw new Error(`no prunable layer ${unknown} (the model has ${prunable.length})`);
    const values = await Promise.all(layers.map((layer) => this.replica.threshold(prunable[layer], p)));
    return { layers, values };
  }

  async prune(thresholds: number[]): Promise<StateReport> {
    await this.replica.applyThresholds(thresholds);
    this.hooks.prune?.({ round: this.rounds.prune++, rank: this.rank }, this.replica);
    return this.report();
  }

  async upload(): Promise<{ state: Uint8Array; stateDigest: string; step: number }> {
    this.hooks.upload?.({ step: this.step, rank: this.rank }, this.replica);
    const step = this.step;
    const { state, digest } = await this.replica.snapshot();
    return { state, stateDigest: digest, step };
  }

  async report(): Promise<StateReport> {
    const counts = this.replica.activeCounts();
    return {
      stateDigest: await this.replica.stateDigest(),
      activePerLayer: counts.perLayer,
      activeParams: counts.activeParams,
      step: this.step,
    };
  }
}
