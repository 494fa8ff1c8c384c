// How the coordinator reads a ring that does not move, from liveness and byte counts alone.
import { describe, expect, it } from 'vitest';
import { judgeStall, STUCK_AFTER_TIMEOUTS } from '../src/coordinator/ring-health.ts';
import type { WorkerLink } from '../src/coordinator/worker-link.ts';

const TIMEOUT_MS = 1000;
/** The parts of a link the judgement reads. */
function link(workerId: string, busyMs = 0, sentToNextBytes = 0): WorkerLink {
  return { workerId, busyMs, ring: { generation: 3, sentToNextBytes, receivedFromPreviousBytes: 0 } } as unknown as WorkerLink;
}
const stall = (waitedMs: number, receivedFromPreviousBytes: number) => ({
  generation: 3,
  waitedMs,
  sentToNextBytes: 0,
  receivedFromPreviousBytes,
});

describe('a stalled ring', () => {
  it('waits for a previous rank inside a long step, or for a busy member further up the ring', () => {
    const [w0, w1, w2] = [link('w0', 0, 100), link('w1', 5000, 100), link('w2')];
    expect(judgeStall([w0, w1, w2], w1, w2, stall(10 * TIMEOUT_MS, 100), TIMEOUT_MS)).toEqual({ kind: 'slow', worker: w1 });
    const idle = link('w1', 0, 100);
    expect(judgeStall([w0, idle, w2], idle, w2, stall(10 * TIMEOUT_MS, 100), TIMEOUT_MS)).toMatchObject({ kind: 'stuck' });
    expect(judgeStall([link('w0', 800), idle, w2], idle, w2, stall(10 * TIMEOUT_MS, 100), TIMEOUT_MS)).toMatchObject({ kind: 'slow' });
  });

  it('names a broken link when the previous rank sent bytes that never arrived, unless the waiting rank was busy itself', () => {
    const [previous, waiting] = [link('w1', 0, 300), link('w2')];
    expect(judgeStall([previous, waiting], previous, waiting, stall(TIMEOUT_MS, 100), TIMEOUT_MS)).toEqual({
      kind: 'broken',
      from: previous,
      to: waiting,
      why: '200 bytes sent never arrived in 1000 ms',
    });
    const busyWaiting = link('w2', 400);
    expect(judgeStall([previous, busyWaiting], previous, busyWaiting, stall(TIMEOUT_MS, 100), TIMEOUT_MS).kind).not.toBe('broken');
  });

  it(`waits while nothing explains the silence, then after ${STUCK_AFTER_TIMEOUTS} × peerTimeoutMs re-forms`, () => {
    const [previous, waiting] = [link('w1', 0, 100), link('w2')];
    const verdict = (waitedMs: number) => judgeStall([previous, waiting], previous, waiting, stall(waitedMs, 100), TIMEOUT_MS).kind;
    expect(verdict(TIMEOUT_MS)).toBe('wait');
    expect(verdict((STUCK_AFTER_TIMEOUTS - 1) * TIMEOUT_MS)).toBe('wait');
    expect(verdict(STUCK_AFTER_TIMEOUTS * TIMEOUT_MS)).toBe('stuck');
  });
});
