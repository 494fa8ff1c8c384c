// A ring generation of worker processes, driven over their control links: each group command is
// one request per member (by rank), raced against the loss of any member, so a lost worker turns
// every pending command into MembershipChanged. Forming it links the ring neighbours; a link
// that fails (at forming, or as a stall: ring-health.ts) ends the generation without one of its pair.
import type { OccamConfig } from '../config.ts';
import { randomKey } from '../wire/auth.ts';
import type { Logger } from '../common/log.ts';
import type { Messages } from '../wire/protocol.ts';
import type { Membership } from './membership.ts';
import { MembershipChanged, type GroupFacts, type ReplicaGroup, type StepProgress } from './replica-group.ts';
import { brokenPairOf, describeLink, excludedOf, judgeStall } from './ring-health.ts';
import { WorkerError, type WorkerLink } from './worker-link.ts';

export class RemoteGroup implements ReplicaGroup {
  readonly memberIds: readonly string[];
  readonly hardware: readonly string[];
  readonly peakFlops: readonly number[];
  private readonly lost: Promise<never>;
  private loseWith: (error: Error) => void = () => {};
  private progressListener: ((rank: number, progress: StepProgress) => void) | null = null;

  constructor(
    readonly generation: number,
    private readonly links: WorkerLink[],
    readonly facts: GroupFacts,
    private readonly members: Membership,
    private readonly config: OccamConfig,
    private readonly log: Logger,
  ) {
    this.memberIds = links.map((l) => l.workerId);
    this.hardware = links.map((l) => l.ready?.backend ?? 'unknown');
    this.peakFlops = links.map((l) => l.ready?.matmulFlops ?? 0);
    this.lost = new Promise<never>((_, reject) => (this.loseWith = reject));
    this.lost.catch(() => {}); // observed through guard(); never an unhandled rejection
  }

  has(link: WorkerLink): boolean {
    return this.links.includes(link);
  }

  /** A member left or the coordinator is stopping: every pending and later command fails with `error`. */
  lose(error: Error): void {
    this.loseWith(error);
  }

  /** A member's progress report (unsolicited, while it trains). */
  progress(link: WorkerLink, message: Messages['stepProgress']): void {
    const rank = this.links.indexOf(link);
    if (rank >= 0) this.progressListener?.(rank, message);
  }

  /** A member has waited peerTimeoutMs for its previous rank: it waits on, unless the link between them is broken. */
  stalled(link: WorkerLink, stall: Messages['ringStall']): void {
    const rank = this.links.indexOf(link);
    if (rank < 0 || stall.generation !== this.generation) return;
    const previous = this.links[(rank - 1 + this.links.length) % this.links.length];
    // A slow previous rank is said by the membership's liveness check; a lost one is declared there.
    const verdict = judgeStall(this.links, previous, link, stall, this.config.peerTimeoutMs);
    if (verdict.kind === 'broken') this.linkFailed([verdict.from, verdict.to], verdict.why);
    if (verdict.kind === 'stuck') {
      this.log.warn({ generation: this.generation, why: verdict.why }, 'the ring does not move; re-forming it from the last commit');
      this.lose(new MembershipChanged(`the ring did not move: ${verdict.why}`));
    }
  }

  /** Links every member to its ring neighbours; the ring exists once all acknowledge. */
  async form(): Promise<void> {
    const members = this.links.map((l) => ({ workerId: l.workerId, host: l.ringHost, port: l.ringPort }));
    for (const link of this.links) if (!link.isOpen) throw new MembershipChanged(`worker ${link.workerId} left`);
    this.log.info({ generation: this.generation, workers: this.memberIds }, 'forming the ring');
    try {
      const ringKey = randomKey();
      await this.all(
        (rank) => this.links[rank].request('formRing', { generation: this.generation, rank, members, ringKey }),
        this.formTimeoutMs,
      );
    } catch (error) {
      const pair = error instanceof WorkerError ? brokenPairOf(this.links, error.workerId, error.code) : null;
      throw pair ? this.linkFailed(pair, (error as WorkerError).message.replace(/^worker \S+: /, '')) : error;
    }
  }

