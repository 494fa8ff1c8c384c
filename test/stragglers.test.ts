// The straggler watch: a member slower per step than the median of the others, segment after
// segment, is named once; it is named again only after it kept up for a while.
import { describe, expect, it } from 'vitest';
import { STRAGGLER_SEGMENTS, StragglerWatch } from '../src/coordinator/stragglers.ts';
import type { StepTimes } from '../src/training/step-loop.ts';

const times = (msPerStep: number): StepTimes => ({
  steps: 10,
  computeMs: 8 * msPerStep,
  updateMs: 2 * msPerStep,
  allreduceMs: 5,
  waitMs: 7,
});
const ids = ['w0', 'w1', 'w2'];

describe('stragglers', () => {
  it(`names a member 1.5× slower than the others after ${STRAGGLER_SEGMENTS} segments in a row, once, and says when it keeps up`, () => {
    const watch = new StragglerWatch();
    const slow = [times(10), times(15), times(10)];
    for (let i = 1; i < STRAGGLER_SEGMENTS; i++) expect(watch.observe(ids, slow)).toEqual({ named: [], recovered: [] });
    expect(watch.observe(ids, slow)).toEqual({ named: [{ workerId: 'w1', msPerStep: 15, othersMsPerStep: 10 }], recovered: [] });
    expect(watch.observe(ids, slow).named).toEqual([]);
    expect(watch.observe(ids, [times(10), times(10), times(10)])).toEqual({ named: [], recovered: ['w1'] });
  });

  it('a slow segment now and then, a ring of one, and a uniformly slow ring name no one', () => {
    const [sometimes, solo, uniform] = [new StragglerWatch(), new StragglerWatch(), new StragglerWatch()];
    for (let i = 0; i < 10; i++) {
      const w1 = i % STRAGGLER_SEGMENTS === 0 ? times(10) : times(20);
      expect(sometimes.observe(ids, [times(10), w1, times(10)]).named).toEqual([]);
      expect(solo.observe(['solo'], [times(50)]).named).toEqual([]);
      expect(uniform.observe(ids, [times(40), times(40), times(40)]).named).toEqual([]);
    }
  });
});
