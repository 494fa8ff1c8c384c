// Which worker holds the ring back. After each segment, every member's own time per step (its
// forward/backward and its update: what the others wait for) is set against the median of the
// others'; one that is STRAGGLER_RATIO slower in STRAGGLER_SEGMENTS segments in a row is named,
// once, until it keeps up again. A synchronous ring runs at its slowest member's pace.
import type { StepTimes } from '../training/step-loop.ts';

export const STRAGGLER_RATIO = 1.25;
export const STRAGGLER_SEGMENTS = 3;

export interface Straggler {
  workerId: string;
  msPerStep: number;
  /** The median of the other members' times per step. */
  othersMsPerStep: number;
}

export class StragglerWatch {
  private readonly streaks = new Map<string, number>();
  private readonly named = new Set<string>();

  /** One segment's times, by rank: who became a straggler now, and who stopped being one. */
  observe(memberIds: readonly string[], times: readonly StepTimes[]): { named: Straggler[]; recovered: string[] } {
    const perStep = times.map((t) => (t.steps > 0 ? (t.computeMs + t.updateMs) / t.steps : 0));
    const named: Straggler[] = [];
    const recovered: string[] = [];
    memberIds.forEach((workerId, rank) => {
      const othersMsPerStep = median(perStep.filter((_, r) => r !== rank));
      const slow = memberIds.length > 1 && perStep[rank] > STRAGGLER_RATIO * othersMsPerStep;
      const streak = slow ? (this.streaks.get(workerId) ?? 0) + 1 : 0;
      this.streaks.set(workerId, streak);
      if (streak >= STRAGGLER_SEGMENTS && !this.named.has(workerId)) {
        this.named.add(workerId);
        named.push({ workerId, msPerStep: perStep[rank], othersMsPerStep });
      }
      if (!slow && this.named.delete(workerId)) recovered.push(workerId);
    });
    return { named, recovered };
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length === 0 ? 0 : sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
