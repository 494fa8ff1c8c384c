// A ring generation of in-process replicas: N members joined by N RingAllReduce instances that
// pass their frames in memory, so the run loop's logic (rounds, resync, resume, member loss,
// divergence) runs in milliseconds without sockets or processes. Same frames, same sums, same
// bit-identical replicas as the worker processes.
import type { OccamConfig } from '../config.ts';
import type { Member } from '../training/member.ts';
import { DEFAULT_CHUNK_FLOATS, RingAllReduce, RingError } from '../wire/ring.ts';
import { MembershipChanged, type GroupFacts, type ReplicaGroup, type StepProgress } from './replica-group.ts';

export interface LocalGroupOptions {
  /** Why the ring must re-form at a segment boundary, if it must (a test's membership change). */
  boundary?: (step: number) => string | null;
  /** What the member of each rank computes on, as a worker reports it (tests of mixed hardware set it). */
  hardware?: (rank: number) => string;
  /** Floats per ring frame (small values exercise the chunked pipeline). */
  chunkFloats?: number;
}

export class LocalGroup implements ReplicaGroup {
  readonly memberIds: readonly string[];
  readonly hardware: readonly string[];
  /** In-process members share this process's backend; nothing measures it (MFU stays null). */
  readonly peakFlops: readonly number[];
  readonly facts: GroupFacts;
  private readonly rings: RingAllReduce[];
  private lostReason: string | null = null;
  private readonly lost: Promise<never>;
  private loseWith: (error: Error) => void = () => {};

  constructor(
    readonly members: Member[],
    private readonly config: OccamConfig,
    private readonly options: LocalGroupOptions = {},
  ) {
    const n = members.length;
    this.memberIds = members.map((_, rank) => `local-${rank}`);
    this.hardware = members.map((_, rank) => options.hardware?.(rank) ?? 'in-process');
    this.peakFlops = members.map(() => 0);
    const options_ = {
      chunkFloats: options.chunkFloats ?? DEFAULT_CHUNK_FLOATS,
      timeoutMs: config.peerTimeoutMs,
      wireFormat: config.wireFormat,
    };
    this.rings = members.map(
      (_, rank) =>
        new RingAllReduce(
          rank,
          n,
          (parts, written) => {
            this.deliver(rank, Buffer.concat(parts));
            written();
          },
          options_,
        ),
    );
    members.forEach((member, rank) => member.join(rank, n, this.rings[rank]));
    const replica = members[0].replica;
    this.facts = {
      data: {
        description: replica.data.description,
        trainCount: replica.data.trainCount,
        holdbackCount: replica.data.holdbackCount,
        testCount: replica.data.testCount,
        stepsPerEpoch: replica.data.stepsPerEpoch(config.batchSize),
      },
      layers: replica.params.map((p) => ({ name: p.name, shape: p.shape, prunable: p.prunable })),
      backend: 'in-process',
    };
    this.lost = new Promise<never>((_, reject) => (this.loseWith = reject));
    this.lost.catch(() => {});
  }

  /** The same members (their replicas as they are) in a new generation of `ranks`. */
  regroup(ranks: number[], options: LocalGroupOptions = this.options): LocalGroup {
    return new LocalGroup(
      ranks.map((r) => this.members[r]),
      this.config,
      options,
    );
  }

  /** A member is gone: every pending and later command fails with MembershipChanged. */
  lose(rank: number, reason: string): void {
    if (this.lostReason) return;
    this.lostReason = `worker ${this.memberIds[rank]} lost: ${reason}`;
    for (const ring of this.rings) ring.abort(new RingError(this.lostReason));
    this.loseWith(new MembershipChanged(this.lostReason));
  }

  load(step: number, state: Uint8Array | null) {
    return this.each((m) => m.load(step, state));
  }

  train(fromStep: number, toStep: number, onProgress?: (rank: number, progress: StepProgress) => void) {
    return this.each((m, rank) =>
      m.train(fromStep, toStep, {
        check: () => this.check(),
        onStep: (step, loss, sofar) => onProgress?.(rank, { step, loss, times: sofar.times, bytesSent: sofar.bytesSent }),
      }),
    );
  }

  evaluate() {
    return this.each((m) => m.evaluate());
  }

  thresholds(p: number, layersOf: (rank: number) => number[]) {
    return this.each((m, rank) => m.thresholds(p, layersOf(rank)));
  }

  prune(thresholds: number[]) {
    return this.each((m) => m.prune(thresholds));
  }

  upload(rank: number) {
    return this.guard(async () => this.members[rank].upload());
  }

  resync(rank: number, step: number, state: Uint8Array) {
    return this.guard(async () => this.members[rank].load(step, state));
  }

  exclude(rank: number, reason: string): void {
    this.lose(rank, reason);
  }

  boundary(step: number): string | null {
    return this.options.boundary?.(step) ?? null;
  }

  private deliver(fromRank: number, frame: Buffer): void {
    const next = this.rings[(fromRank + 1) % this.rings.length];
    setImmediate(() => next.receive(frame));
  }

  private check(): void {
    if (this.lostReason) throw new MembershipChanged(this.lostReason);
  }

  private each<R>(command: (member: Member, rank: number) => R | Promise<R>): Promise<R[]> {
    return this.guard(() => Promise.all(this.members.map(async (m, rank) => command(m, rank))));
  }

  private guard<T>(run: () => Promise<T>): Promise<T> {
    if (this.lostReason) return Promise.reject(new MembershipChanged(this.lostReason));
    return Promise.race([run(), this.lost]);
  }
}
