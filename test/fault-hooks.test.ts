// OCCAM_FAULTS becomes member hooks: each point names the facts a filter may use, a filter on a
// fact the point does not have is refused with the facts it does have, and a fault fires once.
import { describe, expect, it } from 'vitest';
import { HOOK_FACTS } from '../src/training/member.ts';
import type { Replica } from '../src/training/replica.ts';
import { faultHooks } from '../src/worker/faults.ts';

const replica = { masks: [new Uint8Array(4).fill(1)], prunableLayers: [0] } as unknown as Replica;

describe('fault hooks', () => {
  it('fire at the named point when every filter matches, once', () => {
    const fired: string[] = [];
    const hooks = faultHooks('corrupt-mask@prune round=1 rank=0', (fault) => fired.push(fault));
    hooks.prune?.({ round: 0, rank: 0 }, replica);
    hooks.prune?.({ round: 1, rank: 1 }, replica);
    expect(fired).toEqual([]);
    hooks.prune?.({ round: 1, rank: 0 }, replica);
    hooks.prune?.({ round: 1, rank: 0 }, replica);
    expect(fired).toEqual(['corrupt-mask@prune {"round":1,"rank":0}']);
    expect([...(replica.masks[0] as Uint8Array)]).toEqual([0, 0, 0, 0]);
  });

  it('know the round at evaluate (a filter there used to be unmatchable)', () => {
    expect(HOOK_FACTS.evaluate).toContain('round');
    const fired: string[] = [];
    const hooks = faultHooks('stop@evaluate round=1', (fault) => fired.push(fault));
    expect(() => hooks.evaluate?.({ round: 0, rank: 0, step: 10 }, replica)).not.toThrow();
    expect(fired).toEqual([]);
    expect(Object.keys(hooks)).toEqual(['evaluate']);
  });

  it('refuse a filter key the point does not know, naming the ones it does', () => {
    expect(() => faultHooks('kill@allreduce setp=5')).toThrow(
      "OCCAM_FAULTS: allreduce knows step, rank, not 'setp', in 'kill@allreduce setp=5'",
    );
    expect(() => faultHooks('kill@evaluate round=x')).toThrow(/bad filter 'round=x'/);
    expect(() => faultHooks('explode@prune')).toThrow(/cannot parse 'explode@prune' \(actions: kill, stop, corrupt-mask/);
    expect(() => faultHooks('corrupt-mask@evaluate')).toThrow(/corrupt-mask happens at prune or upload/);
    expect(faultHooks(undefined)).toEqual({});
  });
});
