// Fault injection for the process-level tests and drills, off unless OCCAM_FAULTS is set. It
// becomes a set of member hooks (training/member.ts); production code has no fault checks. E.g.
//   OCCAM_FAULTS="kill@allreduce step=5 rank=1; corrupt-mask@prune round=1 rank=1"
// Actions: kill (SIGKILL itself), stop (SIGSTOP itself: a hung peer), corrupt-mask (prune or upload),
// block:MS (the training thread stuck MS milliseconds in one synchronous call: a long step),
// slow:MS (the same at every match, not once: a rank that is always slower).
// Points and the facts a filter may name: HOOK_FACTS. Each fault fires once.
// OCCAM_CUT_LINK="w2 after=BYTES" makes this worker's ring link to w2 a black hole (a network
// partition of that pair alone): from the start, or once BYTES went over it. OCCAM_PACE_KBPS=1000
// paces the worker's control uplink to 1 Mbit/s (a slow link: a state upload takes its time).
import { HOOK_FACTS, type HookPoint, type MemberHooks } from '../training/member.ts';
import type { Replica } from '../training/replica.ts';

export type FaultAction = 'kill' | 'stop' | 'corrupt-mask' | 'block' | 'slow';

interface Fault {
  action: FaultAction;
  /** block, slow: for how long. */
  ms: number;
  point: HookPoint;
  filters: Record<string, number>;
  /** How often it fired: once for every action but slow, which goes on firing. */
  fires: number;
}

const ACTIONS: readonly FaultAction[] = ['kill', 'stop', 'corrupt-mask', 'block', 'slow'];
/** Actions that take a duration (ACTION:MS). */
const TIMED: readonly FaultAction[] = ['block', 'slow'];

/** Parses OCCAM_FAULTS into member hooks; a spec that does not parse throws naming the entry. */
export function faultHooks(spec: string | undefined, onFire: (fault: string) => void = () => {}): MemberHooks {
  const faults = (spec ?? '')
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(parseFault);
  const hooks: MemberHooks = {};
  for (const point of Object.keys(HOOK_FACTS) as HookPoint[]) {
    if (!faults.some((f) => f.point === point)) continue;
    hooks[point] = (facts: Record<string, number>, replica: Replica) => {
      const armed = (f: Fault) => f.fires === 0 || f.action === 'slow';
      const fault = faults.find((f) => armed(f) && f.point === point && Object.entries(f.filters).every(([k, v]) => facts[k] === v));
      if (!fault) return;
      // A slow rank stays slow, said once.
      if (fault.fires++ === 0) onFire(`${fault.action}@${point} ${JSON.stringify(facts)}`);
      act(fault, replica);
    };
  }
  return hooks;
}

/** Parses OCCAM_CUT_LINK; undefined when unset. */
export function cutLink(spec: string | undefined): { workerId: string; afterBytes: number } | undefined {
  if (!spec?.trim()) return undefined;
  const match = /^\s*(\S+)(?:\s+after=(\d+))?\s*$/.exec(spec);
  if (!match) throw new Error(`OCCAM_CUT_LINK: cannot parse '${spec}' (expected 'WORKER_ID' or 'WORKER_ID after=BYTES')`);
  return { workerId: match[1], afterBytes: Number(match[2] ?? 0) };
}

/** Parses OCCAM_PACE_KBPS (kilobits per second) into bytes per second; undefined when unset. */
export function paceBytesPerSecond(spec: string | undefined): number | undefined {
  if (!spec?.trim()) return undefined;
  const kbps = Number(spec);
  if (!(kbps > 0)) throw new Error(`OCCAM_PACE_KBPS: '${spec}' is not a rate in kilobits per second`);
  return (kbps * 1000) / 8;
}

function act({ action, ms }: Fault, replica: Replica): void {
  if (action === 'block' || action === 'slow') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  if (action === 'kill') process.kill(process.pid, 'SIGKILL');
  if (action === 'stop') process.kill(process.pid, 'SIGSTOP');
  if (action === 'corrupt-mask') {
    const layer = replica.masks[replica.prunableLayers[0]] as Uint8Array;
    for (let i = 0; i < Math.min(16, layer.length); i++) layer[i] ^= 1;
  }
}

function parseFault(text: string): Fault {
  const [head, ...pairs] = text.split(/\s+/);
  const [verb, point] = head.split('@');
  const [action, duration] = verb.split(':');
  const ms = Number(duration ?? 0);
  if (
    !ACTIONS.includes(action as FaultAction) ||
    !(point in HOOK_FACTS) ||
    TIMED.includes(action as FaultAction) !== (duration !== undefined) ||
    !(ms >= 0)
  ) {
    throw new Error(
      `OCCAM_FAULTS: cannot parse '${text}' (actions: kill, stop, corrupt-mask, block:MS, slow:MS; points: ${Object.keys(HOOK_FACTS).join(', ')})`,
    );
  }
  if (action === 'corrupt-mask' && point !== 'prune' && point !== 'upload')
    throw new Error(`OCCAM_FAULTS: corrupt-mask happens at prune or upload, not ${point}, in '${text}'`);
  const known: readonly string[] = HOOK_FACTS[point as HookPoint];
  const filters: Record<string, number> = {};
  for (const pair of pairs) {
    const [key, value] = pair.split('=');
    if (!key || value === undefined || Number.isNaN(Number(value))) throw new Error(`OCCAM_FAULTS: bad filter '${pair}' in '${text}'`);
    if (!known.includes(key)) throw new Error(`OCCAM_FAULTS: ${point} knows ${known.join(', ')}, not '${key}', in '${text}'`);
    filters[key] = Number(value);
  }
  return { action: action as FaultAction, ms, point: point as HookPoint, filters, fires: 0 };
}
