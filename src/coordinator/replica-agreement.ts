// Whether the replicas hold one state, and what to do when they do not: after each segment and
// each pruning every replica's digest is compared; one that differs from the majority is
// resynchronised from a replica that agrees (and excluded once it needed that RESYNC_LIMIT times in
// one ring); with no majority every replica reloads the last commit; a commit must upload the state
// they agreed on. Replicas on different hardware may differ honestly: said once, then stopped.
import type { Logger } from '../common/log.ts';
import type { RunEvent } from '../observe/events.ts';
import type { RunDir } from '../storage/run-dir.ts';
import { MembershipChanged, type ReplicaGroup } from './replica-group.ts';
import type { RunState } from './run-state.ts';

/** Resynchronisations of one replica within one ring that get it excluded. */
const RESYNC_LIMIT = 3;

export interface ReplicaAgreementOptions {
  log: Logger;
  runDir: RunDir;
  emit(event: RunEvent): void;
}

export class ReplicaAgreement {
  /** How often replicas on different hardware disagreed (checkHardware). */
  private hardwareDivergences = 0;
  /** The digest every replica holds now (loaded, or agreed after the last segment or pruning): what a commit must upload. */
  private agreed: string | null = null;
  /** Resynchronisations per worker in the current ring (excludeIfResyncedOften). */
  private readonly resyncsOf = new Map<string, number>();

  constructor(private readonly options: ReplicaAgreementOptions) {}

  /** A new ring loaded `digest` on every member. */
  loaded(digest: string): void {
    this.agreed = digest;
    this.resyncsOf.clear();
  }

  /** Refuses a commit upload from rank 0 that is not the agreed state (rank 0 is excluded). */
  checkUpload(group: ReplicaGroup, stateDigest: string): void {
    if (this.agreed === null || stateDigest === this.agreed) return;
    group.exclude(0, `uploaded state ${stateDigest}, not the agreed ${this.agreed}`);
    throw new MembershipChanged(`rank 0 uploaded a state (${stateDigest}) other than the one every replica reported (${this.agreed})`);
  }

  /**
   * Checks that every replica reports the same state digest. A replica that differs from the
   * majority is resynchronised from one that agrees, and counted; returns the agreed digest.
   * With no majority (1 against 1) nothing says which is right: every replica reloads the last commit.
   */
  async reconcile(group: ReplicaGroup, digests: string[], progress: RunState, when: string): Promise<string> {
    const counts = new Map<string, number>();
    for (const d of digests) counts.set(d, (counts.get(d) ?? 0) + 1);
    const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1] || digests.indexOf(a[0]) - digests.indexOf(b[0]));
    const agreed = ranked[0][0];
    const differing = digests.flatMap((d, rank) => (d === agreed ? [] : [rank]));
    this.agreed = agreed;
    if (differing.length === 0) return agreed;
    this.checkHardware(group, digests.indexOf(agreed), differing, when);
    if (ranked[1][1] === ranked[0][1])
      throw new MembershipChanged(
        `replicas disagree ${when} with no majority (${digests.join(' / ')}): every replica reloads the last commit`,
      );
    const upload = await group.upload(digests.indexOf(agreed));
    for (const rank of differing) {
      const workerId = group.memberIds[rank];
      const reason = `state digest ${digests[rank]} differs from the agreed ${agreed} ${when}`;
      this.options.log.warn({ worker: workerId, rank, reason }, 'replica differs; resynchronising it');
      const report = await group.resync(rank, upload.step, upload.state);
      if (report.stateDigest !== agreed) {
        group.exclude(rank, 'replica could not be resynchronised');
        throw new MembershipChanged(`worker ${workerId} could not be resynchronised`);
      }
      progress.resyncs++;
      this.options.runDir.recordFailure({ type: 'resync', worker: workerId, reason });
      this.options.emit({ type: 'resync', workerId, reason });
      this.excludeIfResyncedOften(group, rank);
    }
    return agreed;
  }

  /** A replica resynchronised RESYNC_LIMIT times in this ring keeps drifting (a bad GPU, a member sending wrong values): excluded. */
  private excludeIfResyncedOften(group: ReplicaGroup, rank: number): void {
    const workerId = group.memberIds[rank];
    const count = (this.resyncsOf.get(workerId) ?? 0) + 1;
    this.resyncsOf.set(workerId, count);
    if (count < RESYNC_LIMIT) return;
    this.resyncsOf.delete(workerId);
    group.exclude(rank, `resynchronised ${count} times`);
    throw new MembershipChanged(`worker ${workerId} excluded: its replica had to be resynchronised ${count} times`);
  }

  /**
   * Replicas on different hardware (GPU models, drivers, backends) need not sum floats alike, so
   * their digests can differ with no fault at all. Once is resynchronised and said; twice stops
   * the run with the reason, instead of resynchronising at every segment.
   */
  private checkHardware(group: ReplicaGroup, agreedRank: number, differing: number[], when: string): void {
    const reference = group.hardware[agreedRank];
    const foreign = differing.filter((rank) => group.hardware[rank] !== reference);
    if (foreign.length === 0) return;
    const who = foreign.map((rank) => `${group.memberIds[rank]} (${group.hardware[rank]})`).join(', ');
    const message = `replicas on different hardware diverge ${when}: ${who} against ${group.memberIds[agreedRank]} (${reference}); floating-point results are not bit-identical across GPU models, drivers or backends`;
    this.hardwareDivergences++;
    if (this.hardwareDivergences > 1) throw new Error(`${message}. Run every worker on the same GPU model, driver and backend.`);
    this.options.log.warn(
      { workers: foreign.map((rank) => group.memberIds[rank]) },
      `${message}; resynchronising, and stopping if it happens again`,
    );
  }
}