  /** Every member loads `state`; the bound grows with the bytes sent (1 s per MB beyond the formation bound). */
  load(step: number, state: Uint8Array | null) {
    const message = { generation: this.generation, step, initialize: state === null, state: state ?? new Uint8Array(0) };
    const transferMs = (this.links.length * message.state.length) / 1000;
    return this.all((rank) => this.links[rank].request('loadState', message), this.formTimeoutMs + transferMs);
  }

  async train(fromStep: number, toStep: number, onProgress?: (rank: number, progress: StepProgress) => void) {
    this.progressListener = onProgress ?? null;
    try {
      return await this.all((rank) => this.links[rank].request('runSteps', { generation: this.generation, fromStep, toStep }));
    } finally {
      this.progressListener = null;
    }
  }

  evaluate() {
    return this.all((rank) => this.links[rank].request('evaluate', { generation: this.generation }));
  }

  thresholds(p: number, layersOf: (rank: number) => number[]) {
    return this.all((rank) => this.links[rank].request('computeThresholds', { generation: this.generation, p, layers: layersOf(rank) }));
  }

  prune(thresholds: number[]) {
    return this.all((rank) => this.links[rank].request('prune', { generation: this.generation, thresholds }));
  }

  upload(rank: number) {
    return this.guard(this.links[rank].request('uploadState', { generation: this.generation }));
  }

  resync(rank: number, step: number, state: Uint8Array) {
    return this.guard(this.links[rank].request('loadState', { generation: this.generation, step, initialize: false, state }));
  }

  /** Drops a misbehaving member; it sits out new rings for a while (its reconnection is admitted later). */
  exclude(rank: number, reason: string): void {
    this.members.exclude(this.links[rank], reason);
    this.links[rank].terminate(reason);
  }

  /** Releases the members that asked to leave, and says so when ready workers wait to join. */
  boundary(step: number): string | null {
    const leavers = this.links.filter((l) => l.leaving);
    if (leavers.length > 0) {
      for (const link of leavers) this.members.release(link);
      return `worker(s) ${leavers.map((l) => l.workerId).join(', ')} left at step ${step}, a commit`;
    }
    const joiners = this.members.ready().filter((l) => !this.links.includes(l)).length;
    return joiners > 0 ? `admitting ${joiners} new worker(s)` : null;
  }

  /** Ends this generation for a broken link; the pair's newer member sits out the next rings for a while. */
  private linkFailed(pair: [WorkerLink, WorkerLink], why: string): MembershipChanged {
    const excluded = excludedOf(pair, this.config.heartbeatMs);
    const link = describeLink(...pair);
    if (excluded) this.members.exclude(excluded, `${link} failed`);
    this.log.warn({ from: pair[0].workerId, to: pair[1].workerId, excluded: excluded?.workerId, why }, `${link} failed`);
    const without = excluded ? `; the next rings go without ${excluded.workerId} for a while` : '';
    const error = new MembershipChanged(`${link} failed (${why})${without}`);
    this.lose(error);
    return error;
  }

  /** Ring formation and the first state load may wait on slow peers and large states. */
  private get formTimeoutMs(): number {
    return 2 * this.config.peerTimeoutMs + 15000;
  }

  /** Sends one request per member (by rank) and waits for all replies, or the loss of a member. */
  private all<R>(request: (rank: number) => Promise<R>, timeoutMs = 0): Promise<R[]> {
    const replies = this.links.map((link, rank) => {
      const reply = request(rank);
      return timeoutMs > 0 ? withTimeout(reply, timeoutMs, () => link.terminate(`no reply within ${timeoutMs} ms`)) : reply;
    });
    return this.guard(Promise.all(replies));
  }

  private guard<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([promise, this.lost]);
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout();
      reject(new MembershipChanged(`no reply within ${ms} ms`));
    }, ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: Error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
