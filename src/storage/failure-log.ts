// The run's failure history, events.jsonl in the run directory: every coordinator start, ring
// re-formation, lost or excluded worker, resynchronised replica and commit, appended as it happens
// (a crash loses none of them, unlike counters kept in the next checkpoint), and the counts the
// summary and the report give: restarts, losses, exclusions, coordinator restarts and outage time.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJsonLines } from './json-lines.ts';

export type FailureEvent = { timeMs: number } & (
  | { type: 'coordinator-start' }
  | { type: 'coordinator-stop'; reason: string }
  | { type: 'restart'; reason: string; committedStep: number }
  | { type: 'worker-lost'; worker: string; reason: string }
  | { type: 'excluded'; worker: string; reason: string; forMs: number }
  | { type: 'resync'; worker: string; reason: string }
  | { type: 'commit'; step: number }
);

/** What one event says, without its time (the log stamps it). */
export type FailureRecord = FailureEvent extends infer E ? (E extends FailureEvent ? Omit<E, 'timeMs'> : never) : never;

export interface FailureCounts {
  /** Ring re-formations from a commit, over every coordinator of the run. */
  restarts: number;
  workersLost: number;
  exclusions: number;
  resyncs: number;
  /** Coordinator starts after the first (a resumed or restarted coordinator). */
  coordinatorRestarts: number;
  /** Time with no coordinator: from the last event of one to the start of the next (an upper bound). */
  outageMs: number;
}

export const EVENTS_FILE = 'events.jsonl';

export class FailureLog {
  private readonly path: string;

  constructor(runDir: string) {
    this.path = join(runDir, EVENTS_FILE);
  }

  append(record: FailureRecord): void {
    appendFileSync(this.path, `${JSON.stringify({ timeMs: Date.now(), ...record })}\n`);
  }
}

/** The run's events, oldest first; a truncated last line (a crash mid-write) is skipped. */
export function readFailureLog(runDir: string): FailureEvent[] {
  return readJsonLines<FailureEvent>(join(runDir, EVENTS_FILE));
}

export function failureCounts(events: readonly FailureEvent[]): FailureCounts {
  const count = (type: FailureEvent['type']) => events.filter((e) => e.type === type).length;
  let outageMs = 0;
  events.forEach((event, i) => {
    if (event.type === 'coordinator-start' && i > 0) outageMs += Math.max(0, event.timeMs - events[i - 1].timeMs);
  });
  return {
    restarts: count('restart'),
    workersLost: count('worker-lost'),
    exclusions: count('excluded'),
    resyncs: count('resync'),
    coordinatorRestarts: Math.max(0, count('coordinator-start') - 1),
    outageMs,
  };
}
