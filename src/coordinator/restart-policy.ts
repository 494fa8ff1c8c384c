// What the coordinator does when a ring generation ends early: re-form after a back-off, or give
// up. A membership change (a worker lost, joining or leaving) is retried; the same failure
// recurring from one commit (a worker that crashes on this state) backs off and, after a few
// tries, gives up. Anything else (bad config, diverged loss, a stop) ends the run at once.
import { LinkClosed, WorkerError } from './worker-link.ts';
import { MembershipChanged, type ReplicaGroup } from './replica-group.ts';
import type { RunLoop } from './run-loop.ts';

/** How one generation ended, in the policy's terms. */
export type Outcome = { kind: 'membership-changed'; reason: string } | { kind: 'fatal'; error: Error };

/** What to do next: re-form the ring after `delayMs`, or stop the run with `error`. */
export type Decision = { action: 'reform'; delayMs: number; attempt: number } | { action: 'give-up'; error: Error };

/** Re-forming the ring this many times without a new commit means the run cannot progress. */
const MAX_FAILURES_WITHOUT_PROGRESS = 8;
const FIRST_BACKOFF_MS = 250;

export function classify(error: unknown): Outcome {
  const membership =
    error instanceof MembershipChanged || error instanceof LinkClosed || (error instanceof WorkerError && error.code === 'aborted');
  return membership ? { kind: 'membership-changed', reason: (error as Error).message } : { kind: 'fatal', error: error as Error };
}

export class RestartPolicy {
  private failuresSinceCommit = 0;

  constructor(
    private readonly maxFailures = MAX_FAILURES_WITHOUT_PROGRESS,
    private readonly firstBackoffMs = FIRST_BACKOFF_MS,
  ) {}

  /** A commit: the run made progress, so earlier failures no longer count. */
  committed(): void {
    this.failuresSinceCommit = 0;
  }

  /** The decision after a generation ended with a membership change (`reason`), the last commit being at `step`. */
  decide(reason: string, step: number): Decision {
    this.failuresSinceCommit++;
    if (this.failuresSinceCommit > this.maxFailures) {
      const error = new Error(
        `the run cannot get past step ${step}: ${this.failuresSinceCommit} failures since the last commit, the last: ${reason}`,
      );
      return { action: 'give-up', error };
    }
    return { action: 'reform', delayMs: this.firstBackoffMs * 2 ** (this.failuresSinceCommit - 1), attempt: this.failuresSinceCommit };
  }
}

export interface GenerationDriver {
  /** The next ring generation, ready to train (waits for members as needed). */
  form(): Promise<ReplicaGroup>;
  /** Whether the generation's error ends the run whatever it was (the coordinator is stopping), and with which error. */
  ends?(error: Error): Error | null;
  /** The policy chose to re-form after `delayMs`. */
  onRestart?(reason: string, attempt: number): void;
}

/** Runs `loop` over generation after generation until it finishes, the policy gives up, or a fatal error. */
export async function runGenerations(loop: RunLoop, policy: RestartPolicy, driver: GenerationDriver): Promise<void> {
  for (;;) {
    try {
      await loop.run(await driver.form());
      return;
    } catch (error) {
      const ends = driver.ends?.(error as Error);
      if (ends) throw ends;
      const outcome = classify(error);
      if (outcome.kind === 'fatal') throw outcome.error;
      loop.countRestart(outcome.reason);
      // A failure that recurs from the same commit would loop forever: back off, then give up.
      const decision = policy.decide(outcome.reason, loop.committed?.progress.step ?? 0);
      if (decision.action === 'give-up') throw decision.error;
      driver.onRestart?.(outcome.reason, decision.attempt);
      await new Promise((resolve) => setTimeout(resolve, decision.delayMs));
    }
  }
}
