// Fault injection for tests and drills, off unless OCCAM_FAULTS is set. Each entry names an
// action, the point where it fires and filters, e.g.
//   OCCAM_FAULTS="kill@allreduce step=5 rank=1; corrupt-mask@prune round=1 rank=1"
// Actions: kill (SIGKILL itself), stop (SIGSTOP itself: a hung peer), corrupt-mask.
// Points: allreduce (step=), thresholds/prune/evaluate (round=), upload (any). Each fires once.

export type FaultAction = 'kill' | 'stop' | 'corrupt-mask';
export type FaultPoint = 'allreduce' | 'thresholds' | 'prune' | 'evaluate' | 'upload';

interface Fault {
  action: FaultAction;
  point: FaultPoint;
  filters: Record<string, number>;
  fired: boolean;
}

export class FaultPlan {
  private readonly faults: Fault[];

  constructor(spec: string | undefined) {
    this.faults = (spec ?? '')
      .split(';')
      .map((s) => s.trim())
      .filter(Boolean)
      .map(parseFault);
  }

  /** The action due at this point with these facts (e.g. { step: 5, rank: 1 }), if any. */
  due(point: FaultPoint, facts: Record<string, number>): FaultAction | null {
    for (const fault of this.faults) {
      if (fault.fired || fault.point !== point) continue;
      if (Object.entries(fault.filters).every(([k, v]) => facts[k] === v)) {
        fault.fired = true;
        return fault.action;
      }
    }
    return null;
  }
}

/** Runs a process-level action now; returns true when it was one (kill or stop). */
export function actOnProcess(action: FaultAction | null): boolean {
  if (action === 'kill') process.kill(process.pid, 'SIGKILL');
  if (action === 'stop') process.kill(process.pid, 'SIGSTOP');
  return action === 'kill' || action === 'stop';
}

function parseFault(text: string): Fault {
  const [head, ...pairs] = text.split(/\s+/);
  const [action, point] = head.split('@');
  if (!['kill', 'stop', 'corrupt-mask'].includes(action) || !['allreduce', 'thresholds', 'prune', 'evaluate', 'upload'].includes(point)) {
    throw new Error(`OCCAM_FAULTS: cannot parse '${text}'`);
  }
  const filters: Record<string, number> = {};
  for (const pair of pairs) {
    const [key, value] = pair.split('=');
    if (!key || value === undefined || Number.isNaN(Number(value))) throw new Error(`OCCAM_FAULTS: bad filter '${pair}' in '${text}'`);
    filters[key] = Number(value);
  }
  return { action: action as FaultAction, point: point as FaultPoint, filters, fired: false };
}
