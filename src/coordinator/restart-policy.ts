// What the coordinator does when a ring generation ends early: re-form after a back-off, or give
// up. A membership change (a worker lost, joining or leaving) is retried; the same failure
// recurring from one commit (a worker that crashes on this state) backs off and, after a few
// tries, gives up. Anything else (bad config, diverged loss, a stop) ends the run at once.
import { LinkClosed, WorkerError } from './worker-link.ts';
import { MembershipChanged } from './replica-group.ts';

/** How one generation ended, in the policy's terms. */
export type Outcome = { kind: 'membership-changed'; reason: string } | { kind: 'fatal'; error: Error };

/** What to do next: re-form the ring after `delayMs`, or stop the run with `error`. */
export type Decision = { action: 'reform'; delayMs: number; attempt: number } | { action: 'give-up'; error: Error };

/** Re-forming the ring this many times without a new commit means the run cannot progress. */
export const MAX_FAILURES_WITHOUT_PROGRESS = 8;
const FIRST_BACKOFF_MS = 250;

export function classify(error: unknown): Outcome {
  const membership = error instanceof MembershipChanged || error instanceof LinkClosed || (error instanceof WorkerError && error.code === 'aborted');
  return membership ? { kind: 'membership-changed', reason: (error as Error).message } : { kind: 'fatal', error: error as Error };
}

export class RestartPolicy {
  private failuresSinceCommit = 0;

  constructor(private readonly maxFailures = MAX_FAILURES_WITHOUT_PROGRESS) {}

  /** A commit: the run made progress, so earlier failures no longer count. */
  committed(): void {
    this.failuresSinceCommit = 0;
  }

  /** The decision after a generation ended with `outcome`, the last commit being at `step`. */
  decide(outcome: Outcome, step: number): Decision {
    if (outcome.kind === 'fatal') return { action: 'give-up', error: outcome.error };
    this.failuresSinceCommit++;
    if (this.failuresSinceCommit > this.maxFailures) {
      const error = new Error(`the run cannot get past step ${step}: ${this.failuresSinceCommit} failures since the last commit, the last: ${outcome.reason}`);
      return { action: 'give-up', error };
    }
    return { action: 'reform', delayMs: FIRST_BACKOFF_MS * 2 ** (this.failuresSinceCommit - 1), attempt: this.failuresSinceCommit };
  }
}
