// Judges a ring that does not move, from what only the coordinator sees: every member's liveness
// and its ring links' byte counts. A rank that waits on its previous rank is waiting for a slow
// peer (busy inside a step), a lost one (its heartbeats stop: membership handles it), or a broken
// link (the previous rank sent bytes that never arrived, or the two could not link at all).
import type { Messages } from '../wire/protocol.ts';
import type { WorkerLink } from './worker-link.ts';

export type StallVerdict =
  | { kind: 'wait' }
  | { kind: 'slow'; worker: WorkerLink }
  | { kind: 'broken'; from: WorkerLink; to: WorkerLink; why: string }
  | { kind: 'stuck'; why: string };

/** A stall this many times peerTimeoutMs long that nothing explains (no busy peer, no missing bytes) ends the ring. */
export const STUCK_AFTER_TIMEOUTS = 4;

/**
 * What `previous`'s silence toward `waiting` means (one stall report of `waiting`). A stall that
 * nothing explains for STUCK_AFTER_TIMEOUTS × peerTimeoutMs is 'stuck': the ring is re-formed from
 * the last commit, as a ring timeout would have done, rather than waiting forever on a fault no
 * one can name.
 */
export function judgeStall(
  ring: readonly WorkerLink[],
  previous: WorkerLink,
  waiting: WorkerLink,
  stall: Messages['ringStall'],
  peerTimeoutMs: number,
): StallVerdict {
  if (previous.busyMs > 0) return { kind: 'slow', worker: previous };
  const sent = previous.ring?.generation === stall.generation ? previous.ring.sentToNextBytes : 0;
  const missing = sent - stall.receivedFromPreviousBytes;
  // A rank that was busy itself may not have read what came meanwhile: its counts prove nothing yet.
  if (missing > 0 && waiting.busyMs === 0)
    return { kind: 'broken', from: previous, to: waiting, why: `${missing} bytes sent never arrived in ${Math.round(stall.waitedMs)} ms` };
  // Further up the ring a member may be inside a long step: everyone downstream waits for it.
  const busy = ring.find((link) => link.busyMs > 0);
  if (busy) return { kind: 'slow', worker: busy };
  if (stall.waitedMs < STUCK_AFTER_TIMEOUTS * peerTimeoutMs) return { kind: 'wait' };
  return {
    kind: 'stuck',
    why: `rank ${waiting.workerId} has had nothing from ${previous.workerId} for ${Math.round(stall.waitedMs)} ms, with no busy peer and no missing bytes`,
  };
}

/**
 * The pair of a ring-formation failure: a rank that could not reach its previous rank, or whose
 * next rank never connected (RingLinkError's side, in the worker's error code). Null for other errors.
 */
export function brokenPairOf(links: readonly WorkerLink[], workerId: string, code: string): [WorkerLink, WorkerLink] | null {
  const rank = links.findIndex((l) => l.workerId === workerId);
  const n = links.length;
  if (rank < 0 || n < 2) return null;
  if (code === 'ring-previous') return [links[(rank - 1 + n) % n], links[rank]];
  if (code === 'ring-next') return [links[rank], links[(rank + 1) % n]];
  return null;
}

/**
 * Which of a broken pair sits out the next rings: none when either end may simply be gone (not
 * heard from within two heartbeats: liveness decides), else the one that joined last.
 */
export function excludedOf([from, to]: [WorkerLink, WorkerLink], heartbeatMs: number): WorkerLink | null {
  const now = Date.now();
  const alive = (link: WorkerLink) => link.isOpen && now - link.lastHeardMs <= 2 * heartbeatMs;
  if (!alive(from) || !alive(to)) return null;
  return from.joinedMs > to.joinedMs ? from : to;
}

/** A broken link in words: ids and ring addresses, which is what an operator checks first. */
export function describeLink(from: WorkerLink, to: WorkerLink): string {
  return `ring link ${from.workerId} (${from.ringHost}:${from.ringPort}) → ${to.workerId} (${to.ringHost}:${to.ringPort})`;
}
